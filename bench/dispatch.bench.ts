// Dispatch through the whole stack (a job created over HTTP, stored, announced by NOTIFY, claimed by
// the gateway, assigned down a real agent.v1 gRPC stream, run by its Temporal workflow to the end)
// against a bare Temporal workflow of two activities on the same Temporal server, in the same
// process, in the same run; then what idle agents and queued jobs cost the server in memory.
import { randomUUID } from 'node:crypto';
import { and, count, eq, isNotNull } from 'drizzle-orm';
import { jobs } from '../src/db/schema/index.js';
import { channels, type JobChangedPayload } from '../src/services/notifications.js';
import { connectAgents, type BenchAgent } from './support/agent.js';
import { Arrivals } from './support/arrivals.js';
import { startTemporalBaseline, type TemporalBaseline } from './support/temporal-baseline.js';
import { startIdleAgents } from './support/idle-agents.js';
import { closedLoop, serverCores, settle, withCpuCost, withOtherLoad, type CpuCost } from './support/load.js';
import { MB, sampleMemory, type MemorySample } from './support/memory.js';
import { fmt, type BenchReport, type Benchmark, type Comparison, type ScenarioRow } from './support/report.js';
import { startBenchSystem, type BenchSystem } from './support/system.js';

/** Jobs (and baseline workflows) run one at a time for the latency figures, after a few unmeasured. */
const LATENCY_JOBS = Number(process.env.BENCH_DISPATCH_JOBS ?? 500);
const LATENCY_WARMUP = 10;
const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
/** Agent counts measured as closed loops; 1 is the one-at-a-time run of the latency figures. */
const LOADED_AGENT_COUNTS = [10, 50];
const IDLE_AGENTS = Number(process.env.BENCH_IDLE_AGENTS ?? 1000);
const IDLE_PARALLEL = 50;
/** How long the idle agents are watched: past one heartbeat interval (10 s) and two dispatch sweeps (5 s). */
const IDLE_WATCH_S = 12;
const QUEUED_JOBS = Number(process.env.BENCH_QUEUED_JOBS ?? 10_000);
/** Queued jobs after which memory is sampled again: growth past this point is what "flat" is about. */
const QUEUED_WARM = Math.min(1_000, QUEUED_JOBS);
const QUEUED_CONNECTIONS = 20;
/** Every wait for one job or workflow gives up after this: a stuck job is a bug, not a timing. */
const JOB_TIMEOUT_MS = 60_000;
/** Bounds on the long phases, so a broken system cannot keep the bench running. */
const SEQUENTIAL_PHASE_MAX_MS = 240_000;
const QUEUED_PHASE_MAX_MS = 600_000;

const LATENCY_TARGET = 0.5; // our p50 at most 2x the baseline's
const THROUGHPUT_TARGET = 0.5; // our throughput at least half the baseline's
const IDLE_AGENTS_MAX_MB = 150;
/**
 * Growth from 1,000 queued jobs to 10,000. A cached workflow costs ~100 KB (~20 KB of it on the main
 * heap) and a held activity slot as much: per queued job, 9,000 of them would be close to a gigabyte.
 * RSS moves by some tens of MB between samples (the workflow thread collects its garbage on its own
 * schedule), so its ceiling is looser; the main heap is measured after a full collection.
 */
const QUEUED_JOBS_MAX_RSS_MB = 50;
const QUEUED_JOBS_MAX_HEAP_MB = 10;

const S = {
  baseLatency: 'latency    baseline: workflow start -> first activity running',
  oursLatency: 'latency    ours: job created -> agent holds the assignment',
  base: (n: number) => `throughput baseline: ${String(n).padStart(2)} workflow(s) in flight (start -> completed)`,
  ours: (n: number) => `throughput ours: ${String(n).padStart(2)} agent(s) (job created -> succeeded)`,
  idle: `connect ${IDLE_AGENTS} idle agents (Hello -> Welcome, ${IDLE_PARALLEL} at a time, from a child process)`,
  accept: `accept ${QUEUED_JOBS} queued jobs (POST create, no agent connected)`,
};

