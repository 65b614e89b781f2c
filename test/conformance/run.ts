// `npm run conformance -- --agent '<command>' [--only <row>[,<row>…]] [--list] [--keep]`
//
// The agent conformance kit (issue 10, section 3): checks that an agent, in any language, keeps the
// agent contract (contracts/agent/v1/agent.proto, the README's "Agents and timeouts" and
// "Reliability", and the reference agent's CLI in its USAGE) against the real system.
//
// What it starts. The system under test as real processes: on the PostgreSQL server of
// DATABASE_URL (a fresh database, dropped afterwards), split roles — the API, a second API whose
// jobs get short start/run deadlines, two gateways and the worker — on a Temporal dev server of
// its own (TEMPORAL_CLI_PATH or `temporal` on PATH). Without DATABASE_URL it runs the embedded
// defaults (one process on PGlite) and skips the deadline rows. Server timeouts are shortened
// (settings.ts: an 8 s lease, 1 s heartbeats, 2 s cancel grace).
//
// How it runs the agent. `<command>` is run as `/bin/sh -c 'exec <command> "$@"'` with the
// reference agent's CLI appended: --server <host:port> --exec '<script>' --state-dir <dir>
// --name <name> --capacity <n> --heartbeat <dur>, and the organisation's agent token in the
// environment as AGENT_TOKEN (never a flag). The address is a TCP proxy of the kit's in front of a
// gateway, so rows can cut the link. Each row has an organisation of its own (so no agent takes
// another row's jobs), creates the agent token an admin would, and starts as many agents as it
// needs. The --exec script records every run (job, attempt, pid, process group, start, end) in a
// file and then runs the job's prompt as bash: rows put the scenario in the prompt.
//
// What it judges. Only what is visible from outside the agent: job status, attempt, exit code,
// failure reason, events and change over REST, the stored log pages (`GET …/logs`), the patch
// (`GET …/diff`), listAgents, the agent's exit code, the runs' own records and pids, and for the
// change rows a bare repository of the row's own as the remote (what was pushed, and git's own
// diff of it, compared byte for byte; MAX_PATCH_BYTES is 6 MiB). It never reads the agent's output (kept in the
// scratch folder for people) and never asserts a timing: every wait is a generous deadline after
// which the row fails as "timed out".
//
// Output. A Markdown table (row, scenario, expected, observed, pass) on stdout; progress on
// stderr. Exit 0 when every row that ran passed, 1 otherwise (2 for bad arguments). Rows run four
// at a time; the whole kit takes about a minute and a half on two cores (system start-up included).
//
//   DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//     npm run conformance -- --agent 'node --import tsx /path/to/agents/typescript/src/main.ts'
//   npm run conformance -- --agent agents/go/bin/agent-jobs-agent-go --only auth-revoked,cancel-running
//   npm run conformance -- --list
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createGitRepository } from '../support/git-fixture.js';
import { killEveryChild } from '../faults/processes.js';
import type { RunLedger } from '../faults/runs.js';
import { startSilentServer, writeJobCommand } from './job-command.js';
import { RowContext, type Row, type RowResult, type Shared } from './kit.js';
import { rows } from './rows.js';
import { settings } from './settings.js';
import { startSystemUnderTest, type SystemUnderTest } from './system.js';
import { renderTable } from './table.js';

const kitStart = Date.now();
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const log = (line: string) => process.stderr.write(`[conformance +${seconds(Date.now() - kitStart)}] ${line}\n`);

