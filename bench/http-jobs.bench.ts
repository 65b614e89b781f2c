// Create-job and get-job through the whole stack (loopback HTTP, openapi-glue routing and schema
// validation, PropelAuth token verification, the jobs service, Drizzle, the Temporal workflow start)
// against a bare Fastify baseline that runs the same Drizzle repository functions on the same
// database handle, in the same process, in the same run.
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance } from 'fastify';
import { count, inArray } from 'drizzle-orm';
import type { Database } from '../src/db/client.js';
import * as jobsRepo from '../src/db/jobs.repository.js';
import * as reposRepo from '../src/db/repositories.repository.js';
import { jobs } from '../src/db/schema/index.js';
import { channels, type JobQueuedPayload } from '../src/services/notifications.js';
import { createJobWorkflows } from '../src/temporal/client.js';
import type { JobTimeouts } from '../src/domain/job.js';
import { closedLoop, measure, settle, withOtherLoad, type LoadResult, type LoadSpec } from './support/load.js';
import type { BenchReport, Benchmark, ScenarioRow } from './support/report.js';
import { fmt } from './support/report.js';
import { startBenchSystem, type BenchSystem } from './support/system.js';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP_S ?? 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 20);
/** Each in-process probe of the cost breakdown. */
const PROBE_S = Number(process.env.BENCH_PROBE_S ?? 2);
const TARGET = 0.8;

const S = {
  oursCreate: 'POST create job  - ours',
  baseCreate: 'POST create job  - baseline (Drizzle only)',
  baseCreateWf: 'POST create job  - baseline + workflow start',
  oursGet: 'GET  get job     - ours',
  baseGet: 'GET  get job     - baseline',
  probeAuth: '(in-process) verify access token',
  probeStart: '(in-process) Temporal workflow start',
};

interface BaselineDeps {
  db: Database;
  timeouts: JobTimeouts;
  maxQueuedPerOrg: number;
  createdBy: string;
  notify: (channel: string, payload: string) => Promise<void>;
  startWorkflow: (input: { jobId: string; maxAttempts: number; timeouts: JobTimeouts }) => Promise<void>;
}

interface CreateBody {
  prompt: string;
  repoId: string;
  queueType: 'backlog' | 'rework';
  labels?: string[];
  maxAttempts?: number;
}

/**
 * The database work of JobsService.submit for a backlog job, step for step: check the repository
 * and count the organisation's queued jobs (one query), then in one transaction lock the repository
 * (share) and insert the job with its `created` event and its workflow-start outbox row (one
 * statement); the caller sends the job_queued NOTIFY after it. (The system's outbox starter then
 * starts those workflows in the background, for the baseline's jobs as for ours.)
 * Keep it in step with the service when the service's queries change.
 */
async function baselineInsert(deps: BaselineDeps, orgId: string, body: CreateBody) {
  const { repositoryLive, queued } = await jobsRepo.submissionCheck(deps.db, orgId, body.repoId);
  if (!repositoryLive) return undefined;
  if (queued >= deps.maxQueuedPerOrg) throw new Error('queued limit reached');
  const maxAttempts = body.maxAttempts ?? 3;
  return deps.db.transaction(async (tx) => {
    if (!(await reposRepo.lockRepository(tx, orgId, body.repoId, 'share'))) return undefined;
    return jobsRepo.insertJob(tx, {
      orgId,
      repoId: body.repoId,
      queueType: body.queueType,
      prompt: body.prompt,
      parentJobId: null,
      labels: body.labels ?? [],
      maxAttempts,
      timeouts: deps.timeouts,
      createdBy: deps.createdBy,
    });
  });
}

const queuedNotice = (orgId: string, jobId: string) => JSON.stringify({ orgId, jobId } satisfies JobQueuedPayload);