const terminal = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

interface Timings {
  values: number[];
  failures: number;
  firstFailure?: unknown;
  seconds: number;
}

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function timingsRow(scenario: string, t: Timings, otherCores: number, non2xx = 0): ScenarioRow {
  const sorted = [...t.values].sort((x, y) => x - y);
  return { scenario, requests: sorted.length, rps: sorted.length / t.seconds, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), errors: t.failures, non2xx, otherCores };
}

/**
 * Runs `one` `count` times after `warmup` unmeasured runs, strictly one at a time, within `maxMs`:
 * each run measures its first step (`first`, the dispatch) and its whole (`total`).
 */
async function oneAtATime(count: number, warmup: number, maxMs: number, one: () => Promise<{ first: number; total: number }>): Promise<{ first: Timings; total: Timings }> {
  const deadline = performance.now() + maxMs;
  const first: number[] = [];
  const total: number[] = [];
  let failures = 0;
  let firstFailure: unknown;
  let started = performance.now();
  for (let i = 0; i < warmup + count && performance.now() < deadline; i++) {
    if (i === warmup) started = performance.now();
    try {
      const timing = await one();
      if (i < warmup) continue;
      first.push(timing.first);
      total.push(timing.total);
    } catch (err) {
      failures += 1;
      firstFailure ??= err;
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const failed = { failures, seconds, ...(firstFailure !== undefined ? { firstFailure } : {}) };
  return { first: { values: first, ...failed }, total: { values: total, ...failed } };
}

/** Runs `work`, telling the other programs' load meanwhile and what it cost in CPU, by process. */
async function measured<T>(work: () => Promise<T>): Promise<{ result: T; otherCores: number; cpu: CpuCost }> {
  const { result, otherCores } = await withOtherLoad(() => withCpuCost(work));
  return { result: result.result, otherCores, cpu: result.cpu };
}

/** CPU ms per job (per workflow), by process, for the notes; PostgreSQL's only when it is ours. */
function perJob(cpu: CpuCost, jobs: number, withPostgres: boolean): string {
  const ms = (n: number) => (n / Math.max(jobs, 1)).toFixed(1);
  return `${ms(cpu.process)} + ${ms(cpu.children)}${withPostgres ? ` + ${ms(cpu.postgres)}` : ''}`;
}

/** POSTs that must answer 201; anything else is counted for the report's non-2xx column and thrown. */
class Api {
  non2xx = 0;
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
  ) {}

  async post<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (res.status !== 201) {
      this.non2xx += 1;
      throw new Error(`POST ${path} answered ${res.status}: ${(await res.text()).slice(0, 300)}`);
    }
    return (await res.json()) as T;
  }
}

interface Org {
  orgId: string;
  repoId: string;
  agentToken: string;
}

