// Changes, through the whole stack, on one database in one run: (1) delivery time, a job whose
// command commits ~5 MiB of text, run by the reference agent (its own process) against a local bare
// repository: the command's exit → the job `succeeded` (the agent commits, pushes, diffs and sends
// the patch in acknowledged 64 KiB PatchChunks while it pushes, the server stores them, the workflow ends the job),
// against `git push` of the same commit alone to a fresh bare repository, in the same run;
// (2) memory, 50 jobs' 5 MiB patches arriving at once from 50 agents (real agent.v1 gRPC clients in
// a child process): server memory before, at its peak while they arrive, and after; then the same
// again unsampled for the throughput, against the same chunks stored by plain INSERTs.
// Every patch is checked: its size and bytes as stored and as GET …/diff serves them. A lost byte or
// a job that did not succeed fails the benchmark; a missed target is only printed.
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { and, asc, eq, sql } from 'drizzle-orm';
import type { components } from '../generated/openapi/schema.js';
import { MAX_UNSTORED_LOG_BYTES } from '../src/grpc/agent-session.js';
import { logLines, runChanges } from '../src/db/schema/index.js';
import { channels, type JobChangedPayload } from '../src/services/notifications.js';
import { startAgent, type AgentProcess } from '../test/support/agent-process.js';
import { createBareRepository } from '../test/support/git-fixture.js';
import { Arrivals } from './support/arrivals.js';
import type { ChildCalls } from './support/child-calls.js';
import { settle, withCpuCost, withOtherLoad, type CpuCost } from './support/load.js';
import type { SqlConnection } from './support/log-baseline.js';
import { MB, sampleMemory, type MemorySample } from './support/memory.js';
import { insertPatchBaseline, type PatchBaselineResult, type PatchBaselineSpec } from './support/patch-baseline.js';
import { startPatchClients, type PatchClientCalls } from './support/patch-clients.js';
import { fmt, type BenchReport, type Benchmark, type Comparison, type ScenarioRow } from './support/report.js';
import { startBenchSystem, type BenchSystem } from './support/system.js';

type Job = components['schemas']['Job'];

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
/** BENCH_CHANGES_PHASES=delivery,memory (the default: both) runs only those, for development. */
const PHASES = new Set((process.env.BENCH_CHANGES_PHASES ?? 'delivery,memory').split(','));
const MiB = 1024 * 1024;

/** Measured delivery runs (each: one job, then one baseline push), after one unmeasured of each. */
const DELIVERY_RUNS = env('BENCH_CHANGES_RUNS', 5);
/**
 * Random bytes the command encodes as base64 (76 characters a line, as `base64` writes it): each 57
 * bytes become a 78-byte patch line ('+', 76 characters, '\n'), so 3,831,000 make a patch of 5 MiB
 * (5,242,880 bytes) give or take a few hundred bytes of header.
 */
const PAYLOAD_RANDOM_BYTES = 3_831_000;
const AGENTS = env('BENCH_CHANGES_AGENTS', 50);
const PATCH_BYTES = 5 * MiB;
/** What agent.proto says of PatchChunks and what the reference agent does. */
const CHUNK_BYTES = 64 * 1024;
const WINDOW_BYTES = 2 * MiB;
/** The unmeasured round before the others: every agent sends a patch of one chunk. */
const WARMUP_PATCH_BYTES = 256 * 1024;
/** Between GC'd samples of server memory while the patches arrive (each forces a full collection, then waits 500 ms). */
const SAMPLE_PAUSE_MS = 1_000;
/** Jobs created at once over HTTP. */
const CREATE_PARALLEL = 10;
/** Diffs of the memory round downloaded and compared (every patch is compared in the database). */
const DOWNLOADS = 10;

/** Ours (command exit → succeeded) at most this many times the baseline (git push alone), medians. */
const DELIVERY_MAX_RATIO = 1.5;
/**
 * Server memory growth while 50 × 5 MiB = 250 MiB of patches arrive at once, GC'd, peak − before:
 * RSS (what the machine pays) and heap + external (what the server holds live; RSS moves with the
 * allocator's slack from earlier work and can hide it).
 * "Flat" means the server holds a bounded amount of patch bytes read and not stored, whatever the
 * number of streams: it stops reading a stream above MAX_UNSTORED_LOG_BYTES (8 MiB, shared with log
 * text) and every stream above 8 MiB across them (src/grpc/agent-gateway.ts), and a stream it stops
 * reading takes in only the chunk already on its way (src/grpc/read-gate.ts; HTTP/2 flow control
 * holds the rest in the agent): 50 agents add 50 × 64 KiB = 3 MiB, not 50 × their window.
 * 64 MB is what that costs once each waiting chunk is counted about twice (the decoded message and its
 * copy on its way to the database) plus allocator slack.
 */
const MEMORY_MAX_MB = 64;

const JOB_TIMEOUT_MS = 60_000;
/** 250 MiB of patches: PostgreSQL stores them in seconds, PGlite (one connection, in WASM) at a few MiB/s. */
const DELIVER_TIMEOUT_MS = { postgres: 120_000, pglite: 600_000 };
/**
 * PGlite stores bytea at a few MiB/s (a plain INSERT of 1 MiB takes a third of a second), so there
 * the throughput round is left out (the memory round's figures stand in) and the baseline inserts
 * the chunks of this many jobs only: the rate is what is compared.
 */