/** Bare Fastify: JSON body parsing and nothing else (no glue, no auth, no validation, no response schema). */
async function startBaseline(deps: BaselineDeps): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ logger: false });
  type CreateRoute = { Params: { orgId: string }; Body: CreateBody };
  app.post<CreateRoute>('/v1/orgs/:orgId/jobs', async (request, reply) => {
    const row = await baselineInsert(deps, request.params.orgId, request.body);
    if (!row) return reply.code(404).send({ code: 'not_found' });
    await deps.notify(channels.jobQueued, queuedNotice(row.orgId, row.id));
    return reply.code(201).header('Location', `/v1/orgs/${row.orgId}/jobs/${row.id}`).send(row);
  });
  // The same, plus the workflow start the product does, through the same Temporal client and queue.
  app.post<CreateRoute>('/with-workflow/v1/orgs/:orgId/jobs', async (request, reply) => {
    const row = await baselineInsert(deps, request.params.orgId, request.body);
    if (!row) return reply.code(404).send({ code: 'not_found' });
    await deps.startWorkflow({ jobId: row.id, maxAttempts: row.maxAttempts, timeouts: deps.timeouts });
    await deps.notify(channels.jobQueued, queuedNotice(row.orgId, row.id));
    return reply.code(201).header('Location', `/v1/orgs/${row.orgId}/jobs/${row.id}`).send(row);
  });
  app.get<{ Params: { orgId: string; jobId: string } }>('/v1/orgs/:orgId/jobs/:jobId', async (request, reply) => {
    const row = await jobsRepo.findJob(deps.db, request.params.orgId, request.params.jobId);
    if (!row) return reply.code(404).send({ code: 'not_found' });
    return reply.send({ ...row, events: await jobsRepo.listEvents(deps.db, row.id) });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address !== 'object') throw new Error('baseline did not listen');
  return { app, url: `http://127.0.0.1:${address.port}` };
}