async function run(): Promise<BenchReport> {
  const startedAt = Date.now();
  const bench: BenchSystem = await startBenchSystem();
  console.log(`  system started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (${bench.driver}, ${bench.url})`);
  let baseline: TemporalBaseline | undefined;
  const agents: BenchAgent[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  try {
    const { system } = bench;
    const { config } = system;
    if (!system.grpcPort) throw new Error('the bench system serves no gRPC endpoint');
    const grpcAddress = `127.0.0.1:${system.grpcPort}`;
    if (!config.temporal.address) throw new Error('the bench system has no Temporal address');

    // One organisation for the jobs that run, one for the idle agents (no job of theirs wakes them) and
    // one for the queued jobs (no agent takes them).
    const orgIds = { work: randomUUID(), idle: randomUUID(), queued: randomUUID() };
    const api = new Api(bench.url, await bench.token(randomUUID(), Object.fromEntries(Object.values(orgIds).map((o) => [o, 'Admin' as const]))));
    const setUp = async (orgId: string): Promise<Org> => {
      const repo = await api.post<{ id: string }>(`/v1/orgs/${orgId}/repositories`, { name: 'bench', cloneUrl: 'https://github.com/acme/bench.git', defaultBranch: 'main' });
      const token = await api.post<{ secret: string }>(`/v1/orgs/${orgId}/agent-tokens`, { name: 'bench' });
      return { orgId, repoId: repo.id, agentToken: token.secret };
    };
    const work = await setUp(orgIds.work);
    const idleOrg = await setUp(orgIds.idle);
    const queuedOrg = await setUp(orgIds.queued);
    // `true`: the agent does no work, the figures are the control plane's.
    const createJob = async (org: Org) => (await api.post<{ id: string }>(`/v1/orgs/${org.orgId}/jobs`, { prompt: 'true', repoId: org.repoId, queueType: 'backlog' })).id;

    // What agents objected to, and other things that went wrong without throwing: bugs, counted as errors.
    const problems: string[] = [];
    // When each job was assigned (agent side) and how it ended (job_changed NOTIFY).
    const assignments = new Arrivals<number>();
    const ends = new Arrivals<string>();
    unlisten = await system.database.listen(channels.jobChanged, (raw) => {
      const { jobId, status } = JSON.parse(raw) as JobChangedPayload;
      if (terminal.has(status)) ends.record(jobId, status);
    });
    /** One job, created and waited for until it succeeded: when it was assigned, and when it ended. */
    const runJob = async (): Promise<{ first: number; total: number }> => {
      const t0 = performance.now();
      const jobId = await createJob(work);
      const status = await ends.next(jobId, JOB_TIMEOUT_MS);
      if (status !== 'succeeded') throw new Error(`job ${jobId} ended ${status}`);
      const assignedAt = assignments.take(jobId);
      if (assignedAt === undefined) throw new Error(`job ${jobId} succeeded but no agent of the bench was assigned it`);
      return { first: assignedAt - t0, total: performance.now() - t0 };
    };
    const connect = async (n: number) => {
      const connected = await connectAgents(grpcAddress, work.agentToken, n, { capacity: 1, onAssignment: (jobId, at) => assignments.record(jobId, at) });
      agents.push(...connected);
      return connected;
    };
    /** Closes a scenario's agents; what they objected to (notices, dropped streams) counts as its errors. */
    const disconnect = (some: BenchAgent[], row: ScenarioRow) => {
      for (const a of some) {
        a.close();
        agents.splice(agents.indexOf(a), 1);
      }
      assignments.clear();
      ends.clear();
      const objections = some.flatMap((a) => a.problems);
      row.errors += objections.length;
      problems.push(...objections);
    };

    baseline = await startTemporalBaseline(system.temporal, config.temporal.address, config.temporal.namespace);
    const b = baseline;
    const rows: ScenarioRow[] = [];
    const onPostgres = bench.driver === 'postgres';
    const cpuPerJob: string[] = [];
    const settled: number[] = [];
    const quiet = async () => settled.push(await settle());

    // (1) and (3), latency: one job (one workflow) at a time, each run to its end before the next
    // starts, so each is dispatched by an otherwise idle system. The same runs are the throughput
    // with 1 agent (1 workflow in flight).
    await quiet();
    {
      const { result, otherCores, cpu } = await measured(() =>
        oneAtATime(LATENCY_JOBS, LATENCY_WARMUP, SEQUENTIAL_PHASE_MAX_MS, async () => {
          const t0 = performance.now();
          const started = await b.start();
          const firstAt = await b.firstActivity.next(started.workflowId, JOB_TIMEOUT_MS);
          await started.result();
          return { first: firstAt - t0, total: performance.now() - t0 };
        }),
      );
      const latency = timingsRow(S.baseLatency, result.first, otherCores);
      const whole = timingsRow(S.base(1), result.total, otherCores);
      cpuPerJob.push(`baseline 1: ${perJob(cpu, result.total.values.length + LATENCY_WARMUP, onPostgres)}`);
      rows.push(latency, whole);
      report(latency, result.first.firstFailure);
      report(whole, undefined);
    }
    await quiet();
    {
      const connected = await connect(1);
      const non2xxBefore = api.non2xx;
      const { result, otherCores, cpu } = await measured(() => oneAtATime(LATENCY_JOBS, LATENCY_WARMUP, SEQUENTIAL_PHASE_MAX_MS, runJob));
      const latency = timingsRow(S.oursLatency, result.first, otherCores, api.non2xx - non2xxBefore);
      const whole = timingsRow(S.ours(1), result.total, otherCores);
      cpuPerJob.push(`ours 1: ${perJob(cpu, result.total.values.length + LATENCY_WARMUP, onPostgres)}`);
      disconnect(connected, latency);
      rows.push(latency, whole);
      report(latency, result.first.firstFailure);
      report(whole, undefined);
    }

    // (2) and (3), throughput under load: closed loops, one per agent (workflow in flight), each
    // creating a job and waiting for it to succeed before the next.
    const dispatchUnderLoad: string[] = [];
    for (const n of LOADED_AGENT_COUNTS) {
      await quiet();
      await closedLoop(n, WARMUP_S, () => b.execute());
      const base = await measured(() => closedLoop(n, DURATION_S, () => b.execute()));
      b.firstActivity.clear();
      cpuPerJob.push(`baseline ${n}: ${perJob(base.cpu, base.result.ops, onPostgres)}`);
      const baseRow: ScenarioRow = { scenario: S.base(n), requests: base.result.ops, rps: base.result.opsPerSecond, p50: base.result.p50, p99: base.result.p99, errors: base.result.failures, non2xx: 0, otherCores: base.otherCores };
      rows.push(baseRow);
      report(baseRow, base.result.firstFailure);

      await quiet();
      const connected = await connect(n);
      const non2xxBefore = api.non2xx;
      await closedLoop(n, WARMUP_S, runJob);
      const dispatch: number[] = [];
      const ours = await measured(() =>
        closedLoop(n, DURATION_S, async () => {
          dispatch.push((await runJob()).first);
        }),
      );
      cpuPerJob.push(`ours ${n}: ${perJob(ours.cpu, ours.result.ops, onPostgres)}`);
      const row: ScenarioRow = { scenario: S.ours(n), requests: ours.result.ops, rps: ours.result.opsPerSecond, p50: ours.result.p50, p99: ours.result.p99, errors: ours.result.failures, non2xx: api.non2xx - non2xxBefore, otherCores: ours.otherCores };
      disconnect(connected, row);
      rows.push(row);
      report(row, ours.result.firstFailure);
      dispatch.sort((x, y) => x - y);
      dispatchUnderLoad.push(`${n} agents: p50 ${fmt.ms(percentile(dispatch, 0.5))} ms, p99 ${fmt.ms(percentile(dispatch, 0.99))} ms`);
    }
    await baseline.stop();
    baseline = undefined;

    // Memory: 1,000 connected idle agents, held by a child process so this one holds only the server side.
    await quiet();
    const idleBefore = await sampleMemory();
    const idleCpuBefore = await serverCores(IDLE_WATCH_S * 1000);
    const idleConnect = await withOtherLoad(() => startIdleAgents({ address: grpcAddress, token: idleOrg.agentToken, count: IDLE_AGENTS, parallel: IDLE_PARALLEL }, 300_000));
    const idle = idleConnect.result;
    const idleRow: ScenarioRow = { scenario: S.idle, requests: idle.connected, rps: idle.connected / idle.seconds, p50: idle.handshake.p50, p99: idle.handshake.p99, errors: 0, non2xx: 0, otherCores: idleConnect.otherCores };
    const idleCpu = await serverCores(IDLE_WATCH_S * 1000);
    const idleAfter = await sampleMemory();
    const idleClosed = await idle.close();
    if (idleClosed.problems > 0) problems.push(`${idleClosed.problems} idle agent problem(s), the first: ${idleClosed.firstProblem}`);
    idleRow.errors += idleClosed.problems;
    rows.push(idleRow);
    report(idleRow, undefined);
    const idleGrowth = growth(idleBefore, idleAfter);
    console.log(`  ${IDLE_AGENTS} idle agents: RSS ${signed(idleGrowth.rss)} MB, heap ${signed(idleGrowth.heapUsed)} MB; server ${idleCpu.process.toFixed(2)} cores + PostgreSQL ${idleCpu.postgres.toFixed(2)} cores`);

    // Memory: 10,000 queued jobs, no agent; "accepted" once each workflow waits in its claim step. The
    // first thousand grow what any load grows once (pools, caches up to their bounds); flat is no
    // growth over the nine thousand after them.
    await quiet();
    const queuedBefore = await sampleMemory();
    const queuedStarted = performance.now();
    const deadline = queuedStarted + QUEUED_PHASE_MAX_MS;
    const acceptNon2xxBefore = api.non2xx;
    const accepted: Timings = { values: [], failures: 0, seconds: 0 };
    let created = 0;
    /** Creates jobs until `target` were tried, then waits until every accepted one waits in its claim step. */
    const queueUpTo = async (target: number): Promise<number> => {
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: QUEUED_CONNECTIONS }, async () => {
          while (created < target && performance.now() < deadline) {
            created += 1;
            const start = performance.now();
            try {
              await createJob(queuedOrg);
              accepted.values.push(performance.now() - start);
            } catch (err) {
              accepted.failures += 1;
              accepted.firstFailure ??= err;
            }
          }
        }),
      );
      accepted.seconds += (performance.now() - t0) / 1000;
      const waiting = await waitForClaimSteps(bench, queuedOrg.orgId, accepted.values.length, deadline);
      await quiet();
      return waiting;
    };
    const queued = await withOtherLoad(async () => {
      const warmWaiting = await queueUpTo(QUEUED_WARM);
      const warm = await sampleMemory();
      return { warmWaiting, warm, waiting: await queueUpTo(QUEUED_JOBS) };
    });
    const { warmWaiting, warm: queuedWarm, waiting } = queued.result;
    const queuedSeconds = (performance.now() - queuedStarted) / 1000;
    const queuedAfter = await sampleMemory();
    const acceptRow = timingsRow(S.accept, accepted, queued.otherCores, api.non2xx - acceptNon2xxBefore);
    if (waiting < QUEUED_JOBS) {
      problems.push(`only ${waiting} of ${QUEUED_JOBS} queued jobs reached their claim step in time`);
      acceptRow.errors += QUEUED_JOBS - waiting;
    }
    rows.push(acceptRow);
    report(acceptRow, accepted.firstFailure);
    const queuedTotal = growth(queuedBefore, queuedAfter);
    const queuedFlat = growth(queuedWarm, queuedAfter);
    console.log(`  ${warmWaiting}, then ${waiting} queued jobs waiting in their claim step after ${queuedSeconds.toFixed(1)} s: RSS ${signed(queuedTotal.rss)} MB in all, ${signed(queuedFlat.rss)} MB after the first ${QUEUED_WARM}`);

    for (const p of problems) console.error(`  problem: ${p}`);
    const mb = (n: number) => `${fmt.amount(n / MB)} MB`;
    const memoryLine = (m: MemorySample) => `RSS ${mb(m.rss)}, heap used ${mb(m.heapUsed)}, external ${mb(m.external)}`;
    const notes = [
      'How to read this:',
      '- One process runs the real system (startSystem, ROLE=all: HTTP API, gRPC gateway, Temporal worker), the agents',
      '  (real agent.v1 gRPC clients over loopback, one connection each, answering every assignment at once with accepted,',
      "  started and finished(succeeded, exit 0): the job `true` without spawning it) and the baseline's own Temporal Worker.",
      `  Database: ${bench.driver === 'postgres' ? `PostgreSQL, a fresh database, pool of ${config.database.kind === 'postgres' ? config.database.poolSize : '?'}` : 'PGlite (embedded, one connection, in this process)'}. Temporal: ${bench.temporalSource}, in memory, shared by both sides.`,
      '- baseline: a bare workflow of two activities (support/temporal-baseline.workflows.ts) on its own task queue and Worker.',
      `- latency: ${LATENCY_JOBS} jobs (workflows) after ${LATENCY_WARMUP} unmeasured, one at a time, each run to its end before the next`,
      '  starts. Ours: from sending POST /jobs until the agent has the assignment (HTTP, insert, NOTIFY, claim, gRPC);',
      '  baseline: from the start call until the first activity runs. The same runs give the 1-agent (1 in flight) throughput.',
      `- throughput with ${LOADED_AGENT_COUNTS.join(' and ')}: closed loops, one per agent (per workflow in flight for the baseline), each`,
      `  creating a job and waiting for it to succeed (job_changed NOTIFY) before the next; ${DURATION_S} s measured after ${WARMUP_S} s of warm-up.`,
      '  Agents have capacity 1. p50/p99 of throughput rows are whole jobs: created -> succeeded, start -> workflow completed.',
      `  Dispatch latency (created -> assignment) within those runs: ${dispatchUnderLoad.join('; ')}.`,
      `- CPU ms per job (per workflow): this process + the Temporal dev server${onPostgres ? ' + PostgreSQL' : ''} (this process holds the bench's`,
      `  clients too: HTTP and agents for ours, start and result calls for the baseline): ${cpuPerJob.join('; ')}.`,
      '- memory is this process\'s, after a full garbage collection (V8\'s gc, exposed at run time) and once RSS stopped moving:',
      '  RSS (native memory and the Temporal workflow thread included) and the main thread\'s heap. The idle agents run in a',
      '  child process, so only the server side of their connections is counted here.',
      `- ${idle.connected} idle agents (Hello, heartbeat every ${config.agents.heartbeatIntervalMs / 1000} s, no work, an organisation of their own), connected in ${idle.seconds.toFixed(1)} s;`,
      `  before: ${memoryLine(idleBefore)}; with them: ${memoryLine(idleAfter)}.`,
      `  Server CPU over ${IDLE_WATCH_S} s: without them ${idleCpuBefore.process.toFixed(3)} cores (+ PostgreSQL ${idleCpuBefore.postgres.toFixed(3)}),`,
      `  with them ${idleCpu.process.toFixed(3)} cores (+ PostgreSQL ${idleCpu.postgres.toFixed(3)}): their heartbeats and the ${config.agents.sweepIntervalMs / 1000} s dispatch sweep.`,
      `- ${QUEUED_JOBS} queued jobs (no agent connected, default ORG_MAX_QUEUED_JOBS ${config.jobs.maxQueuedPerOrg}): ${created} POSTed at ${fmt.rps(acceptRow.rps)}/s, ${waiting} workflows`,
      `  waiting in their claim step (task token recorded) ${queuedSeconds.toFixed(1)} s after the first POST.`,
      `  Before: ${memoryLine(queuedBefore)}; ${QUEUED_WARM} queued: ${memoryLine(queuedWarm)};`,
      `  ${QUEUED_JOBS} queued: ${memoryLine(queuedAfter)} (RSS ${signed(queuedTotal.rss)} MB in all).`,
      onPostgres ? '' : '  On PGlite the database lives in this process: its memory (an ArrayBuffer, "external") fills as jobs are stored, which RSS counts; that is not the worker\'s.',
      `- Before each scenario the bench waited for this process to go quiet: ${settled.map((w) => `${w.toFixed(1)} s`).join(', ')}.`,
      problems.length ? `- PROBLEMS (${problems.length}): ${problems.slice(0, 5).join('; ')}` : '',
    ].filter(Boolean);

    const plural = (n: number, word: string) => `${n} ${word}${n > 1 ? 's' : ''}`;
    const comparisons: Comparison[] = [
      { kind: 'latency', name: 'dispatch latency p50 vs workflow start -> first activity', ours: S.oursLatency, baseline: S.baseLatency, target: LATENCY_TARGET },
      ...[1, ...LOADED_AGENT_COUNTS].map((n): Comparison => ({ name: `throughput, ${plural(n, 'agent')} vs ${plural(n, 'workflow')} in flight`, ours: S.ours(n), baseline: S.base(n), target: THROUGHPUT_TARGET })),
      { kind: 'limit', name: `${IDLE_AGENTS} connected idle agents: server RSS growth`, value: idleGrowth.rss, unit: 'MB', ceiling: IDLE_AGENTS_MAX_MB },
      { kind: 'limit', name: `${IDLE_AGENTS} connected idle agents: server heap growth`, value: idleGrowth.heapUsed, unit: 'MB', ceiling: IDLE_AGENTS_MAX_MB, informative: true },
      // On PGlite the database shares this process: its pages, touched as it fills with jobs, are in
      // RSS too, so there only the heap speaks for the worker.
      { kind: 'limit', name: `queued jobs ${QUEUED_WARM} -> ${QUEUED_JOBS}: worker RSS growth (flat)${onPostgres ? '' : ', PGlite included'}`, value: queuedFlat.rss, unit: 'MB', ceiling: QUEUED_JOBS_MAX_RSS_MB, informative: !onPostgres },
      { kind: 'limit', name: `queued jobs ${QUEUED_WARM} -> ${QUEUED_JOBS}: worker heap growth (flat)`, value: queuedFlat.heapUsed, unit: 'MB', ceiling: QUEUED_JOBS_MAX_HEAP_MB },
    ];
    const order = [S.baseLatency, S.oursLatency, ...[1, ...LOADED_AGENT_COUNTS].flatMap((n) => [S.base(n), S.ours(n)]), S.idle, S.accept];
    rows.sort((x, y) => order.indexOf(x.scenario) - order.indexOf(y.scenario));
    return { title: `Dispatch on ${bench.driver === 'postgres' ? 'PostgreSQL' : 'PGlite'}`, rows, comparisons, notes };
  } finally {
    for (const a of agents.splice(0)) a.close();
    await unlisten?.().catch(() => {});
    await baseline?.stop().catch((err: unknown) => console.error('baseline worker stop:', err));
    await bench.stop();
  }
}