const { values } = parseArgs({
  options: {
    agent: { type: 'string' },
    only: { type: 'string', multiple: true },
    keep: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    concurrency: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

const usage = `usage: npm run conformance -- --agent '<command that starts an agent>' [--only <row>[,<row>…]] [--keep] [--concurrency <n>]
  --agent        the agent's command line; the kit appends --server --exec --state-dir --name --capacity --heartbeat
                 and passes the token in AGENT_TOKEN
  --only         run only these rows
  --keep         keep the scratch folder (agents' and server logs, run records) even when every row passes
  --concurrency  rows at once (default ${settings.concurrency})
  --list         list the rows
`;

if (values.help || values.list) {
  process.stdout.write(usage);
  if (values.list) {
    process.stdout.write('\nrows:\n');
    for (const row of rows) process.stdout.write(`  ${row.id.padEnd(22)} ${row.scenario}\n`);
  }
  process.exit(0);
}
if (!values.agent?.trim()) {
  process.stderr.write(`conformance: --agent is required\n${usage}`);
  process.exit(2);
}
const wanted = (values.only ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
const unknown = wanted.filter((id) => !rows.some((row) => row.id === id));
if (unknown.length > 0) {
  process.stderr.write(`conformance: no row named ${unknown.join(', ')}; rows: ${rows.map((r) => r.id).join(', ')}\n`);
  process.exit(2);
}
const selected = wanted.length > 0 ? rows.filter((row) => wanted.includes(row.id)) : rows;
const concurrency = Math.max(1, Number(values.concurrency ?? settings.concurrency) || settings.concurrency);

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-jobs-conformance-'));
let sut: SystemUnderTest | undefined;
let ledger: RunLedger | undefined;
const cleanupSteps: (() => Promise<void>)[] = [];

// Whatever ends the process, nothing the kit started (nor a job's command) survives it.
process.on('exit', () => {
  killEveryChild();
  ledger?.killLive();
});

let cleaning: Promise<void> | undefined;
function cleanUp(keep: boolean): Promise<void> {
  cleaning ??= (async () => {
    ledger?.killLive();
    for (const step of cleanupSteps.splice(0).reverse()) await step().catch((err: Error) => log(`cleanup: ${err.message}`));
    await sut?.stop();
    if (keep) log(`logs and records kept in ${scratch}`);
    else fs.rmSync(scratch, { recursive: true, force: true });
  })();
  return cleaning;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping every process the kit started`);
    const forced = setTimeout(() => process.exit(130), 15_000);
    void cleanUp(true).finally(() => {
      clearTimeout(forced);
      process.exit(130);
    });
  });
}

async function runRow(row: Row, shared: Shared): Promise<RowResult> {
  const ctx = new RowContext(row, shared);
  const started = Date.now();
  if (row.needsDeadlines && !shared.sut.deadlineApiUrl) {
    return { id: row.id, scenario: row.scenario, expected: row.expected, observed: 'not run: short deadlines need DATABASE_URL (a second API process on the same database)', pass: true, skipped: true, ms: 0 };
  }
  log(`row ${row.id}: ${row.scenario}`);
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      ctx.fail(`the row overran its ${seconds(settings.rowDeadlineMs)} deadline`);
      resolve();
    }, settings.rowDeadlineMs + 15_000);
  });
  try {
    await Promise.race([row.run(ctx), overrun]);
  } catch (err) {
    ctx.fail(`harness error: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    clearTimeout(timer);
  }
  await ctx.dispose().catch((err: Error) => log(`disposing row ${row.id}: ${err.message}`));
  const result = ctx.result(Date.now() - started);
  log(`row ${row.id} ${result.pass ? 'passed' : 'FAILED'} in ${seconds(result.ms)}${result.pass ? '' : `: ${ctx.failures.join('; ')}`}`);
  return result;
}

async function main(): Promise<number> {
  log(`scratch folder ${scratch}; agent: ${values.agent}`);
  const readme = `conformance fixture ${Date.now()}`;
  const repository = await createGitRepository({ 'README.md': `${readme}\n` });
  cleanupSteps.push(repository.remove);
  const silent = await startSilentServer();
  cleanupSteps.push(silent.close);
  const command = writeJobCommand(scratch);
  ledger = command.ledger;
  sut = await startSystemUnderTest(scratch, log);
  log(`system up (${sut.mode}): API ${sut.apiUrl}, gateway ${sut.gatewayAddress('gateway')}`);

  const shared: Shared = {
    sut,
    agentCommand: values.agent!.trim(),
    ledger: command.ledger,
    exec: command.exec,
    cloneUrl: repository.cloneUrl,
    readme,
    hangingCloneUrl: silent.url,
    scratch,
    log,
  };
  fs.mkdirSync(path.join(scratch, 'rows'), { recursive: true });
  for (const row of selected) fs.mkdirSync(path.join(scratch, 'rows', row.id), { recursive: true });

  // A pool of `concurrency` rows, then the exclusive ones alone; results keep the rows' order.
  const results: RowResult[] = new Array(selected.length);
  const alone = (row: Row) => row.exclusive?.(shared.sut) ?? false;
  const pooled = selected.map((row, index) => ({ row, index })).filter(({ row }) => !alone(row));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, pooled.length) }, async () => {
      while (next < pooled.length && !interrupted) {
        const { row, index } = pooled[next++]!;
        results[index] = await runRow(row, shared);
      }
    }),
  );
  for (const [index, row] of selected.entries()) {
    if (alone(row) && !interrupted) results[index] = await runRow(row, shared);
  }

  const done = results.filter((r): r is RowResult => r !== undefined);
  process.stdout.write(`\n${renderTable(done)}\n`);
  log(`done in ${seconds(Date.now() - kitStart)}`);
  const failed = done.some((r) => !r.pass) || done.length < selected.length;
  await cleanUp(failed || values.keep);
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (err: unknown) => {
    log(`the kit could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await cleanUp(true).catch(() => {});
    process.exit(1);
  },
);
