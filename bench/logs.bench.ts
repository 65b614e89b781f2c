// Live logs, through the whole stack, on one database in one run: (1) ingest, lines/s from 1 and
// from 50 agents (real agent.v1 gRPC clients) through the gateway into the database, against the
// same rows inserted by a plain process with multi-row INSERTs; (2) latency, a line printed by the
// reference agent's job → a WebSocket viewer receives it, with 100 viewers at 10,000 lines/s;
// (3) server memory with 1,000 viewers on one job; (4) a 1,000,000-line job streamed, stored and
// replayed whole (WebSocket and REST download) with server memory before, during and after.
// Every viewer checks it got each seq exactly once; every stored log is counted in the database.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { and, count, eq, inArray, like, max, sql } from 'drizzle-orm';
import { logLines } from '../src/db/schema/index.js';
import { channels, type JobChangedPayload } from '../src/services/notifications.js';
import { startAgent, type AgentProcess } from '../test/support/agent-process.js';
import { createGitRepository } from '../test/support/git-fixture.js';
import { Arrivals } from './support/arrivals.js';
import { settle, withOtherLoad } from './support/load.js';
import { insertBaselineRows, type BaselineResult, type SqlConnection } from './support/log-baseline.js';
import { LogClients, type BaselineRows, type IngestSummary, type ViewersSummary } from './support/log-clients.js';
import { MB, sampleMemory, type MemorySample } from './support/memory.js';
import { fmt, type BenchReport, type Benchmark, type Comparison, type ScenarioRow } from './support/report.js';
import { startBenchSystem, type BenchSystem } from './support/system.js';

const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
/** BENCH_LOG_PHASES=ingest,latency,viewers,big (the default: all) runs only those, for development. */
const PHASES = new Set((process.env.BENCH_LOG_PHASES ?? 'ingest,latency,viewers,big').split(','));
/** Characters of text per line (about a terminal line of build output), the same on every side. */
const LINE_BYTES = 100;
/** Lines per ingest scenario, shared among its agents (and the same rows for the baseline). */
const INGEST_LINES = env('BENCH_LOG_INGEST_LINES', 300_000);
const INGEST_AGENTS = [1, 50];
const INGEST_WARMUP_LINES = 20_000;
const LATENCY_RATE = 10_000;
const LATENCY_VIEWERS = 100;
const LATENCY_WARMUP_S = 3;
const LATENCY_S = env('BENCH_LOG_LATENCY_S', 10);
const MEMORY_VIEWERS = env('BENCH_LOG_VIEWERS', 1000);
/** Lines/s printed while 1,000 viewers watch: each line goes to every viewer (x1000 on the wire). */
const MEMORY_RATE = env('BENCH_LOG_MEMORY_RATE', 1000);
const MEMORY_PRINT_S = 12;
const BIG_LINES = env('BENCH_LOG_BIG_LINES', 1_000_000);
/** GC'd memory samples while the big job streams. */
const BIG_SAMPLE_EVERY_MS = 2_000;

const INGEST_RATIO_TARGET = 0.5;
const INGEST_FLOOR = 50_000; // lines/s, PostgreSQL
const LATENCY_P99_MAX_MS = 100;
const VIEWERS_MAX_MB = 150;
/** "Flat": from a tenth of the big log stored to its end, server memory grows by at most this. */
const BIG_FLAT_MAX_MB = 32;

/** Bounds: a stuck phase is a bug, not a timing. */
const INGEST_TIMEOUT_MS = 180_000;
const JOB_TIMEOUT_MS = 120_000;
const BIG_TIMEOUT_MS = 300_000;
const CALL_SLACK_MS = 30_000;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const printer = path.join(repoRoot, 'bench/support/log-printer.ts');
/** The printer's `t=<ms> m ` prefix is 22 characters: its lines are LINE_BYTES long too. */
const PRINTER_TEXT_BYTES = LINE_BYTES - 22;

