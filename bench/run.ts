// `npm run bench`: runs every bench/*.bench.ts in name order, prints each one's figures and then one
// summary. A missed target is printed loudly but is not a failure (timings vary by machine); the exit
// code is non-zero only when a benchmark broke: it threw, or a request failed (a non-2xx answer or a
// connection error under load is a bug, not a timing).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cells, evaluate, fmt, table, type BenchReport, type Benchmark, type ComparisonOutcome } from './support/report.js';

/** Other programs' load (cores) above which a scenario's figures are flagged. */
const NOISY_CORES = 0.25;
const benchDir = path.dirname(fileURLToPath(import.meta.url));

async function main(): Promise<number> {
  const only = process.argv.slice(2);
  const files = (await fs.readdir(benchDir))
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
    .sort();
  if (files.length === 0) throw new Error(`no benchmark in ${benchDir} matches ${only.join(' ')}`);

  console.log(`agent-jobs benchmarks: ${files.join(', ')}`);
  console.log(`node ${process.version}, ${os.cpus().length} CPU (${os.cpus()[0]?.model ?? 'unknown'}), database: ${process.env.DATABASE_URL ? 'PostgreSQL (DATABASE_URL)' : 'PGlite'}`);
  // Anything else running on the machine skews the figures (both sides alike, but still).
  console.log(`load average before the run: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`);

  const results: { file: string; report?: BenchReport; outcomes?: ComparisonOutcome[]; error?: unknown }[] = [];
  for (const file of files) {
    const started = Date.now();
    console.log(`\n=== ${file}`);
    try {
      const mod = (await import(pathToFileURL(path.join(benchDir, file)).href)) as { default: Benchmark };
      const report = await mod.default.run();
      const outcomes = evaluate(report);
      results.push({ file, report, outcomes });
      printReport(report, outcomes);
    } catch (error) {
      console.error(`${file} FAILED:`, error);
      results.push({ file, error });
    }
    console.log(`(${file}: ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  }

  console.log('\n=== Summary');
  const summary: string[][] = [];
  let broken = 0;
  let missed = 0;
  for (const { file, report, outcomes, error } of results) {
    if (error || !report || !outcomes) {
      broken += 1;
      summary.push([file, 'ERROR', '', '', '', '', '']);
      continue;
    }
    for (const c of outcomes) {
      const shown = cells(c, report.rows);
      if (shown.verdict === 'MISSED') missed += 1;
      summary.push([file, c.name, shown.ours, shown.baseline, c.kind === 'limit' ? '' : shown.figure, shown.target, shown.verdict]);
    }
    const noisy = report.rows.filter((r) => (r.otherCores ?? 0) > NOISY_CORES);
    if (noisy.length) summary.push([file, `figures skewed by other load in ${noisy.length} scenario(s)`, '', '', '', '', 'NOISY']);
    const failing = report.rows.filter((r) => r.errors > 0 || r.non2xx > 0);
    for (const r of failing) {
      broken += 1;
      summary.push([file, `${r.scenario}: ${r.non2xx} non-2xx, ${r.errors} errors`, '', '', '', '', 'BUG']);
    }
  }
  console.log(table(['benchmark', 'comparison', 'ours', 'baseline', 'ratio', 'target', 'result'], summary, [false, false, true, true, true, false, false]));

  if (missed > 0) {
    console.log(`\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!`);
    console.log(`!!! MISSED: ${missed} target(s) not met (see the table above) !!!`);
    console.log(`!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!`);
  } else if (broken === 0) {
    console.log('\nAll targets met.');
  }
  if (broken > 0) console.error(`\n${broken} benchmark failure(s): a benchmark threw or requests failed under load (a bug, not a timing).`);
  return broken > 0 ? 1 : 0;
}

function printReport(report: BenchReport, outcomes: ComparisonOutcome[]): void {
  console.log(`\n${report.title}\n`);
  console.log(
    table(
      ['scenario', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'non-2xx', 'other load'],
      report.rows.map((r) => [
        r.scenario,
        String(r.requests),
        fmt.rps(r.rps),
        fmt.ms(r.p50),
        fmt.ms(r.p99),
        String(r.errors),
        String(r.non2xx),
        r.otherCores === undefined ? '' : `${r.otherCores.toFixed(2)} cores${r.otherCores > NOISY_CORES ? ' NOISY' : ''}`,
      ]),
      [false, true, true, true, true, true, true, false],
    ),
  );
  console.log('');
  console.log(
    table(
      ['comparison', 'measure', 'figure', 'target', 'result'],
      outcomes.map((c) => {
        const shown = cells(c, report.rows);
        return [c.name, shown.measure, shown.figure, shown.target, shown.verdict];
      }),
      [false, false, true, false, false],
    ),
  );
  const noisy = report.rows.filter((r) => (r.otherCores ?? 0) > NOISY_CORES);
  if (noisy.length) {
    console.log(`\nNOISY: other programs kept more than ${NOISY_CORES} of a core busy during ${noisy.map((r) => `"${r.scenario}"`).join(', ')}; those figures are skewed, run again on a quiet machine.`);
  }
  if (report.notes.length) console.log(`\n${report.notes.join('\n')}`);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
