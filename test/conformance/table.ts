// The kit's report: one Markdown table (readable in a terminal, pasteable into an issue), a row per
// scenario, then one line saying how many passed.
import type { RowResult } from './kit.js';

const columns: { title: string; cell: (r: RowResult) => string }[] = [
  { title: 'row', cell: (r) => r.id },
  { title: 'scenario', cell: (r) => r.scenario },
  { title: 'expected', cell: (r) => r.expected },
  { title: 'observed', cell: (r) => r.observed },
  { title: 'pass', cell: (r) => (r.skipped ? 'skipped' : r.pass ? 'yes' : '**NO**') },
];

function escape(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderTable(results: readonly RowResult[]): string {
  const lines = [`| ${columns.map((c) => c.title).join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`];
  for (const result of results) lines.push(`| ${columns.map((c) => escape(c.cell(result))).join(' | ')} |`);
  const run = results.filter((r) => !r.skipped);
  const passed = run.filter((r) => r.pass).length;
  const skipped = results.length - run.length;
  lines.push('', `${passed} of ${run.length} rows passed${skipped > 0 ? `; ${skipped} skipped` : ''}.`);
  return lines.join('\n');
}
