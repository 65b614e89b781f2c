// The suite's report: one Markdown table (readable in a terminal, pasteable into an issue) with a
// row per fault, then one line saying how many passed.
import type { RowResult } from './scenario.js';

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

const columns: { title: string; cell: (r: RowResult) => string }[] = [
  { title: 'fault', cell: (r) => r.fault },
  { title: 'expected', cell: (r) => r.expected },
  { title: 'observed', cell: (r) => r.observed },
  { title: 'lines lost', cell: (r) => count(r.linesLost) },
  { title: 'lines duplicated', cell: (r) => count(r.linesDuplicated) },
  { title: 'concurrent runs', cell: (r) => count(r.concurrentRuns) },
  { title: 'final state', cell: (r) => r.finalState },
  { title: 'attempts', cell: (r) => r.attempts },
  { title: 'recovery time', cell: (r) => (r.recoveryMs === undefined ? '–' : seconds(r.recoveryMs)) },
  { title: 'pass', cell: (r) => (r.pass ? 'yes' : '**NO**') },
];

function count(value: number | undefined): string {
  return value === undefined ? '?' : String(value);
}

function escape(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

export function renderTable(results: readonly RowResult[]): string {
  const lines = [`| ${columns.map((c) => c.title).join(' | ')} |`, `|${columns.map(() => '---').join('|')}|`];
  for (const result of results) lines.push(`| ${columns.map((c) => escape(c.cell(result))).join(' | ')} |`);
  const passed = results.filter((r) => r.pass).length;
  lines.push('', `${passed} of ${results.length} rows passed.`);
  return lines.join('\n');
}
