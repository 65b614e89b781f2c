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

/** Ours against a same-run baseline, both scenarios of the report. */
export interface RatioComparison {
  /**
   * throughput (the default): ours / baseline req/s must be at least `target`.
   * latency: baseline p50 / ours p50 must be at least `target` (0.5: our p50 at most twice the baseline's).
   */
  kind?: 'throughput' | 'latency';
  name: string;
  ours: string;
  baseline: string;
  target: number;
  /** Informative comparisons are printed with their ratio but never marked MISSED. */
  informative?: boolean;
}

/**
 * A figure with no baseline against an absolute bound: a ceiling it must stay at or under (memory,
 * a p99), or a floor it must reach (a throughput the issue names in lines/s, say). Exactly one.
 */
export type LimitCheck = LimitCommon & ({ ceiling: number; floor?: never } | { floor: number; ceiling?: never });

interface LimitCommon {
  kind: 'limit';
  name: string;
  value: number;
  unit: string;
  informative?: boolean;
}

export type Comparison = RatioComparison | LimitCheck;

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

/** `ratio` is the figure compared with the target: a ratio for comparisons, value / bound for limits. */
export type ComparisonOutcome = Comparison & { ratio: number; pass: boolean };

export function evaluate(report: BenchReport): ComparisonOutcome[] {
  return report.comparisons.map((c): ComparisonOutcome => {
    if (c.kind === 'limit') {
      if (c.floor !== undefined) return { ...c, ratio: c.floor > 0 ? c.value / c.floor : NaN, pass: c.value >= c.floor };
      const ratio = c.ceiling > 0 ? c.value / c.ceiling : NaN;
      return { ...c, ratio, pass: c.value <= c.ceiling };
    }
    const { ours, base } = rowsOf(report.rows, c);
    const ratio = c.kind === 'latency' ? (ours.p50 > 0 ? base.p50 / ours.p50 : NaN) : base.rps > 0 ? ours.rps / base.rps : NaN;
    return { ...c, ratio, pass: ratio >= c.target };
  });
}

function rowsOf(rows: ScenarioRow[], c: RatioComparison): { ours: ScenarioRow; base: ScenarioRow } {
  const ours = rows.find((r) => r.scenario === c.ours);
  const base = rows.find((r) => r.scenario === c.baseline);
  if (!ours || !base) throw new Error(`comparison ${c.name} names a scenario that did not run`);
  return { ours, base };
}

/** An outcome's cells as the tables print them, whatever its kind. */
export interface OutcomeCells {
  /** What the figure is, e.g. "req/s ours / baseline". */
  measure: string;
  ours: string;
  baseline: string;
  figure: string;
  target: string;
  verdict: 'info' | 'pass' | 'MISSED';
}

export function cells(outcome: ComparisonOutcome, rows: ScenarioRow[]): OutcomeCells {
  const verdict = outcome.informative ? 'info' : outcome.pass ? 'pass' : 'MISSED';
  if (outcome.kind === 'limit') {
    const amount = (n: number) => `${fmt.amount(n)} ${outcome.unit}`;
    const target = outcome.floor !== undefined ? `>= ${amount(outcome.floor)}` : `<= ${amount(outcome.ceiling)}`;
    return { measure: outcome.unit, ours: amount(outcome.value), baseline: '', figure: amount(outcome.value), target, verdict };
  }
  const ours = rows.find((r) => r.scenario === outcome.ours);
  const base = rows.find((r) => r.scenario === outcome.baseline);
  if (outcome.kind === 'latency') {
    const p50 = (r: ScenarioRow | undefined) => `${fmt.ms(r?.p50 ?? NaN)} ms p50`;
    return { measure: 'p50 baseline / ours', ours: p50(ours), baseline: p50(base), figure: fmt.ratio(outcome.ratio), target: `>= ${outcome.target}`, verdict };
  }
  const rps = (r: ScenarioRow | undefined) => `${fmt.rps(r?.rps ?? NaN)} req/s`;
  return { measure: 'req/s ours / baseline', ours: rps(ours), baseline: rps(base), figure: fmt.ratio(outcome.ratio), target: `>= ${outcome.target}`, verdict };
}

export function table(headers: string[], rows: string[][], rightAligned: boolean[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (rightAligned[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export const fmt = {
  rps: (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(1) : n.toFixed(0)) : '-'),
  ms: (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : '-'),
  ratio: (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-'),
  amount: (n: number) => (Number.isFinite(n) ? n.toFixed(Math.abs(n) < 10 ? 2 : 1) : '-'),
};
