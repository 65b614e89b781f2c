// `npm run faults [-- --only <row>[,<row>…]] [--keep] [--list]`: the fault-injection suite of
// issue 9. Starts the system in split roles as real processes on the PostgreSQL server of
// DATABASE_URL (a fresh database, dropped after) and a Temporal dev server of its own, injects each
// row's fault on a fresh job, prints one table, and exits 1 when any row failed. Every child process
// is killed on the way out, whether the suite passed, failed, crashed or was interrupted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createGitRepository } from '../support/git-fixture.js';
import { killEveryChild } from './processes.js';
import { rows } from './rows.js';
import { writeJobCommand, type RunLedger } from './runs.js';
import { RowContext, type Row, type RowResult } from './scenario.js';
import { settings } from './settings.js';
import { startSystemUnderTest, type SystemUnderTest } from './system.js';
import { renderTable, seconds } from './table.js';

const suiteStart = Date.now();
const log = (line: string) => process.stderr.write(`[faults +${((Date.now() - suiteStart) / 1000).toFixed(1)}s] ${line}\n`);

const { values } = parseArgs({
  options: {
    only: { type: 'string', multiple: true },
    keep: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help || values.list) {
  process.stdout.write('usage: npm run faults [-- --only <row>[,<row>…]] [--keep]\n  --keep  keep the scratch folder (logs, records) even when every row passes\n\nrows:\n');
  for (const row of rows) process.stdout.write(`  ${row.id.padEnd(20)} ${row.fault}\n`);
  process.exit(0);
}

const wanted = (values.only ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
const unknown = wanted.filter((id) => !rows.some((row) => row.id === id));
if (unknown.length > 0) {
  process.stderr.write(`faults: no row named ${unknown.join(', ')}; rows: ${rows.map((r) => r.id).join(', ')}\n`);
  process.exit(2);
}
const selected = wanted.length > 0 ? rows.filter((row) => wanted.includes(row.id)) : rows;

let ledger: RunLedger | undefined;
let sut: SystemUnderTest | undefined;
let removeRepository: (() => Promise<void>) | undefined;
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-jobs-faults-'));

// The last line of defence: whatever ends the process, no child of the suite (nor a job's command,
// which lives in a session of its own) survives it.
process.on('exit', () => {
  killEveryChild();
  ledger?.killLive();
});

let cleaning: Promise<void> | undefined;
function cleanUp(keep: boolean): Promise<void> {
  cleaning ??= cleanUpOnce(keep);
  return cleaning;
}

async function cleanUpOnce(keep: boolean): Promise<void> {
  ledger?.killLive();
  await sut?.stop();
  await removeRepository?.();
  if (keep) log(`logs and records kept in ${scratch}`);
  else fs.rmSync(scratch, { recursive: true, force: true });
}

let interrupted = false;
let interruptedAt = 0;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) {
      // Under `npm run`, one Ctrl-C arrives twice (from the terminal and forwarded by npm): only a
      // second press, a moment later, means "stop cleaning up and go".
      if (Date.now() - interruptedAt > 2_000) process.exit(130);
      return;
    }
    interrupted = true;
    interruptedAt = Date.now();
    log(`${signal}: stopping every process the suite started`);
    const forced = setTimeout(() => process.exit(130), 15_000);
    void cleanUp(true).finally(() => {
      clearTimeout(forced);
      process.exit(130);
    });
  });
}

async function runRow(row: Row, ctx: RowContext): Promise<RowResult> {
  // Rows bound their own waits by their deadline; this catches one that does not.
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<RowResult>((resolve) => {
    timer = setTimeout(() => {
      ctx.fail(`the row overran its ${seconds(row.deadlineMs)} deadline`);
      resolve(ctx.report({ linesLost: undefined, linesDuplicated: undefined, concurrentRuns: undefined, finalState: '?', attempts: '?', recoveryMs: undefined }));
    }, row.deadlineMs + 30_000);
  });
  try {
    return await Promise.race([row.run(ctx), overrun]);
  } catch (err) {
    ctx.fail(`harness error: ${err instanceof Error ? err.message : String(err)}`);
    return ctx.report({ linesLost: undefined, linesDuplicated: undefined, concurrentRuns: undefined, finalState: '?', attempts: '?', recoveryMs: undefined });
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<number> {
  log(`scratch folder ${scratch}; silence timeout ${seconds(settings.silenceTimeoutMs)}, heartbeat ${seconds(settings.heartbeatIntervalMs)}`);
  const repository = await createGitRepository({ 'README.md': '# fault suite fixture\n' });
  removeRepository = repository.remove;
  const command = writeJobCommand(scratch, path.join(scratch, 'runs.log'), settings.lineIntervalS);
  ledger = command.ledger;
  sut = await startSystemUnderTest(scratch, log);
  log(`system up: API ${sut.apiUrl}, gateway ${sut.gatewayAddress('gateway')}`);

  const results: RowResult[] = [];
  for (const row of selected) {
    if (interrupted) break;
    const ctx = new RowContext(row, { sut, command, ledger, cloneUrl: repository.cloneUrl, log });
    if (Date.now() - suiteStart > settings.suiteBudgetMs) {
      ctx.fail('not run: the suite ran out of its time budget');
      results.push(ctx.report({ linesLost: undefined, linesDuplicated: undefined, concurrentRuns: undefined, finalState: '–', attempts: '–', recoveryMs: undefined }));
      continue;
    }
    log(`row ${row.id}: ${row.fault}`);
    const started = Date.now();
    const result = await runRow(row, ctx);
    await ctx.dispose().catch((err: Error) => log(`disposing row ${row.id}: ${err.message}`));
    const healed = await sut.heal().catch((err: Error) => [`could not heal: ${err.message}`]);
    if (healed.length > 0) log(`after ${row.id}: ${healed.join(', ')}`);
    log(`row ${row.id} ${result.pass ? 'passed' : 'FAILED'} in ${seconds(Date.now() - started)}${result.pass ? '' : `: ${result.failures.join('; ')}`}`);
    results.push(result);
  }

  process.stdout.write(`\n${renderTable(results)}\n`);
  log(`done in ${seconds(Date.now() - suiteStart)}`);
  const failed = results.some((r) => !r.pass) || results.length < selected.length;
  await cleanUp(failed || values.keep);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    log(`the suite could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanUp(true).catch(() => {});
    process.exit(1);
  },
);