async function run(): Promise<BenchReport> {
  const startedAt = Date.now();
  const bench: BenchSystem = await startBenchSystem({ ORG_MAX_QUEUED_JOBS: '10000000' });
  console.log(`  system started in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (${bench.driver}, ${bench.url})`);
  let baseline: FastifyInstance | undefined;
  try {
    const { system } = bench;
    const db = system.database.db;
    const config = system.config;
    const timeouts: JobTimeouts = {
      queueMs: config.jobs.queueTimeoutMs,
      startMs: config.jobs.startTimeoutMs,
      runMs: config.jobs.runTimeoutMs,
      agentSilenceMs: config.jobs.agentSilenceTimeoutMs,
      cancelGraceMs: config.jobs.cancelGraceMs,
    };
    // One organisation per create scenario, so each starts from zero queued jobs (the queued count
    // grows with them), and one whose jobs both GET scenarios read.
    const orgs = { ours: randomUUID(), base: randomUUID(), baseWf: randomUUID(), read: randomUUID() };
    const userId = randomUUID();
    const token = await bench.token(userId, Object.fromEntries(Object.values(orgs).map((o) => [o, 'Admin' as const])));
    const auth = { authorization: `Bearer ${token}` };
    const json = { 'content-type': 'application/json' };

    const repoIds: Record<keyof typeof orgs, string> = { ours: '', base: '', baseWf: '', read: '' };
    for (const key of Object.keys(orgs) as (keyof typeof orgs)[]) {
      const res = await fetch(`${bench.url}/v1/orgs/${orgs[key]}/repositories`, {
        method: 'POST',
        headers: { ...auth, ...json },
        body: JSON.stringify({ name: `bench-${key}`, cloneUrl: 'https://github.com/acme/bench.git', defaultBranch: 'main' }),
      });
      if (res.status !== 201) throw new Error(`creating the repository answered ${res.status}: ${await res.text()}`);
      repoIds[key] = ((await res.json()) as { id: string }).id;
    }
    const createBody = (repoId: string) => JSON.stringify({ prompt: 'Add a dark mode toggle to the settings page.', repoId, queueType: 'backlog', labels: ['frontend'] });

    // The 20 jobs both GET scenarios read, created through the product's API.
    const paths: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${bench.url}/v1/orgs/${orgs.read}/jobs`, { method: 'POST', headers: { ...auth, ...json }, body: createBody(repoIds.read) });
      if (res.status !== 201) throw new Error(`creating a job answered ${res.status}: ${await res.text()}`);
      paths.push(`/v1/orgs/${orgs.read}/jobs/${((await res.json()) as { id: string }).id}`);
    }

    const workflows = createJobWorkflows(system.temporal, config.temporal.taskQueue);
    const base = await startBaseline({ db, timeouts, maxQueuedPerOrg: config.jobs.maxQueuedPerOrg, createdBy: userId, notify: (channel, payload) => system.database.notify(channel, payload), startWorkflow: (i) => workflows.start(i) });
    baseline = base.app;

    const rows: ScenarioRow[] = [];
    const settled: number[] = [];
    const quiet = async () => {
      // Work the previous scenario left behind (the worker running the workflows of the jobs it
      // created) is not billed to the next one.
      const waited = await settle();
      settled.push(waited);
      return waited;
    };
    const load = async (scenario: string, spec: Omit<LoadSpec, 'connections' | 'warmupSeconds' | 'durationSeconds'>) => {
      await quiet();
      const result: LoadResult = await measure({ ...spec, connections: CONNECTIONS, warmupSeconds: WARMUP_S, durationSeconds: DURATION_S });
      rows.push({ scenario, ...result });
      console.log(`  ${scenario}: ${fmt.rps(result.rps)} req/s, p50 ${fmt.ms(result.p50)} ms, p99 ${fmt.ms(result.p99)} ms, ${result.errors} errors, ${result.non2xx} non-2xx, other load ${result.otherCores.toFixed(2)} cores`);
      if (result.non2xx > 0) {
        // Show what such an answer looks like; the bench fails on it.
        const path = spec.paths?.[0] ?? new URL(spec.url).pathname;
        const sample = await fetch(new URL(path, spec.url), { method: spec.method, headers: spec.headers ?? {}, ...(spec.body ? { body: spec.body } : {}) });
        console.log(`    a sample request now answers ${sample.status}: ${(await sample.text()).slice(0, 500)}`);
      }
    };
    // In-process (no HTTP) probes of two costs only ours pays: token verification and the workflow start.
    const probe = async (scenario: string, concurrency: number, op: () => Promise<unknown>) => {
      await quiet();
      const { result: r, otherCores } = await withOtherLoad(() => closedLoop(concurrency, PROBE_S, op));
      if (r.firstFailure) console.error(`  ${scenario} failed:`, r.firstFailure);
      rows.push({ scenario, requests: r.ops, rps: r.opsPerSecond, p50: r.p50, p99: r.p99, errors: r.failures, non2xx: 0, otherCores });
    };

    await load(S.baseGet, { url: base.url, method: 'GET', paths });
    await load(S.oursGet, { url: bench.url, method: 'GET', headers: auth, paths });

    const bearer = `Bearer ${token}`;
    await probe(S.probeAuth, 1, () => system.services.userAuth.authenticate(bearer));
    // A queue no worker polls: the Temporal server's share of a start, nothing left to run after.
    const idleWorkflows = createJobWorkflows(system.temporal, `bench-idle-${randomUUID()}`);
    await probe(S.probeStart, CONNECTIONS, () => idleWorkflows.start({ jobId: randomUUID(), maxAttempts: 3, timeouts }));

    // The two scenarios that start workflows first: the quiet wait after each is the time the
    // worker needed to catch up with the jobs it created.
    await load(S.baseCreateWf, { url: `${base.url}/with-workflow/v1/orgs/${orgs.baseWf}/jobs`, method: 'POST', headers: json, body: createBody(repoIds.baseWf) });
    await load(S.oursCreate, { url: `${bench.url}/v1/orgs/${orgs.ours}/jobs`, method: 'POST', headers: { ...json, ...auth }, body: createBody(repoIds.ours) });
    const catchUpBaseWf = settled.at(-1) ?? NaN;
    await load(S.baseCreate, { url: `${base.url}/v1/orgs/${orgs.base}/jobs`, method: 'POST', headers: json, body: createBody(repoIds.base) });
    const catchUpOurs = settled.at(-1) ?? NaN;

    // Jobs each create scenario made, warm-up included.
    const counts = await db
      .select({ orgId: jobs.orgId, n: count() })
      .from(jobs)
      .where(inArray(jobs.orgId, [orgs.ours, orgs.base, orgs.baseWf]))
      .groupBy(jobs.orgId);
    const made = (org: string) => counts.find((c) => c.orgId === org)?.n ?? 0;
    const sustained = (n: number, catchUp: number) => fmt.rps(n / (WARMUP_S + DURATION_S + catchUp));

    const row = (s: string) => rows.find((r) => r.scenario === s);
    const startRow = row(S.probeStart);
    const authRow = row(S.probeAuth);
    const notes = [
      'How to read this:',
      `- ${DURATION_S} s measured after ${WARMUP_S} s of warm-up per scenario, ${CONNECTIONS} connections, autocannon in a worker thread, loopback HTTP.`,
      `  Database: ${bench.driver === 'postgres' ? `PostgreSQL, a fresh database, pool of ${config.database.kind === 'postgres' ? config.database.poolSize : '?'}` : 'PGlite (embedded, one connection, in this process)'}. Temporal: ${bench.temporalSource}, in memory.`,
      '- ours: the real system (startSystem, ROLE=all): openapi-glue routing + ajv request validation, PropelAuth RS256',
      '  token verification on every request, the jobs service, response serialisation by the response schema.',
      '  A create also starts the job\'s Temporal workflow; this process runs the Temporal worker too, which then runs',
      '  the workflow\'s first task and its claim activity (database work).',
      '- baseline: a bare Fastify app in the same process on the same database handle: JSON parsing only, no auth, no',
      '  validation; the same repository functions (submissionCheck, then lockRepository + insertJob in one transaction,',
      '  then the job_queued NOTIFY; findJob + listEvents for a get).',
      '- The issue\'s target compares ours with the Drizzle-only baseline, which starts no workflow. "baseline + workflow',
      '  start" also starts it, through the same client and task queue: ours against it measures our HTTP layer alone.',
      startRow ? `- A workflow start alone (a queue no worker polls, ${CONNECTIONS} concurrent): ${fmt.rps(startRow.rps)} starts/s, p50 ${fmt.ms(startRow.p50)} ms, p99 ${fmt.ms(startRow.p99)} ms.` : '',
      authRow ? `- One access token verification (RS256): ${((1000 / authRow.rps) * 1000).toFixed(0)} µs, on the event loop.` : '',
      `- Jobs created (warm-up included) and the time the worker still needed afterwards to run their workflows' first steps:`,
      `  ours ${made(orgs.ours)}, caught up ${catchUpOurs.toFixed(1)} s later (sustained ~${sustained(made(orgs.ours), catchUpOurs)} jobs/s);`,
      `  baseline + workflow start ${made(orgs.baseWf)}, caught up ${catchUpBaseWf.toFixed(1)} s later (~${sustained(made(orgs.baseWf), catchUpBaseWf)} jobs/s); Drizzle-only baseline ${made(orgs.base)}.`,
      `- Before each scenario the bench waited for the machine to go quiet: ${settled.map((w) => `${w.toFixed(1)} s`).join(', ')}.`,
      '- The (in-process) rows call the code directly, without HTTP: their req/s are operations/s.',
    ].filter(Boolean);

    const order = Object.values(S);
    rows.sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
    return {
      title: `HTTP jobs API on ${bench.driver === 'postgres' ? 'PostgreSQL' : 'PGlite'}`,
      rows,
      comparisons: [
        { name: 'create job vs Drizzle-only baseline (the issue\'s target)', ours: S.oursCreate, baseline: S.baseCreate, target: TARGET },
        { name: 'get job vs baseline', ours: S.oursGet, baseline: S.baseGet, target: TARGET },
        { name: 'create job vs baseline + workflow start (like for like)', ours: S.oursCreate, baseline: S.baseCreateWf, target: TARGET, informative: true },
      ],
      notes,
    };
  } finally {
    await baseline?.close();
    await bench.stop();
  }
}

const benchmark: Benchmark = { title: 'HTTP jobs API', run };
export default benchmark;
