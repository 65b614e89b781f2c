// Traces: a job is one trace, from the REST request that created it through its workflow (Temporal's
// interceptors), the gateway's assignment and the reference agent's run, exported over OTLP/HTTP to a
// receiver in this process, also when the workflow starts only after a restart; with no endpoint
// configured, nothing is made and nothing is sent.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { Resource } from '@opentelemetry/resources';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { makeWorkflowExporter } from '@temporalio/interceptors-opentelemetry';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobOutcome } from '../generated/proto/agent/v1/agent.js';
import { loadConfig } from '../src/config.js';
import { jobs } from '../src/db/schema/index.js';
import { activeTraceContext, startTracing } from '../src/observability/tracing.js';
import { tracingInterceptorsPath, workflowsPath } from '../src/temporal/worker.js';
import { startAgent, type AgentProcess } from './support/agent-process.js';
import { createAgentToken, createOrg, createRepository, waitForJob, waitForWorkflow } from './support/factories.js';
import { orgWithAgent } from './support/running-job.js';
import { createGitRepository } from './support/git-fixture.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { drivers, dropTestDatabases, startTestSystem, type TestSystem } from './support/system.js';

/** A caller's own trace: a server that traces continues it, one that does not ignores it. */
const CALLERS_TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe.each(drivers)('traces on %s', (driver) => {
  let receiver: OtlpReceiver;
  let repository: Awaited<ReturnType<typeof createGitRepository>>;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    repository = await createGitRepository({ 'README.md': 'traced\n' });
  });
  afterAll(async () => {
    await receiver?.close();
    await repository?.remove();
    await dropTestDatabases();
  });

  describe('with no OTLP endpoint configured', () => {
    let t: TestSystem | undefined;
    const clients: ProtocolClient[] = [];
    afterAll(async () => {
      closeClients(clients);
      await t?.stop();
    });

    it('creates no exporter, records no span, keeps no trace with the job and sends none to the agent', async () => {
      expect(startTracing(loadConfig({}))).toBeUndefined();
      t = await startTestSystem({ driver });
      // Nothing registered a tracer provider or a propagator: the API's no-ops answer.
      const probe = trace.getTracer('probe').startSpan('probe');
      expect(probe.isRecording()).toBe(false);
      expect(activeTraceContext(trace.setSpan(ROOT_CONTEXT, probe))).toBeNull();
      probe.end();

      const { agent, repo, ...org } = await orgWithAgent(t, clients);
      const { data: job } = await org.member.POST('/v1/orgs/{orgId}/jobs', {
        params: { path: { orgId: org.orgId } },
        body: { prompt: 'untraced', repoId: repo.id, queueType: 'backlog' },
        headers: { traceparent: CALLERS_TRACEPARENT },
      });
      const assignment = await agent.next('assignment');
      expect(assignment).toMatchObject({ jobId: job!.id, traceparent: '', tracestate: '' });
      agent.start(job!.id, 1);
      agent.finish(job!.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 0 });
      await agent.next('finishedAck');
      // The gateway may hand a job out before the outbox has started its workflow: the job's end is
      // the workflow's, so once it is recorded the workflow exists and its result can be awaited.
      await waitForJob(org.member, org.orgId, job!.id, (j) => j.status === 'succeeded', 30_000);
      await t.system.temporal.workflow.getHandle(job!.id).result();

      const [row] = await t.system.database.db.select({ traceContext: jobs.traceContext }).from(jobs).where(eq(jobs.id, job!.id));
      expect(row).toEqual({ traceContext: null });
      await t.stop();
      expect(receiver.requests()).toBe(0);
    });
  });

  describe('with OTEL_EXPORTER_OTLP_ENDPOINT set, on the server and on the agent', () => {
    let t: TestSystem | undefined;
    let agent: AgentProcess | undefined;
    afterAll(async () => {
      await agent?.dispose();
      await t?.stop();
    });

    it('follows a job in one trace: its REST request, its workflow and activities, the gateway\'s assignment, the agent\'s run', async () => {
      const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url };
      t = await startTestSystem({ driver, env: { ...otel, OTEL_SERVICE_NAME: 'agent-jobs-under-test', DISPATCH_SWEEP_INTERVAL: '1s' } });
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId, { cloneUrl: repository.cloneUrl });
      const token = await createAgentToken(org.admin, org.orgId);
      agent = await startAgent({ server: t.grpcAddress, token: token.secret, exec: 'echo traced', env: { ...otel, AGENT_NO_PUSH: '1' } });

      const { data: job } = await org.member.POST('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } }, body: { prompt: 'traced', repoId: repo.id, queueType: 'backlog' } });
      await waitForJob(org.member, org.orgId, job!.id, (j) => j.status === 'succeeded', 30_000);
      await t.system.temporal.workflow.getHandle(job!.id).result();
      // Each sends what it holds as it stops: no waiting on an export interval.
      agent.kill('SIGTERM');
      expect(await agent.exited).toBe(0);
      await t.stop();

      const assign = receiver.spans.find((span) => span.name === 'assign job' && span.attributes['job.id'] === job!.id);
      expect(assign, 'the gateway\'s assignment span').toBeDefined();
      const spans = receiver.spans.filter((span) => span.traceId === assign!.traceId);
      const byId = new Map(spans.map((span) => [span.spanId, span]));
      const one = (name: string, service = 'agent-jobs-under-test'): ReceivedSpan => {
        const named = spans.filter((span) => span.name === name && span.service === service);
        expect(named.map((span) => span.name), `spans named ${name} in the job's trace`).toEqual([name]);
        return named[0]!;
      };
      const parentOf = (span: ReceivedSpan) => byId.get(span.parentSpanId)?.name;

      // One root, the request that created the job; every other span hangs from it.
      const roots = spans.filter((span) => !span.parentSpanId);
      expect(roots.map((span) => span.name)).toEqual(['POST /v1/orgs/:orgId/jobs']);
      expect(roots[0]!.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/v1/orgs/:orgId/jobs', 'http.response.status_code': 201 });
      expect(spans.filter((span) => span.parentSpanId && !byId.has(span.parentSpanId)).map((span) => span.name), 'spans whose parent is missing').toEqual([]);

      // The workflow, started from the outbox in the request's trace, and its two waiting steps.
      expect(parentOf(one('StartWorkflow:jobWorkflow'))).toBe('POST /v1/orgs/:orgId/jobs');
      expect(parentOf(one('RunWorkflow:jobWorkflow'))).toBe('StartWorkflow:jobWorkflow');
      for (const step of ['claimJob', 'executeJob']) {
        expect(parentOf(one(`StartActivity:${step}`))).toBe('RunWorkflow:jobWorkflow');
        expect(parentOf(one(`RunActivity:${step}`))).toBe(`StartActivity:${step}`);
      }
      // The gateway gives the queued job to the agent, whose run continues the assignment's span.
      expect(parentOf(assign!)).toBe('POST /v1/orgs/:orgId/jobs');
      expect(assign!.attributes).toMatchObject({ 'job.attempt': 1 });
      const run = one('run job', 'agent-jobs-agent');
      expect(parentOf(run)).toBe('assign job');
      expect(run.attributes).toMatchObject({ 'job.id': job!.id, 'job.attempt': 1, 'job.outcome': 'JOB_OUTCOME_SUCCEEDED', 'process.exit_code': 0 });

      // No span about this job went to another trace.
      const aboutTheJob = receiver.spans.filter((span) => span.attributes['job.id'] === job!.id || span.attributes.workflowId === job!.id || span.attributes.temporalWorkflowId === job!.id);
      expect(new Set(aboutTheJob.map((span) => span.traceId))).toEqual(new Set([assign!.traceId]));
    });

    it('starts the workflow of a job stored before a restart in that job\'s trace, which continues its caller\'s', async () => {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-traced-restart-'));
      const shared = { driver, dataDir, taskQueue: `jobs-${randomUUID()}`, env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url } };
      try {
        const first = await startTestSystem(shared);
        const { database } = first.system.config;
        // As if the process died right after answering 201: its outbox starter never runs.
        await first.system.services.workflowStarter.stop();
        const org = await createOrg(first);
        const repo = await createRepository(org.admin, org.orgId);
        const { data: job } = await org.member.POST('/v1/orgs/{orgId}/jobs', {
          params: { path: { orgId: org.orgId } },
          body: { prompt: 'started after a restart', repoId: repo.id, queueType: 'backlog' },
          headers: { traceparent: CALLERS_TRACEPARENT },
        });
        await first.stop();
        expect(receiver.spans.some((span) => span.name === 'StartWorkflow:jobWorkflow' && span.attributes.temporalWorkflowId === job!.id)).toBe(false);

        const second = await startTestSystem({ ...shared, ...(database.kind === 'postgres' ? { databaseUrl: database.url } : {}) });
        try {
          await waitForWorkflow(second, job!.id);
        } finally {
          await second.stop();
        }
        const start = receiver.spans.find((span) => span.name === 'StartWorkflow:jobWorkflow' && span.attributes.temporalWorkflowId === job!.id);
        const request = receiver.spans.find((span) => span.spanId === start?.parentSpanId);
        expect(request).toMatchObject({ name: 'POST /v1/orgs/:orgId/jobs', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentSpanId: '00f067aa0ba902b7' });
        expect(start!.traceId).toBe(request!.traceId);
      } finally {
        await fs.rm(dataDir, { recursive: true, force: true });
      }
    });
  });
});

describe('jobs in flight when traces are turned on', () => {
  it('replay under the traced workflow code: the tracing interceptors change no decision', async () => {
    const dir = path.join(import.meta.dirname, 'fixtures', 'job-workflow-histories');
    const names = (await fs.readdir(dir)).filter((name) => name.endsWith('.json')).sort();
    expect(names.length).toBeGreaterThan(0);
    const { code } = await bundleWorkflowCode({
      workflowsPath,
      workflowInterceptorModules: [tracingInterceptorsPath],
      logger: { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} },
    });
    const sinks = { exporter: makeWorkflowExporter(new SimpleSpanProcessor(new InMemorySpanExporter()), new Resource({})) };
    for (const name of names) {
      const history: unknown = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: { code }, sinks }, history, name.replace(/\.json$/, ''));
    }
  });
});