const PGLITE_BASELINE_JOBS = 5;
const CALL_SLACK_MS = 30_000;
/** The baseline's rows go under this attempt, which no run reaches, and are deleted afterwards. */
const BASELINE_ATTEMPT = 1_000_000;
/** Ours / baseline throughput storing the same chunks: shown, the issue sets no target for it. */
const STORE_RATIO_SHOWN = 0.5;

/** The agent's `git diff` (agent.proto, RunChange), to check the served patch byte for byte. */
const PINNED_DIFF = ['-c', 'core.quotePath=true', 'diff', '--binary', '--full-index', '--no-color', '--no-ext-diff', '--no-textconv', '--no-relative', '--src-prefix=a/', '--dst-prefix=b/', '--find-renames', '--diff-algorithm=myers'];
/**
 * The command's commit, identical wherever it is made from the same file on the same parent: the
 * baseline makes the very commit the job made (same id) and pushes it.
 */
const COMMIT_ENV = {
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@example.test',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@example.test',
  GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
};
const COMMIT_MESSAGE = 'Add a payload of random text';
const PAYLOAD_FILE = 'payload.txt';

const S = {
  base: `delivery baseline: git push of the job's commit alone to a fresh bare repository (pushes)`,
  ours: `delivery ours: command exit -> job succeeded, reference agent, ~5 MiB patch (jobs)`,
  memory: `memory: ${AGENTS} agents x ${PATCH_BYTES / MiB} MiB patch at once, server memory sampled, chunk written -> acked (chunks)`,
  storeBase: `storage baseline: the same chunks, one plain INSERT each into run_patch_chunks (chunks)`,
  storeOurs: `storage ours: the same again, nothing forced in the server, chunk written -> acked (chunks)`,
};

