// What a benchmark file hands back to bench/run.ts, and how it is printed.

export interface ScenarioRow {
  /** Unique within its benchmark; comparisons refer to it. */
  scenario: string;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  /** Connection errors and timeouts. */
  errors: number;
  non2xx: number;
  /** Cores other programs kept busy meanwhile (figures are skewed above a few tenths). */
  otherCores?: number;
}

export interface Comparison {
  name: string;
  ours: string;
  baseline: string;
  /** Throughput ours / baseline must be at least this. */
  target: number;
  /** Informative comparisons are printed with their ratio but never marked MISSED. */
  informative?: boolean;
}

export interface BenchReport {
  title: string;
  rows: ScenarioRow[];
  comparisons: Comparison[];
  /** Free text printed under the table: how the figures were made and what they mean. */
  notes: string[];
}

export interface Benchmark {
  title: string;
  run(): Promise<BenchReport>;
}

export interface ComparisonOutcome extends Comparison {
  ratio: number;
  pass: boolean;
}

export function evaluate(report: BenchReport): ComparisonOutcome[] {
  return report.comparisons.map((c) => {
    const ours = report.rows.find((r) => r.scenario === c.ours);
    const base = report.rows.find((r) => r.scenario === c.baseline);
    if (!ours || !base) throw new Error(`comparison ${c.name} names a scenario that did not run`);
    const ratio = base.rps > 0 ? ours.rps / base.rps : NaN;
    return { ...c, ratio, pass: ratio >= c.target };
  });
}

export function table(headers: string[], rows: string[][], rightAligned: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (rightAligned[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export const fmt = {
  rps: (n: number) => n.toFixed(0),
  ms: (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : '-'),
  ratio: (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-'),
};