const S = {
  base: (n: number) => `ingest baseline: ${n} job${n > 1 ? 's' : ''}, plain multi-row INSERT (lines)`,
  ours: (n: number) => `ingest ours: ${n} agent${n > 1 ? 's' : ''} -> gateway -> database (lines)`,
  latency: `latency: ${LATENCY_VIEWERS} viewers, ${LATENCY_RATE} lines/s printed -> received (line deliveries)`,
  viewers: `${MEMORY_VIEWERS} viewers on one job, ${MEMORY_RATE} lines/s (line deliveries)`,
  bigStore: `${BIG_LINES} lines: reference agent -> stored, 1 live viewer (lines)`,
  bigReplay: `${BIG_LINES} lines: WebSocket replay from after=0 (lines)`,
  bigDownload: `${BIG_LINES} lines: REST download (lines)`,
};

const terminal = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const mb = (bytes: number) => `${fmt.amount(bytes / MB)} MB`;
const memoryLine = (m: MemorySample) => `RSS ${mb(m.rss)}, heap ${mb(m.heapUsed)}, external ${mb(m.external)}`;

/** Viewer failures: every line not received exactly once, and every viewer without its end frame. */
const viewerErrors = (v: ViewersSummary) => v.lost + v.duplicates + v.noEnd + v.badFrames;
const viewersLine = (v: ViewersSummary) =>
  `${v.viewers} viewers, ${v.lines} lines received, ${v.duplicates} duplicated, ${v.lost} lost, ${v.noEnd} without the end frame (${v.stuck} cut off at the time limit), ${v.badFrames} bad frames; ` +
  `close codes ${JSON.stringify(v.closeCodes)}${Object.keys(v.reasons).length ? ` (${JSON.stringify(v.reasons)})` : ''}; last seq ${v.minLastSeq}..${v.maxLastSeq}`;