const terminal = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const mb = (bytes: number) => `${fmt.amount(bytes / MB)} MB`;
const memoryLine = (m: MemorySample) => `RSS ${mb(m.rss)}, heap ${mb(m.heapUsed)}, external ${mb(m.external)}`;
const median = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Runs `one` for 0..count-1, at most `parallel` at a time. */
async function inParallel(count: number, parallel: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

/** Runs git to the end; rejects with what it said when it fails. */
function git(cwd: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd, env: { ...process.env, ...extraEnv }, encoding: 'buffer', maxBuffer: 256 * MiB }, (err, stdout, stderr) => {
      if (err) reject(new Error(`git ${args.join(' ')} in ${cwd}: ${stderr.toString().trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

async function run(): Promise<BenchReport> {
  const startedAt = Date.now();
  const bench: BenchSystem = await startBenchSystem();
  console.log(`  system started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (${bench.driver}, ${bench.url})`);
  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-bench-changes-'));
  const remote = await createBareRepository({ 'README.md': '# bench\n' });
  const clients: ChildCalls<PatchClientCalls> = startPatchClients();
  let agent: AgentProcess | undefined;
  let unlisten: (() => Promise<void>) | undefined;
  try {
    const { system } = bench;
    const db = system.database.db;
    if (!system.grpcPort) throw new Error('the bench system serves no gRPC endpoint');
    const grpcAddress = `127.0.0.1:${system.grpcPort}`;
    const postgres = bench.driver === 'postgres';

    const orgId = randomUUID();
    const adminToken = await bench.token(randomUUID(), { [orgId]: 'Admin' });
    const memberToken = await bench.token(randomUUID(), { [orgId]: 'Member' });
    const api = async (route: string, init: { method?: string; body?: unknown; token?: string } = {}) =>
      fetch(`${bench.url}/v1/orgs/${orgId}${route}`, {
        method: init.method ?? 'GET',
        headers: { authorization: `Bearer ${init.token ?? adminToken}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
        ...(init.body ? { body: JSON.stringify(init.body) } : {}),
      });
    const post = async <T>(route: string, body: unknown): Promise<T> => {
      const res = await api(route, { method: 'POST', body });
      if (res.status !== 201) throw new Error(`POST ${route} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      return (await res.json()) as T;
    };
    const getJob = async (jobId: string): Promise<Job> => {
      const res = await api(`/jobs/${jobId}`, { token: memberToken });
      if (res.status !== 200) throw new Error(`GET job ${jobId} answered ${res.status}`);
      return (await res.json()) as Job;
    };
    const repo = await post<{ id: string }>('/repositories', { name: 'bench-changes', cloneUrl: remote.cloneUrl, defaultBranch: 'main' });
    const agentToken = (await post<{ secret: string }>('/agent-tokens', { name: 'bench-changes' })).secret;
    const createJob = async (prompt: string) => (await post<{ id: string }>('/jobs', { prompt, repoId: repo.id, queueType: 'backlog' })).id;

    // How and when each job ends: the job_changed trigger's NOTIFY, as any watcher learns it. The
    // trigger notifies as the status change commits, so Date.now() on arrival is when `succeeded`
    // became visible to readers (plus loopback delivery); it is compared with the command's own
    // `date +%s%N`, the same machine's clock. (The job's events carry the database's transaction
    // start, earlier than the commit, so they would flatter ours.)
    const ends = new Arrivals<{ status: string; at: number }>();
    unlisten = await system.database.listen(channels.jobChanged, (raw) => {
      const at = Date.now();
      const { jobId, status } = JSON.parse(raw) as JobChangedPayload;
      if (terminal.has(status)) ends.record(jobId, { status, at });
    });

    const rows: ScenarioRow[] = [];
    const notes: string[] = [];
    const comparisons: Comparison[] = [];
    const problems: string[] = [];
    const settled: number[] = [];
    const quiet = async () => settled.push(await settle());
    let failures = 0;
    const fail = (problem: string) => {
      failures += 1;
      problems.push(problem);
    };

    // ---- (1) delivery time ------------------------------------------------------------------------
    if (PHASES.has('delivery')) {
      // The command writes the payload, commits it (the very commit the baseline makes again), and
      // as its last action writes the time it is done to a file outside the repository.
      const exitDir = path.join(scratch, 'exits');
      await fs.mkdir(exitDir);
      const command = path.join(scratch, 'command.sh');
      await fs.writeFile(
        command,
        [
          'set -e',
          ...Object.entries(COMMIT_ENV).map(([name, value]) => `export ${name}='${value}'`),
          `head -c ${PAYLOAD_RANDOM_BYTES} /dev/urandom | base64 -w 76 > ${PAYLOAD_FILE}`,
          `git add ${PAYLOAD_FILE}`,
          `git commit -q -m '${COMMIT_MESSAGE}'`,
          `date +%s%N > '${exitDir}'/"$JOB_ID"`,
          '',
        ].join('\n'),
      );
      agent = await startAgent({ server: grpcAddress, token: agentToken, exec: `sh '${command}'`, name: 'bench-changes' });

      interface Delivery {
        jobId: string;
        ms: number;
        patchBytes: number;
        /** The agent's and the server's steps, ms from the command's exit. */
        steps: { exitSeen: number; pushStart: number; pushEnd: number; patchTaken: number; recorded: number; succeeded: number };
      }
      const deliver = async (): Promise<Delivery> => {
        const jobId = await createJob('commit a payload of random text');
        const end = await ends.next(jobId, JOB_TIMEOUT_MS);
        const job = await getJob(jobId);
        if (end.status !== 'succeeded' || !job.change) throw new Error(`delivery job ${jobId} ended ${end.status}${job.failureReason ? ` (${job.failureReason})` : ''}, change ${job.change ? 'present' : 'missing'}`);
        // `date +%s%N` (nanoseconds, the machine's clock) against the NOTIFY's arrival (Date.now(), the same clock).
        const exitNs = BigInt((await fs.readFile(path.join(exitDir, jobId), 'utf8')).trim());
        const exitMs = Number(exitNs / 1000n) / 1000;
        const change = job.change;

        // Not a byte lost: the served patch is the one git makes of the pushed branch, of the size the change reports.
        const res = await api(`/jobs/${jobId}/diff`, { token: memberToken });
        const served = Buffer.from(await res.arrayBuffer());
        const pushedHead = (await git(remote.dir, ['rev-parse', `refs/heads/${change.branch}`])).toString().trim();
        const expected = await git(remote.dir, [...PINNED_DIFF, change.baseCommit, change.headCommit]);
        if (res.status !== 200) fail(`GET diff of job ${jobId} answered ${res.status}`);
        else if (served.byteLength !== change.patch.bytes) fail(`job ${jobId}: the diff served is ${served.byteLength} bytes, the change says ${change.patch.bytes}`);
        else if (sha256(served) !== sha256(expected)) fail(`job ${jobId}: the diff served (${served.byteLength} bytes) is not git's patch of the pushed commit (${expected.byteLength} bytes)`);
        if (pushedHead !== change.headCommit) fail(`job ${jobId}: the remote's ${change.branch} is at ${pushedHead}, the change says ${change.headCommit}`);

        // Where the time went: the agent's own log lines (stamped when it read them) and the change's row.
        const lines = await db.select({ at: logLines.at, text: logLines.text }).from(logLines).where(eq(logLines.jobId, jobId)).orderBy(asc(logLines.seq));
        const atOf = (test: (text: string) => boolean, from = 0) => lines.findIndex((l, i) => i >= from && test(l.text));
        const exitLine = atOf((t) => t === 'exited with code 0');
        const pushLine = atOf((t) => t.startsWith('$ git push'), exitLine);
        const changeLine = atOf((t) => t.startsWith('change: '), pushLine);
        const [row] = await db.select({ recordedAt: runChanges.recordedAt }).from(runChanges).where(and(eq(runChanges.jobId, jobId), eq(runChanges.attempt, job.attempt)));
        const since = (line: number) => (line >= 0 ? new Date(lines[line]!.at).getTime() - exitMs : NaN);
        return {
          jobId,
          ms: end.at - exitMs,
          patchBytes: change.patch.bytes,
          steps: {
            exitSeen: since(exitLine),
            pushStart: since(pushLine),
            // git's last line of output on the push (or the push's own line, had it said nothing).
            pushEnd: since(changeLine > pushLine ? changeLine - 1 : pushLine),
            patchTaken: since(changeLine),
            recorded: row ? new Date(row.recordedAt).getTime() - exitMs : NaN,
            succeeded: end.at - exitMs,
          },
        };
      };

      /** The baseline: the job's commit made again from the same file on a clone like the agent's, then pushed (timed) to a fresh bare repository. */
      const pushAlone = async (jobId: string, i: number): Promise<{ ms: number; sameCommit: boolean }> => {
        const job = await getJob(jobId);
        const dir = path.join(scratch, `baseline-${i}`);
        const work = path.join(dir, 'work');
        const fresh = path.join(dir, 'fresh.git');
        await fs.mkdir(dir);
        try {
          await git(dir, ['clone', '--quiet', '--branch', 'main', '--depth', '1', '--', remote.cloneUrl, work]);
          await fs.writeFile(path.join(work, PAYLOAD_FILE), await git(remote.dir, ['cat-file', 'blob', `${job.change!.headCommit}:${PAYLOAD_FILE}`]));
          await git(work, ['add', PAYLOAD_FILE], COMMIT_ENV);
          await git(work, ['commit', '-q', '-m', COMMIT_MESSAGE], COMMIT_ENV);
          const head = (await git(work, ['rev-parse', 'HEAD'])).toString().trim();
          // The fresh remote holds what the job's remote held before the push: main.
          // (From the job's remote itself: the shallow clone cannot seed a repository.)
          await git(dir, ['init', '--quiet', '--bare', '--initial-branch=main', fresh]);
          await git(remote.dir, ['push', '--quiet', `file://${fresh}`, 'main']);
          await git(work, ['remote', 'set-url', 'origin', `file://${fresh}`]);
          const t0 = performance.now();
          // The agent's push of a backlog job (job-runner.ts), to a branch of the same name.
          await git(work, ['push', '--force', 'origin', `HEAD:refs/heads/${job.change!.branch}`]);
          const ms = performance.now() - t0;
          return { ms, sameCommit: head === job.change!.headCommit };
        } finally {
          await fs.rm(dir, { recursive: true, force: true });
        }
      };

      // One unmeasured round (the agent's first job, the server's first patch), then the measured ones.
      const failuresBefore = failures;
      const warm = await deliver();
      await pushAlone(warm.jobId, 0);
      const ours: Delivery[] = [];
      const base: number[] = [];
      let different = 0;
      const measured = await withOtherLoad(async () => {
        for (let i = 1; i <= DELIVERY_RUNS; i++) {
          await quiet();
          const d = await deliver();
          ours.push(d);
          await quiet();
          const b = await pushAlone(d.jobId, i);
          base.push(b.ms);
          if (!b.sameCommit) different += 1;
        }
      });
      if (different > 0) problems.push(`the baseline made a different commit than the job in ${different} of ${DELIVERY_RUNS} runs: the pushes did not carry the same objects`);
      const row = (scenario: string, values: number[]): ScenarioRow => ({
        scenario,
        requests: values.length,
        rps: values.length / (values.reduce((s, v) => s + v, 0) / 1000),
        p50: median(values),
        p99: Math.max(...values),
        errors: scenario === S.ours ? failures - failuresBefore : 0,
        non2xx: 0,
        otherCores: measured.otherCores,
      });
      const baseRow = row(S.base, base);
      const oursRow = row(S.ours, ours.map((d) => d.ms));
      rows.push(baseRow, oursRow);
      const ratio = oursRow.p50 / baseRow.p50;
      comparisons.push(
        { kind: 'limit', name: `delivery: median command exit -> succeeded / median git push alone`, value: ratio, unit: 'x baseline', ceiling: DELIVERY_MAX_RATIO },
        { kind: 'latency', name: 'delivery: p50 git push alone / p50 ours (shown, judged above)', ours: oursRow.scenario, baseline: baseRow.scenario, target: Math.round(100 / DELIVERY_MAX_RATIO) / 100, informative: true },
      );
      const step = (pick: (s: Delivery['steps']) => number) => fmt.ms(median(ours.map((d) => pick(d.steps))));
      const steps = (d: Delivery) =>
        [d.steps.exitSeen, d.steps.pushStart, d.steps.pushEnd, d.steps.patchTaken, d.steps.recorded, d.steps.succeeded].map((v) => fmt.ms(v)).join(' / ');
      console.log(`  delivery: ours ${ours.map((d) => fmt.ms(d.ms)).join(', ')} ms; baseline ${base.map((v) => fmt.ms(v)).join(', ')} ms`);
      notes.push(
        `- delivery (p50 = median, p99 column = the slowest of ${DELIVERY_RUNS}): the reference agent (agents/typescript, its own process) runs a job whose command writes`,
        `  ${PAYLOAD_RANDOM_BYTES} random bytes as base64 (76 characters a line) into ${PAYLOAD_FILE}, commits it with a fixed author and date, and as its last`,
        '  action writes `date +%s%N` to a file outside the repository. Ours: that time -> the job_changed NOTIFY saying succeeded',
        '  reaches this process (Date.now(); both the machine\'s clock, 1 ms resolution): the agent reads the exit, commits nothing more,',
        `  pushes (git push --force to a bare file:// repository), lists the commit, diffs, sends the patch (${fmt.amount(median(ours.map((d) => d.patchBytes)) / MiB)} MiB) in 64 KiB`,
        '  PatchChunks (2 MiB unacknowledged at most), the server stores them, records the change on JobFinished, the workflow ends the job.',
        '  Baseline: the same commit (same id, so the same objects) made again from the same file on a shallow clone of main like the',
        '  agent\'s, pushed with the agent\'s arguments to a fresh bare repository holding main: the push alone, timed around git.',
        "  Patches checked: each GET …/diff is git's diff of the pushed commit (agent.proto's options), byte for byte, of the size the change reports.",
        `  Medians from the exit, ms: agent logs the exit ${step((s) => s.exitSeen)}, push starts ${step((s) => s.pushStart)}, push's last output ${step((s) => s.pushEnd)},`,
        `  patch taken ("change:" line) ${step((s) => s.patchTaken)}, change recorded (run_changes.recorded_at) ${step((s) => s.recorded)}, succeeded ${step((s) => s.succeeded)}.`,
        '  (Agent lines are stamped when the agent reads them, ms resolution; recorded_at is the database\'s transaction time.)',
        `  Per run (exit seen / push start / push end / patch taken / recorded / succeeded): ${ours.map(steps).join('; ')}.`,
      );
      await agent.dispose();
      agent = undefined;
    }

    // ---- (2) memory with 50 patches arriving at once ---------------------------------------------
    if (PHASES.has('memory')) {
      const connected = await clients.call('connectAgents', { address: grpcAddress, token: agentToken, count: AGENTS, parallel: 20 }, JOB_TIMEOUT_MS);
      if (connected.connected !== AGENTS) throw new Error(`only ${connected.connected} of ${AGENTS} agents connected`);
      if (connected.maxPatchBytes < PATCH_BYTES) throw new Error(`the server takes patches of at most ${connected.maxPatchBytes} bytes`);
      /** Runs the server took back from the agents before they delivered (DropJob), with the reasons. */
      const drops: string[] = [];
      /** One job per agent, each held (accepted, started) and its patch made; resolves with the patches. */
      const heldJobs = async (patchBytes: number) => {
        const jobIds: string[] = [];
        await inParallel(AGENTS, CREATE_PARALLEL, async () => {
          jobIds.push(await createJob('deliver a patch'));
        });
        const taken = await clients.call('takeJobs', { jobIds, timeoutMs: JOB_TIMEOUT_MS }, JOB_TIMEOUT_MS + CALL_SLACK_MS);
        drops.push(...taken.drops);
        if (taken.problems.length) fail(`while the agents took their jobs: ${taken.problems.length} problems, the first: ${taken.problems[0]}`);
        return (await clients.call('preparePatches', { bytes: patchBytes }, CALL_SLACK_MS)).patches;
      };
      const deliverTimeoutMs = DELIVER_TIMEOUT_MS[bench.driver];
      const deliver = () => clients.call('deliver', { chunkBytes: CHUNK_BYTES, windowBytes: WINDOW_BYTES, timeoutMs: deliverTimeoutMs }, deliverTimeoutMs + CALL_SLACK_MS);
      /** Waits for every job's end; the ends that were not a success. */
      const notSucceeded = async (jobIds: string[]) => {
        const statuses = await Promise.all(jobIds.map((id) => ends.next(id, JOB_TIMEOUT_MS).then((e) => e.status, (err: unknown) => String(err))));
        return statuses.filter((s) => s !== 'succeeded');
      };
      type Sent = { jobId: string; bytes: number; md5: string };
      /** Jobs whose stored chunks are not exactly the patch sent (whole, no gap, same md5) with its change recorded. */
      const notStoredWhole = async (patches: Sent[]) => {
        let wrong = 0;
        for (const want of patches) {
          const result = await db.execute(sql`
            select coalesce(sum(octet_length(c.data)), 0)::bigint as bytes, coalesce(max(c.byte_offset + octet_length(c.data)), 0)::bigint as "end",
                   md5(string_agg(c.data, ''::bytea order by c.byte_offset)) as md5,
                   (select patch_size from run_changes r where r.job_id = ${want.jobId}::uuid) as patch_size,
                   (select patch_stored from run_changes r where r.job_id = ${want.jobId}::uuid) as patch_stored
            from run_patch_chunks c where c.job_id = ${want.jobId}::uuid`);
          const stored = (result as unknown as { rows: { bytes: string | number; end: string | number; md5: string | null; patch_size: string | number | null; patch_stored: boolean | null }[] }).rows[0];
          if (stored && Number(stored.bytes) === want.bytes && Number(stored.end) === want.bytes && stored.md5 === want.md5 && Number(stored.patch_size) === want.bytes && stored.patch_stored === true) continue;
          wrong += 1;
          if (wrong <= 3) problems.push(`job ${want.jobId}: sent ${want.bytes} bytes (md5 ${want.md5}); stored ${JSON.stringify(stored)}`);
        }
        return wrong;
      };
      /**
       * One round: every agent holds a job, then all deliver at once; `during` runs meanwhile until
       * `done()`. A measured round starts once the process is quiet; `memory` takes GC'd samples
       * before and after.
       */
      const round = async (label: string, patchBytes: number, options: { measured: boolean; memory: boolean; during?: (done: () => boolean) => Promise<void> }) => {
        const patches = await heldJobs(patchBytes);
        const jobIds = patches.map((p) => p.jobId);
        if (options.measured) await quiet();
        const before = options.memory ? await sampleMemory() : undefined;
        const measured = await withOtherLoad(() =>
          withCpuCost(async () => {
            let done = false;
            const delivered = deliver().then(async (summary) => ({ summary, failed: await notSucceeded(jobIds) }));
            void delivered.finally(() => (done = true)).catch(() => {});
            await options.during?.(() => done);
            return delivered;
          }),
        );
        const { summary, failed } = measured.result.result;
        const after = options.memory ? await sampleMemory() : undefined;
        const lost = await notStoredWhole(patches);
        if (failed.length) fail(`${label}: ${failed.length} of ${AGENTS} patch jobs did not succeed: ${failed[0]}`);
        if (lost) fail(`${label}: ${lost} of ${AGENTS} patches not stored whole`);
        if (summary.problems.length) fail(`${label}: the agents saw ${summary.problems.length} problems, the first: ${summary.problems[0]}`);
        return { patches, jobIds, summary, before, after, cpu: measured.result.cpu, otherCores: measured.otherCores, errors: failed.length + lost + summary.problems.length };
      };

      // Unmeasured: every agent delivers a one-chunk patch, so that the connection pool, the code
      // paths and the workflows' first runs are warm before the figures, without raising the
      // allocator's high-water mark (RSS seldom shrinks: a first big round would hide the second's).
      await round('warm-up round', WARMUP_PATCH_BYTES, { measured: false, memory: false });
      // Memory: the server's memory sampled throughout.
      const samples: MemorySample[] = [];
      let peakRss = 0;
      const watchMemory = async (done: () => boolean) => {
        // Without forcing a collection, every 50 ms: the highest RSS the server reached.
        const watch = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
        try {
          while (!done()) {
            samples.push(await sampleMemory(0));
            await new Promise((r) => setTimeout(r, SAMPLE_PAUSE_MS));
          }
        } finally {
          clearInterval(watch);
        }
      };
      const sampled = await round('memory round', PATCH_BYTES, { measured: true, memory: true, during: watchMemory });
      const { summary } = sampled;
      const before = sampled.before!;
      const after = sampled.after!;
      // Throughput: the same again with nothing else running in this process meanwhile (a forced
      // collection stops the server for as long as it takes).
      const fast = postgres ? await round('throughput round', PATCH_BYTES, { measured: true, memory: false }) : sampled;

      // As a reader gets them: the job's change and its diff, over the API (after the memory figures).
      const sent = new Map(sampled.patches.map((p) => [p.jobId, p]));
      const reported = await Promise.all(sampled.jobIds.map(async (id) => ({ id, patch: (await getJob(id)).change?.patch })));
      const badReports = reported.filter(({ id, patch }) => !patch || !patch.available || patch.bytes !== sent.get(id)!.bytes).length;
      const every = Math.max(1, Math.floor(AGENTS / DOWNLOADS));
      const downloaded = sampled.jobIds.filter((_, i) => i % every === 0);
      const downloads = await clients.call(
        'download',
        { downloads: downloaded.map((jobId) => ({ jobId, url: `${bench.url}/v1/orgs/${orgId}/jobs/${jobId}/diff` })), token: memberToken, parallel: 5, timeoutMs: JOB_TIMEOUT_MS },
        JOB_TIMEOUT_MS * 2 + CALL_SLACK_MS,
      );
      const badDownloads = downloads.results.filter((d) => d.status !== 200 || d.bytes !== sent.get(d.jobId)!.bytes || d.md5 !== sent.get(d.jobId)!.md5).length;
      const closed = await clients.call('closeAgents', {}, CALL_SLACK_MS);
      if (badReports) fail(`${badReports} of ${AGENTS} jobs report a change whose patch is missing or of the wrong size`);
      if (badDownloads) fail(`${badDownloads} of ${downloaded.length} diffs served wrong (status, size or bytes)`);
      if (closed.problems.length) fail(`the agents saw ${closed.problems.length} problems, the first: ${closed.problems[0]}`);

      // The storage baseline, last (on PGlite it runs in this process and would move the memory figures).
      const spec: PatchBaselineSpec = { jobIds: postgres ? sampled.jobIds : sampled.jobIds.slice(0, PGLITE_BASELINE_JOBS), attempt: BASELINE_ATTEMPT, bytesPerJob: PATCH_BYTES, chunkBytes: CHUNK_BYTES };
      const connections = system.config.database.kind === 'postgres' ? system.config.database.poolSize : 1;
      await quiet();
      const baseline = await withOtherLoad(async (): Promise<PatchBaselineResult> => {
        if (system.config.database.kind === 'postgres') {
          return clients.call('insertBaseline', { databaseUrl: system.config.database.url, connections, spec }, deliverTimeoutMs + CALL_SLACK_MS);
        }
        // PGlite has no server to connect to: the baseline runs on its one connection, in this process.
        const pglite = (db as unknown as { $client?: SqlConnection }).$client;
        if (typeof pglite?.query !== 'function') throw new Error('no PGlite client to run the baseline on');
        return insertPatchBaseline([pglite], spec);
      });
      await db.execute(sql`delete from run_patch_chunks where attempt = ${BASELINE_ATTEMPT}`);
      const b = baseline.result;

      const chunkRow = (scenario: string, r: typeof fast, errors: number): ScenarioRow => ({
        scenario,
        requests: r.summary.chunkAck.count,
        rps: r.summary.chunkAck.count / r.summary.seconds,
        p50: r.summary.chunkAck.p50,
        p99: r.summary.chunkAck.p99,
        errors,
        non2xx: 0,
        otherCores: r.otherCores,
      });
      const baseRow: ScenarioRow = { scenario: S.storeBase, requests: b.chunks, rps: b.chunks / b.seconds, p50: b.statement.p50, p99: b.statement.p99, errors: 0, non2xx: 0, otherCores: baseline.otherCores };
      const memoryRow = chunkRow(S.memory, sampled, sampled.errors + badReports + badDownloads + closed.problems.length);
      // On PGlite the memory round's figures stand in for the throughput round's.
      const fastRow = postgres ? chunkRow(S.storeOurs, fast, fast.errors) : memoryRow;
      rows.push(...(postgres ? [baseRow, fastRow, memoryRow] : [baseRow, memoryRow]));

      const peak = (pick: (m: MemorySample) => number) => Math.max(pick(before), ...samples.map(pick));
      const growth = { rss: (peak((m) => m.rss) - before.rss) / MB, heap: (peak((m) => m.heapUsed) - before.heapUsed) / MB, external: (peak((m) => m.external) - before.external) / MB };
      console.log(`  ${baseRow.scenario}: ${b.bytes} bytes in ${b.seconds.toFixed(2)} s`);
      if (postgres) console.log(`  ${fastRow.scenario}: ${fast.summary.bytes} bytes in ${fast.summary.seconds.toFixed(2)} s`);
      console.log(`  ${memoryRow.scenario}: ${summary.bytes} bytes in ${summary.seconds.toFixed(2)} s; server GC'd RSS +${fmt.amount(growth.rss)} MB at peak`);
      const patches = `${AGENTS} x ${PATCH_BYTES / MiB} MiB patches at once`;
      comparisons.push(
        { kind: 'limit', name: `${patches}: server RSS growth (GC'd, peak - before)`, value: growth.rss, unit: 'MB', ceiling: MEMORY_MAX_MB },
        // What the server holds live (patch bytes are Buffers, external): RSS alone can hide it in the allocator's slack.
        { kind: 'limit', name: `${patches}: server heap + external growth (GC'd, peak - before)`, value: Math.max(0, growth.heap) + Math.max(0, growth.external), unit: 'MB', ceiling: MEMORY_MAX_MB },
        { kind: 'limit', name: `${patches}: server RSS kept (GC'd, after - before)`, value: (after.rss - before.rss) / MB, unit: 'MB', ceiling: MEMORY_MAX_MB, informative: true },
        { name: `${patches}: agents -> gateway -> database vs plain INSERTs (chunks/s)`, ours: fastRow.scenario, baseline: baseRow.scenario, target: STORE_RATIO_SHOWN, informative: true },
      );
      const rate = (bytes: number, seconds: number) => `${fmt.amount(bytes / MiB / seconds)} MiB/s`;
      const cpuPerMiB = (cpu: CpuCost, bytes: number) =>
        `${fmt.ms(cpu.process / (bytes / MiB))} ms in this process${postgres ? `, ${fmt.ms(cpu.postgres / (bytes / MiB))} ms in PostgreSQL` : ''}, ${fmt.ms(cpu.children / (bytes / MiB))} ms in child processes (the agents, Temporal)`;
      const delivery = (r: typeof fast) =>
        `${r.summary.seconds.toFixed(2)} s (first chunk -> last JobFinishedAck), ${rate(r.summary.bytes, r.summary.seconds)}; per agent p50 ${fmt.ms(r.summary.perAgent.p50)} ms, max ${fmt.ms(r.summary.perAgent.max)} ms; ` +
        `chunk written -> acked p50 ${fmt.ms(r.summary.chunkAck.p50)} ms, p99 ${fmt.ms(r.summary.chunkAck.p99)} ms; most bytes unacknowledged at once ${fmt.amount(r.summary.maxUnacked / MiB)} MiB`;
      notes.push(
        `- memory: ${AGENTS} lean agents (real agent.v1 gRPC clients, a connection each, in a child process) each hold a job and send its ${PATCH_BYTES / MiB} MiB patch`,
        `  (a git patch adding a file of random base64 text, ${fmt.amount(summary.bytes / MiB)} MiB in all) at once, in ${CHUNK_BYTES / 1024} KiB PatchChunks with at most ${WINDOW_BYTES / MiB} MiB`,
        `  unacknowledged, then JobFinished with the change. After an unmeasured round of ${WARMUP_PATCH_BYTES / 1024} KiB patches, ${postgres ? 'two rounds' : 'one round'}, each after the process went quiet:`,
        `  memory round (a forced full collection every ~${(SAMPLE_PAUSE_MS + 500) / 1000} s, which stops the server while it runs): ${delivery(sampled)}.`,
        ...(postgres
          ? [`  throughput round (nothing forced in this process): ${delivery(fast)}.`]
          : ["  (no throughput round on PGlite: it stores bytea at a few MiB/s, the memory round's figures stand in for it.)"]),
        `    CPU per MiB: ${cpuPerMiB(fast.cpu, fast.summary.bytes)}.`,
        `  Server memory (this process: the gateway, the API, the Temporal worker${postgres ? '' : ', PGlite and its buffers'}), GC'd: before ${memoryLine(before)};`,
        `  peak of ${samples.length} samples while they arrived: RSS ${mb(peak((m) => m.rss))}, heap ${mb(peak((m) => m.heapUsed))}, external ${mb(peak((m) => m.external))};`,
        `  after ${memoryLine(after)}. Growth at the peak: RSS +${fmt.amount(growth.rss)} MB, heap +${fmt.amount(growth.heap)} MB, external +${fmt.amount(growth.external)} MB;`,
        `  highest RSS without forcing a collection (every 50 ms): ${mb(peakRss)} (+${fmt.amount((peakRss - before.rss) / MB)} MB).`,
        `  Target ${MEMORY_MAX_MB} MB: the server pauses a stream above ${MAX_UNSTORED_LOG_BYTES / MiB} MiB read and not stored, and every stream above 8 MiB across them;`,
        `  a stream it stops reading takes in only the chunk already on its way (read-gate.ts), ${AGENTS} x ${CHUNK_BYTES / 1024} KiB = ${fmt.amount((AGENTS * CHUNK_BYTES) / MiB)} MiB in all,`,
        '  each waiting chunk held about twice (decoded, then on its way to the database), with the network buffers of the one each stream assembles.',
        `  Baseline: ${postgres ? 'the same' : `the first ${PGLITE_BASELINE_JOBS} jobs' (the rate is compared)`} ${b.chunks} chunks of the same jobs (random base64 text too) inserted into run_patch_chunks ${postgres ? `by a plain process (pg) over ${connections} connections, as many as the server's pool` : "through PGlite's one connection in this process"},`,
        `  one INSERT a chunk, each connection a job's chunks in order: ${b.seconds.toFixed(2)} s, ${rate(b.bytes, b.seconds)}, INSERT p50 ${fmt.ms(b.statement.p50)} ms, p99 ${fmt.ms(b.statement.p99)} ms (rows deleted afterwards).`,
        `  Runs the server took back from an agent before it sent any patch (DropJob; the job requeued and assigned anew): ${drops.length}${drops.length ? `, e.g. ${drops.slice(0, 2).join('; ')}` : ''}.`,
        `  Checked, every round: every job succeeded; per job the stored chunks make the whole patch, no gap, same md5. The memory round's also: the job's change`,
        `  reports the size (${badReports} wrong of ${AGENTS}); GET …/diff of every ${every}th job serves the same bytes (${badDownloads} wrong of ${downloaded.length};`,
        `  ${fmt.amount((downloaded.length * PATCH_BYTES) / MiB)} MiB, 5 at a time, in ${downloads.seconds.toFixed(1)} s: ${rate(downloaded.length * PATCH_BYTES, downloads.seconds)}).`,
      );
    }

    for (const p of problems) console.error(`  problem: ${p}`);
    comparisons.push({ kind: 'limit', name: 'lost or wrong patch bytes, and jobs that did not succeed, all scenarios', value: failures, unit: 'failures', ceiling: 0 });
    const headNotes = [
      'How to read this:',
      `- One process runs the real system (startSystem, ROLE=all); ${postgres ? 'PostgreSQL, a fresh database' : 'PGlite (embedded, one connection, in this process)'}; the reference agent and git run`,
      '  as their own processes, the 50 patch agents and the downloads in a child process. Server memory is this process\'s (memory.ts).',
      `- Before each measured run the bench waited for this process to go quiet: ${settled.map((w) => `${w.toFixed(1)} s`).join(', ')}.`,
    ];
    return {
      title: `Changes on ${postgres ? 'PostgreSQL' : 'PGlite'}`,
      rows,
      comparisons,
      notes: [...headNotes, ...notes, ...(problems.length ? [`- PROBLEMS (${problems.length}): ${problems.slice(0, 5).join('; ')}`] : [])],
    };
  } finally {
    await agent?.dispose().catch(() => {});
    await clients.stop();
    await unlisten?.().catch(() => {});
    await bench.stop();
    await remote.remove().catch(() => {});
    await fs.rm(scratch, { recursive: true, force: true }).catch(() => {});
  }
}

const benchmark: Benchmark = { title: 'Changes', run };
export default benchmark;