function report(row: ScenarioRow, firstFailure: unknown): void {
  console.log(`  ${row.scenario}: ${row.requests} at ${fmt.rps(row.rps)}/s, p50 ${fmt.ms(row.p50)} ms, p99 ${fmt.ms(row.p99)} ms, ${row.errors} errors, ${row.non2xx} non-2xx, other load ${(row.otherCores ?? 0).toFixed(2)} cores`);
  if (firstFailure !== undefined) console.error('    the first failure:', firstFailure);
}

function signed(n: number): string {
  return `${n >= 0 ? '+' : ''}${fmt.amount(n)}`;
}

function growth(before: MemorySample, after: MemorySample): { rss: number; heapUsed: number } {
  return { rss: (after.rss - before.rss) / MB, heapUsed: (after.heapUsed - before.heapUsed) / MB };
}

/** Waits until `expected` jobs of the organisation have their claim step waiting (task token recorded). */
async function waitForClaimSteps(bench: BenchSystem, orgId: string, expected: number, deadline: number): Promise<number> {
  const db = bench.system.database.db;
  let lastPrint = performance.now();
  for (;;) {
    const [row] = await db
      .select({ n: count() })
      .from(jobs)
      .where(and(eq(jobs.orgId, orgId), isNotNull(jobs.claimTaskToken)));
    const n = row?.n ?? 0;
    if (n >= expected || performance.now() > deadline) return n;
    if (performance.now() - lastPrint > 15_000) {
      console.log(`    ${n} of ${expected} claim steps waiting`);
      lastPrint = performance.now();
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const benchmark: Benchmark = { title: 'Dispatch', run };
export default benchmark;