async function run(): Promise<BenchReport> {
  const startedAt = Date.now();
  const bench: BenchSystem = await startBenchSystem();
  console.log(`  system started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (${bench.driver}, ${bench.url})`);
  const clients = LogClients.start();
  const repository = await createGitRepository();
  const agentProcesses: AgentProcess[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  try {
    const { system } = bench;
    const db = system.database.db;
    if (!system.grpcPort) throw new Error('the bench system serves no gRPC endpoint');
    const grpcAddress = `127.0.0.1:${system.grpcPort}`;
    const postgres = bench.driver === 'postgres';
    const databaseUrl = system.config.database.kind === 'postgres' ? system.config.database.url : undefined;
    const poolSize = system.config.database.kind === 'postgres' ? system.config.database.poolSize : 1;
    // The issue's targets are PostgreSQL's: on PGlite (the database in this process, one connection)
    // the figures are shown, not judged. Lost or duplicated lines are judged everywhere.
    const onlyShown = !postgres;

    // One organisation; its member watches, its admin sets up. The repository is a real one on disk,
    // for the reference agent to clone.
    const orgId = randomUUID();
    const adminToken = await bench.token(randomUUID(), { [orgId]: 'Admin' });
    const viewerToken = await bench.token(randomUUID(), { [orgId]: 'Member' });
    const post = async <T>(route: string, body: unknown): Promise<T> => {
      const res = await fetch(`${bench.url}/v1/orgs/${orgId}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (res.status !== 201) throw new Error(`POST ${route} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
      return (await res.json()) as T;
    };
    const repo = await post<{ id: string }>('/repositories', { name: 'bench-logs', cloneUrl: repository.cloneUrl, defaultBranch: 'main' });
    const agentToken = (await post<{ secret: string }>('/agent-tokens', { name: 'bench-logs' })).secret;
    const createJob = async () => (await post<{ id: string }>('/jobs', { prompt: 'print', repoId: repo.id, queueType: 'backlog' })).id;

    // How each job ends (the job_changed trigger's NOTIFY).
    const ends = new Arrivals<string>();
    const unlistenEnds = await system.database.listen(channels.jobChanged, (raw) => {
      const { jobId, status } = JSON.parse(raw) as JobChangedPayload;
      if (terminal.has(status)) ends.record(jobId, status);
    });
    // INSERT statements that stored lines, counted by the log_appended trigger's one NOTIFY each.
    let inserts = 0;
    const unlistenInserts = await system.database.listen(channels.logAppended, () => {
      inserts += 1;
    });
    unlisten = async () => {
      await unlistenEnds();
      await unlistenInserts();
    };

    /** Per job: lines stored, and those of 1..expected that are missing (the primary key rules out duplicates). */
    const stored = async (jobIds: string[], expected: number) => {
      const rows = await db
        .select({ jobId: logLines.jobId, n: count(), last: max(logLines.seq) })
        .from(logLines)
        .where(inArray(logLines.jobId, jobIds))
        .groupBy(logLines.jobId);
      const lines = rows.reduce((sum, r) => sum + r.n, 0);
      const missing = jobIds.reduce((sum, id) => {
        const row = rows.find((r) => r.jobId === id);
        return sum + (row && Number(row.last) === row.n ? Math.max(0, expected - row.n) : expected);
      }, 0);
      return { lines, missing };
    };
    const lastStored = async (jobId: string) => Number((await db.select({ last: max(logLines.seq) }).from(logLines).where(eq(logLines.jobId, jobId)))[0]?.last ?? 0);
    /** Lines of the job that the printer printed (the agent's own system lines aside). */
    const printedStored = async (jobId: string) => (await db.select({ n: count() }).from(logLines).where(and(eq(logLines.jobId, jobId), like(logLines.text, 't=%'))))[0]?.n ?? 0;
    const emptyLogTable = () => db.execute(sql`truncate log_lines`);

    const baselineConnections = (n: number) => Math.min(n, poolSize);
    const runBaseline = async (rows: BaselineRows): Promise<BaselineResult> => {
      if (databaseUrl) return clients.call('insertBaseline', { databaseUrl, rows }, INGEST_TIMEOUT_MS);
      // PGlite has no server to connect to: the baseline runs on its one connection, in this process.
      const pglite = (db as unknown as { $client?: SqlConnection }).$client;
      if (typeof pglite?.query !== 'function') throw new Error('no PGlite client to run the baseline on');
      return insertBaselineRows([pglite], rows);
    };

    const rows: ScenarioRow[] = [];
    const notes: string[] = [];
    const comparisons: Comparison[] = [];
    const problems: string[] = [];
    const settled: number[] = [];
    const quiet = async () => settled.push(await settle());
    const print = (row: ScenarioRow, extra = '') =>
      console.log(`  ${row.scenario}: ${row.requests} in ${fmt.rps(row.rps)}/s, p50 ${fmt.ms(row.p50)} ms, p99 ${fmt.ms(row.p99)} ms, ${row.errors} errors, other load ${(row.otherCores ?? 0).toFixed(2)} cores${extra}`);

    // ---- (1) ingest ---------------------------------------------------------------------------
    /** n agents, each with a job of its own; resolves with their job ids. */
    let maxBatchLines = 0;
    const agentsWithJobs = async (n: number) => {
      const connected = await clients.call('connectAgents', { address: grpcAddress, token: agentToken, count: n, parallel: 20 }, JOB_TIMEOUT_MS);
      maxBatchLines = connected.maxBatchLines;
      for (let i = 0; i < n; i++) await createJob();
      return (await clients.call('agentJobs', { timeoutMs: JOB_TIMEOUT_MS }, JOB_TIMEOUT_MS + CALL_SLACK_MS)).jobIds;
    };
    const finishAgents = async (jobIds: string[], lastSeq: number) => {
      await clients.call('finishAgents', { lastSeq, timeoutMs: JOB_TIMEOUT_MS }, JOB_TIMEOUT_MS + CALL_SLACK_MS);
      for (const id of jobIds) {
        const status = await ends.next(id, JOB_TIMEOUT_MS);
        if (status !== 'succeeded') problems.push(`ingest job ${id} ended ${status}`);
      }
      const closed = await clients.call('closeAgents', {}, CALL_SLACK_MS);
      problems.push(...closed.problems);
      return closed.problems.length;
    };
    const ingest = async (n: number, linesPerAgent: number, measured: boolean) => {
      const jobIds = await agentsWithJobs(n);
      // The agents' batch size is what the server's Welcome asked for.
      const sameRows: BaselineRows = { jobIds, linesPerJob: linesPerAgent, textBytes: LINE_BYTES, batch: maxBatchLines, connections: baselineConnections(n) };

      // The baseline first, on the very jobs the agents hold; then the table is emptied for ours.
      await emptyLogTable();
      if (measured) await quiet();
      const base = await withOtherLoad(() => runBaseline(sameRows));
      const baseStored = await stored(jobIds, linesPerAgent);
      await emptyLogTable();
      if (measured) await quiet();

      const memory = new PeakMemory();
      const insertsBefore = inserts;
      const ours = await withOtherLoad(() => memory.during(() => clients.call('print', { lines: linesPerAgent, textBytes: LINE_BYTES, timeoutMs: INGEST_TIMEOUT_MS }, INGEST_TIMEOUT_MS + CALL_SLACK_MS)));
      const oursStored = await stored(jobIds, linesPerAgent);
      // Notifications are delivered after commit: a moment for the last ones to arrive.
      await new Promise((r) => setTimeout(r, 200));
      const oursInserts = inserts - insertsBefore;
      const objections = await finishAgents(jobIds, linesPerAgent);
      await emptyLogTable();
      if (!measured) return;

      const b = base.result;
      const baseRow: ScenarioRow = { scenario: S.base(n), requests: b.lines, rps: b.lines / b.seconds, p50: b.statement.p50, p99: b.statement.p99, errors: baseStored.missing, non2xx: 0, otherCores: base.otherCores };
      const o: IngestSummary = ours.result;
      const oursRow: ScenarioRow = { scenario: S.ours(n), requests: o.lines, rps: o.lines / o.seconds, p50: o.ack.p50, p99: o.ack.p99, errors: oursStored.missing + objections, non2xx: 0, otherCores: ours.otherCores };
      rows.push(baseRow, oursRow);
      const agents = `${n} agent${n > 1 ? 's' : ''}`;
      comparisons.push(
        { name: `ingest, ${agents} vs plain multi-row INSERT`, ours: oursRow.scenario, baseline: baseRow.scenario, target: INGEST_RATIO_TARGET, informative: onlyShown },
        { kind: 'limit', name: `ingest, ${agents}: lines/s`, value: oursRow.rps, unit: 'lines/s', floor: INGEST_FLOOR, informative: onlyShown },
      );
      print(baseRow);
      print(oursRow, `; server RSS peak +${mb(memory.peakRss - memory.startRss)}`);
      notes.push(
        `- ingest, ${n} agent${n > 1 ? 's' : ''}: ${o.lines} lines (${linesPerAgent} per job) in ${o.seconds.toFixed(2)} s; batch written -> acked p50 ${fmt.ms(o.ack.p50)} ms, p99 ${fmt.ms(o.ack.p99)} ms, max ${fmt.ms(o.ack.max)} ms;`,
        `  stored ${oursStored.lines} in ${oursInserts} INSERT statements (${fmt.amount(oursStored.lines / oursInserts)} lines each: batches that queued up behind each other are stored as one),`,
        `  missing ${oursStored.missing}; server RSS ${mb(memory.startRss)} before, peak ${mb(memory.peakRss)} during (no GC forced).`,
        `  baseline: ${b.lines} rows over ${sameRows.connections} connection${sameRows.connections > 1 ? 's' : ''} in ${b.seconds.toFixed(2)} s, INSERT of ${sameRows.batch} rows p50 ${fmt.ms(b.statement.p50)} ms, p99 ${fmt.ms(b.statement.p99)} ms; stored ${baseStored.lines}, missing ${baseStored.missing}.`,
      );
    };

    // Unmeasured: warms the gateway, the insert path and the baseline's code before the figures.
    if (PHASES.has('ingest')) {
      await ingest(1, INGEST_WARMUP_LINES, false);
      for (const n of INGEST_AGENTS) await ingest(n, Math.floor(INGEST_LINES / n), true);
    }

    // ---- the reference agent, printing ----------------------------------------------------------
    /** A job run by a real reference agent process whose command is the printer. */
    const printedJob = async (printerArgs: string) => {
      const jobId = await createJob();
      const start = async () => {
        const agent = await startAgent({ server: grpcAddress, token: agentToken, exec: `cd '${repoRoot}' && exec '${process.execPath}' --import tsx '${printer}' ${printerArgs}`, name: 'bench-printer' });
        agentProcesses.push(agent);
        return agent;
      };
      const ended = async (timeoutMs: number) => {
        const status = await ends.next(jobId, timeoutMs);
        if (status !== 'succeeded') throw new Error(`the printing job ${jobId} ended ${status}`);
      };
      const stop = async (agent: AgentProcess) => {
        agent.kill('SIGTERM');
        await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000))]);
        await agent.dispose();
        agentProcesses.splice(agentProcesses.indexOf(agent), 1);
      };
      return { jobId, start, ended, stop };
    };
    const openViewers = (jobId: string, n: number, measureLatency: boolean, after = 0) =>
      clients.call('openViewers', { baseUrl: bench.url, orgId, jobId, token: viewerToken, count: n, parallel: 50, after, measureLatency }, JOB_TIMEOUT_MS);

    // ---- (2) latency ----------------------------------------------------------------------------
    if (PHASES.has('latency')) {
      await quiet();
      const job = await printedJob(`paced ${LATENCY_RATE} ${LATENCY_WARMUP_S} ${LATENCY_S} ${PRINTER_TEXT_BYTES}`);
      // The viewers follow the job from before its first line, as a user watching it start.
      const opened = await openViewers(job.jobId, LATENCY_VIEWERS, true);
      let serverCores = NaN;
      const insertsBefore = inserts;
      const measured = await withOtherLoad(async () => {
        const agent = await job.start();
        const cpu = new ServerCpu();
        await job.ended(JOB_TIMEOUT_MS);
        serverCores = cpu.cores();
        const viewers = await clients.call('viewersDone', { timeoutMs: 30_000 }, 30_000 + CALL_SLACK_MS);
        await job.stop(agent);
        return viewers;
      });
      const v = measured.result;
      const last = await lastStored(job.jobId);
      const expectedPrinted = LATENCY_RATE * (LATENCY_WARMUP_S + LATENCY_S);
      const printed = await printedStored(job.jobId);
      const row: ScenarioRow = {
        scenario: S.latency,
        requests: v.latency.count,
        rps: v.latency.count / LATENCY_S,
        p50: v.latency.p50,
        p99: v.latency.p99,
        errors: viewerErrors(v) + (v.maxLastSeq !== last || v.minLastSeq !== last ? 1 : 0) + Math.abs(expectedPrinted - printed),
        non2xx: 0,
        otherCores: measured.otherCores,
      };
      rows.push(row);
      print(row, `; max ${fmt.ms(v.latency.max)} ms`);
      comparisons.push({ kind: 'limit', name: `latency p99, ${LATENCY_VIEWERS} viewers at ${LATENCY_RATE} lines/s`, value: row.p99, unit: 'ms', ceiling: LATENCY_P99_MAX_MS, informative: onlyShown });
      notes.push(
        `- latency: the reference agent (agents/typescript/src/main.ts, its own process) ran a job printing ${LATENCY_RATE} lines/s for ${LATENCY_WARMUP_S} s of warm-up then ${LATENCY_S} s measured`,
        `  (${expectedPrinted} lines, each carrying its print time by this machine's clock); ${opened.opened} viewers connected before the job started (handshake p50 ${fmt.ms(opened.handshake.p50)} ms).`,
        `  Print -> received over ${v.latency.count} line deliveries: p50 ${fmt.ms(v.latency.p50)} ms, p99 ${fmt.ms(v.latency.p99)} ms, max ${fmt.ms(v.latency.max)} ms. This includes the agent's`,
        `  batching (a line waits up to 20 ms for company) and the child process's own delay in reading its sockets.`,
        `  The newest line of each frame, from the agent's stamp (LogLine.at, when it read the line; ms resolution) -> received:`,
        `  p50 ${fmt.ms(v.fromAgentStamp.p50)} ms, p99 ${fmt.ms(v.fromAgentStamp.p99)} ms, max ${fmt.ms(v.fromAgentStamp.max)} ms.`,
        `  Stored: ${last} lines, ${printed} of them printed (the rest the agent's own system lines). Viewers: ${viewersLine(v)}.`,
        `  The agent's batches were stored in ${inserts - insertsBefore} INSERT statements; the server (this process) kept ${serverCores.toFixed(2)} cores busy`,
        '  from the agent\'s start to the job\'s end.',
      );
      if (viewerErrors(v) > 0) problems.push(`latency viewers: ${viewersLine(v)}`);
    }

    // ---- (3) memory with 1,000 viewers -----------------------------------------------------------
    if (PHASES.has('viewers')) {
      await quiet();
      const before = await sampleMemory();
      const job = await printedJob(`paced ${MEMORY_RATE} 0 ${MEMORY_PRINT_S} ${PRINTER_TEXT_BYTES}`);
      const measured = await withOtherLoad(async () => {
        const opened = await openViewers(job.jobId, MEMORY_VIEWERS, false);
        const connected = await sampleMemory();
        const agent = await job.start();
        // Halfway through the printing, every viewer fed: what the server holds for them then.
        await new Promise((r) => setTimeout(r, (MEMORY_PRINT_S / 2) * 1000));
        const during = await sampleMemory(2);
        await job.ended(JOB_TIMEOUT_MS);
        const viewers = await clients.call('viewersDone', { timeoutMs: 60_000 }, 60_000 + CALL_SLACK_MS);
        await job.stop(agent);
        return { opened, connected, during, viewers };
      });
      const after = await sampleMemory();
      const { opened, connected, during, viewers: v } = measured.result;
      const last = await lastStored(job.jobId);
      const printed = await printedStored(job.jobId);
      const growth = (Math.max(connected.rss, during.rss) - before.rss) / MB;
      const row: ScenarioRow = {
        scenario: S.viewers,
        requests: v.lines,
        rps: v.lines / MEMORY_PRINT_S,
        p50: opened.handshake.p50,
        p99: opened.handshake.p99,
        errors: viewerErrors(v) + (v.maxLastSeq !== last || v.minLastSeq !== last ? 1 : 0) + Math.abs(MEMORY_RATE * MEMORY_PRINT_S - printed),
        non2xx: 0,
        otherCores: measured.otherCores,
      };
      rows.push(row);
      print(row, `; server RSS +${fmt.amount(growth)} MB`);
      const heapGrowth = (Math.max(connected.heapUsed, during.heapUsed) - before.heapUsed) / MB;
      comparisons.push(
        { kind: 'limit', name: `${MEMORY_VIEWERS} viewers on one job: server RSS growth`, value: growth, unit: 'MB', ceiling: VIEWERS_MAX_MB, informative: onlyShown },
        { kind: 'limit', name: `${MEMORY_VIEWERS} viewers on one job: server heap growth`, value: heapGrowth, unit: 'MB', ceiling: VIEWERS_MAX_MB, informative: true },
      );
      notes.push(
        `- ${MEMORY_VIEWERS} viewers on one job (p50/p99 there: WebSocket handshake, ms): connected in ${opened.seconds.toFixed(1)} s, then the reference agent printed ${MEMORY_RATE} lines/s for ${MEMORY_PRINT_S} s.`,
        `  Server memory (GC'd): before ${memoryLine(before)}; viewers connected ${memoryLine(connected)};`,
        `  while printing ${memoryLine(during)}; after they left ${memoryLine(after)}.`,
        `  Viewers: ${viewersLine(v)}; stored ${last}, ${printed} of them printed.`,
      );
      if (viewerErrors(v) > 0) problems.push(`1000 viewers: ${viewersLine(v)}`);
    }

    // ---- (4) a 1,000,000-line job ----------------------------------------------------------------
    if (PHASES.has('big')) {
      await quiet();
      const before = await sampleMemory();
      const job = await printedJob(`flood ${BIG_LINES} ${PRINTER_TEXT_BYTES}`);
      await openViewers(job.jobId, 1, false);
      const samples: { lines: number; memory: MemorySample }[] = [];
      const store = await withOtherLoad(async () => {
        const agent = await job.start();
        const t0 = performance.now();
        const done = job.ended(BIG_TIMEOUT_MS).then(() => performance.now() - t0);
        let settledJob = false;
        void done.finally(() => (settledJob = true)).catch(() => {});
        while (!settledJob && performance.now() - t0 < BIG_TIMEOUT_MS) {
          await new Promise((r) => setTimeout(r, BIG_SAMPLE_EVERY_MS));
          // One full collection, no waiting for RSS to settle: the job goes on meanwhile.
          samples.push({ lines: await lastStored(job.jobId), memory: await sampleMemory(0) });
        }
        const ms = await done;
        const live = await clients.call('viewersDone', { timeoutMs: 60_000 }, 60_000 + CALL_SLACK_MS);
        await job.stop(agent);
        return { seconds: ms / 1000, live };
      });
      const last = await lastStored(job.jobId);
      const printed = await printedStored(job.jobId);
      const storeRow: ScenarioRow = {
        scenario: S.bigStore,
        requests: last,
        rps: last / store.result.seconds,
        p50: NaN,
        p99: NaN,
        errors: viewerErrors(store.result.live) + (store.result.live.maxLastSeq !== last ? 1 : 0) + Math.abs(BIG_LINES - printed),
        non2xx: 0,
        otherCores: store.otherCores,
      };
      rows.push(storeRow);
      print(storeRow);

      const replayMemory = new PeakMemory();
      const replay = await withOtherLoad(() =>
        replayMemory.during(async () => {
          const t0 = performance.now();
          await openViewers(job.jobId, 1, false);
          const v = await clients.call('viewersDone', { timeoutMs: BIG_TIMEOUT_MS }, BIG_TIMEOUT_MS + CALL_SLACK_MS);
          return { v, seconds: (performance.now() - t0) / 1000 };
        }),
      );
      const replayRow: ScenarioRow = {
        scenario: S.bigReplay,
        requests: replay.result.v.lines,
        rps: replay.result.v.lines / replay.result.seconds,
        p50: NaN,
        p99: NaN,
        errors: viewerErrors(replay.result.v) + (replay.result.v.maxLastSeq !== last ? 1 : 0),
        non2xx: 0,
        otherCores: replay.otherCores,
      };
      rows.push(replayRow);
      print(replayRow);
      const afterReplay = await sampleMemory(2);

      const downloadMemory = new PeakMemory();
      const download = await withOtherLoad(() =>
        downloadMemory.during(() =>
          clients.call('download', { url: `${bench.url}/v1/orgs/${orgId}/jobs/${job.jobId}/logs/download`, token: viewerToken, timeoutMs: BIG_TIMEOUT_MS }, BIG_TIMEOUT_MS + CALL_SLACK_MS),
        ),
      );
      const d = download.result;
      const downloadRow: ScenarioRow = {
        scenario: S.bigDownload,
        requests: d.lines,
        rps: d.lines / d.seconds,
        p50: NaN,
        p99: NaN,
        errors: Math.abs(d.lines - last) + Math.abs(d.numbered - BIG_LINES) + d.outOfOrder,
        non2xx: d.status === 200 ? 0 : 1,
        otherCores: download.otherCores,
      };
      rows.push(downloadRow);
      print(downloadRow);
      const after = await sampleMemory();

      // Flat: from the first sample with a tenth of the log stored to the highest sample after it.
      const fromIndex = samples.findIndex((s) => s.lines >= last / 10);
      const tenth = samples[fromIndex];
      const later = samples.slice(fromIndex + 1);
      const peak = (pick: (m: MemorySample) => number) => Math.max(...later.map((s) => pick(s.memory)));
      const bigMemory = tenth && later.length ? { rss: (peak((m) => m.rss) - tenth.memory.rss) / MB, heap: (peak((m) => m.heapUsed) - tenth.memory.heapUsed) / MB } : undefined;
      comparisons.push(
        // A job stored between two samples (a short BENCH_LOG_BIG_LINES) cannot be judged.
        { kind: 'limit', name: `${BIG_LINES}-line job: server RSS growth past a tenth of it`, value: bigMemory?.rss ?? NaN, unit: 'MB', ceiling: BIG_FLAT_MAX_MB, informative: onlyShown || !bigMemory },
        { kind: 'limit', name: `${BIG_LINES}-line job: server heap growth past a tenth of it`, value: bigMemory?.heap ?? NaN, unit: 'MB', ceiling: BIG_FLAT_MAX_MB, informative: true },
      );
      notes.push(
        `- ${BIG_LINES}-line job: the reference agent ran the printer flat out, a viewer following live from the start; ${last} lines stored`,
        `  (${printed} printed, the rest the agent's system lines) in ${store.result.seconds.toFixed(1)} s. Live viewer: ${viewersLine(store.result.live)}.`,
        `  Replay from after=0 once it ended: ${viewersLine(replay.result.v)}, ${replay.result.seconds.toFixed(1)} s.`,
        `  REST download: HTTP ${d.status}, ${d.lines} lines, ${mb(d.bytes)} in ${d.seconds.toFixed(1)} s; ${d.numbered} printed lines, ${d.outOfOrder} out of order.`,
        `  Server memory: before ${memoryLine(before)}; after the replay ${memoryLine(afterReplay)}; after the download ${memoryLine(after)}.`,
        `  Peak RSS (no GC forced) during the replay ${mb(replayMemory.peakRss)}, during the download ${mb(downloadMemory.peakRss)}.`,
        `  While storing (GC'd each ${BIG_SAMPLE_EVERY_MS / 1000} s; lines stored: RSS / heap): ${samples.map((s) => `${s.lines}: ${fmt.amount(s.memory.rss / MB)}/${fmt.amount(s.memory.heapUsed / MB)}`).join(', ')}.`,
        bigMemory ? `  Growth from a tenth of the log stored to the peak after it: RSS +${fmt.amount(bigMemory.rss)} MB, heap +${fmt.amount(bigMemory.heap)} MB.` : '  Too few samples to judge flatness.',
      );
    }

    for (const p of problems) console.error(`  problem: ${p}`);
    const headNotes = [
      'How to read this (req/s = lines/s; "requests" = lines, or line deliveries to all viewers):',
      `- One process runs the real system (startSystem, ROLE=all); ${postgres ? `PostgreSQL, a fresh database, pool of ${poolSize}` : 'PGlite (embedded, one connection, in this process)'}.`,
      '  Lean agents (real agent.v1 gRPC clients, one connection each, the reference agent\'s LogOutbox and batching), the WebSocket',
      '  viewers (the `ws` package, subprotocols agent-jobs.v1 + bearer.<token>; every seq checked by every viewer, each distinct',
      '  frame parsed once per process) and the REST download run in a child process; the reference agent and its job\'s command',
      '  run as their own processes. Server memory is this process\'s after a full GC (memory.ts): RSS, native memory and the',
      '  Temporal worker thread included.',
      ...(PHASES.has('ingest')
        ? [
            `- ingest: ${INGEST_LINES} lines per scenario, ${LINE_BYTES} characters each, shared among the agents, each agent its own job; batches of`,
            `  Welcome's max_log_batch_lines (${maxBatchLines}), a few in flight ahead of the acks (the reference agent's batchLimits); timed from the first line to`,
            '  the last ack. p50/p99 there: a batch written -> its ack (ours), one INSERT statement (baseline). Lines lost = missing from',
            '  1..N in the database after the run (the (job, seq) primary key rules out duplicates).',
            postgres
              ? `  baseline: the same rows (the same jobs, seqs, text sizes) by a plain process (pg) with multi-row INSERTs of the same batch size, over as many connections as the server's pool uses (1 for 1 job, ${Math.min(50, poolSize)} for 50).`
              : '  baseline: the same rows (the same jobs, seqs, text sizes), the same multi-row INSERTs of the same batch size, through PGlite\'s one connection in this process.',
            '  The table is emptied between runs.',
          ]
        : []),
      `- Before each scenario the bench waited for this process to go quiet: ${settled.map((w) => `${w.toFixed(1)} s`).join(', ')}.`,
    ];
    comparisons.push({ kind: 'limit', name: 'lost or duplicated lines and stream failures, all scenarios', value: rows.reduce((sum, r) => sum + r.errors, 0), unit: 'failures', ceiling: 0 });
    return { title: `Live logs on ${postgres ? 'PostgreSQL' : 'PGlite'}`, rows, comparisons, notes: [...headNotes, ...notes, ...(problems.length ? [`- PROBLEMS (${problems.length}): ${problems.slice(0, 5).join('; ')}`] : [])] };
  } finally {
    for (const agent of agentProcesses.splice(0)) await agent.dispose().catch(() => {});
    await clients.stop();
    await unlisten?.().catch(() => {});
    await repository.remove().catch(() => {});
    await bench.stop();
  }
}

/** Cores this process (the server) keeps busy from construction to cores(). */
class ServerCpu {
  private readonly cpu = process.cpuUsage();
  private readonly t0 = performance.now();

  cores(): number {
    const used = process.cpuUsage(this.cpu);
    return (used.user + used.system) / ((performance.now() - this.t0) * 1000);
  }
}

/** This process's highest RSS while `work` runs, sampled without forcing a collection (which would stall it). */
class PeakMemory {
  startRss = process.memoryUsage().rss;
  peakRss = this.startRss;

  async during<T>(work: () => Promise<T>): Promise<T> {
    const timer = setInterval(() => {
      this.peakRss = Math.max(this.peakRss, process.memoryUsage().rss);
    }, 100);
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }
}

const benchmark: Benchmark = { title: 'Live logs', run };
export default benchmark;
