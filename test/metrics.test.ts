// What /metrics tells an on-call engineer, checked against what the system was made to do: jobs
// created, finished and requeued, how long they waited and ran, the agents and their free slots,
// the log and patch bytes stored. A scripted agent over real gRPC does the work.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobOutcome, LogStream } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { orgWithAgent } from './support/running-job.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { metricSample, scrapeMetrics } from './support/metrics.js';
import { changeOf } from './support/scripted-change.js';
import { createTestDatabase, drivers, dropTestDatabases, startTestSystem, useTestSystem, type TestSystem } from './support/system.js';

describe('the metrics an operator reads', () => {
  const t = useTestSystem({ driver: 'pglite' });
  const clients: ProtocolClient[] = [];
  afterAll(() => closeClients(clients));

  const scrape = () => scrapeMetrics(t);
  const sample = metricSample;

  it('counts jobs as they are created, wait, run, end and go back to the queue, and what their agents store', async () => {
    const before = await scrape();
    const { agent, repo, ...org } = await orgWithAgent(t, clients, 2);
    expect(sample(await scrape(), 'agent_jobs_agents_connected')).toBe(1);
    expect(sample(await scrape(), 'agent_jobs_agent_free_slots')).toBe(2);

    // One declined (back to the queue, not counted), then taken and run to success with a change.
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const first = await agent.next('assignment');
    agent.send({ $case: 'rejected', value: { jobId: job.id, attempt: first.attempt, reason: 'not now' } });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.events.some((e) => e.type === 'requeued'));
    const second = await agent.next('assignment');
    agent.start(job.id, second.attempt);
    expect(sample(await scrape(), 'agent_jobs_agent_free_slots')).toBe(1);
    const at = new Date();
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: second.attempt, firstSeq: 1, lines: ['one', 'three'].map((text) => ({ at, stream: LogStream.LOG_STREAM_STDOUT, text })) } });
    await agent.next('logAck');
    const patch = Buffer.from('diff --git a/x b/x\n');
    agent.sendPatch(job.id, second.attempt, 0, patch);
    await agent.next('patchAck');
    agent.finish(job.id, second.attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 2, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');

    // And one cancelled while queued (a label no agent has keeps it there).
    const queued = await createJob(org.member, org.orgId, { repoId: repo.id, labels: ['nobody-has-this'] });
    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: queued.id } } });
    await waitForJob(org.member, org.orgId, queued.id, (j) => j.status === 'cancelled');

    const after = await scrape();
    const grew = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
    expect(grew('agent_jobs_jobs_created_total', { queue: 'backlog' })).toBe(2);
    expect(grew('agent_jobs_jobs_finished_total', { status: 'succeeded', queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_jobs_finished_total', { status: 'cancelled', queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_job_requeues_total', { reason: 'declined' })).toBe(1);
    expect(grew('agent_jobs_job_queue_wait_seconds_count', { queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_job_run_seconds_count', { status: 'succeeded' })).toBe(1);
    expect(grew('agent_jobs_log_lines_stored_total')).toBe(2);
    expect(grew('agent_jobs_log_bytes_stored_total')).toBe('onethree'.length);
    expect(grew('agent_jobs_patch_bytes_stored_total')).toBe(patch.byteLength);
    expect(sample(after, 'agent_jobs_agent_free_slots')).toBe(2);
    // Every workflow start was delivered: the outbox, sampled every sweep, is empty again.
    await expect.poll(async () => sample(await scrape(), 'agent_jobs_workflow_starts_pending', {})).toBe(0);
    expect(after).toMatch(/^agent_jobs_workflow_starts_pending \d+$/m);
  });
});

// A gateway or a worker run apart has no HTTP API, yet what it counts is only in its own process
// (a job's end is counted by the worker that ran its workflow, a log line by the gateway that stored it).
describe.runIf(drivers.includes('postgres'))('the metrics of processes without the API', () => {
  let api: TestSystem;
  let gateway: TestSystem;
  let worker: TestSystem;
  let dataDir: string;
  const clients: ProtocolClient[] = [];

  beforeAll(async () => {
    const databaseUrl = await createTestDatabase();
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-role-metrics-'));
    const common = { driver: 'postgres' as const, databaseUrl, dataDir, taskQueue: `jobs-${randomUUID()}` };
    worker = await startTestSystem({ ...common, env: { ROLE: 'worker', REPLICA_ID: 'worker' } });
    gateway = await startTestSystem({ ...common, env: { ROLE: 'gateway', REPLICA_ID: 'gateway' } });
    api = await startTestSystem({ ...common, env: { ROLE: 'api', REPLICA_ID: 'api' } });
  });
  afterAll(async () => {
    closeClients(clients);
    for (const t of [api, gateway, worker]) await t?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
    await dropTestDatabases();
  });

  it('serves /metrics, /healthz and /readyz on the gateway and the worker, each counting what it did', async () => {
    // The API's own /metrics stays where it was; only the processes without it get the endpoint.
    expect(api.system.metricsUrl).toBeUndefined();
    for (const t of [gateway, worker]) {
      const base = t.system.metricsUrl!;
      const health = await fetch(`${base}/healthz`);
      expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }]);
      const ready = await fetch(`${base}/readyz`);
      expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', checks: { database: 'ok', temporal: 'ok', migrations: 'ok' } }]);
      expect((await fetch(`${base}/v1/orgs`)).status).toBe(404);
      // The process defaults are there too: it is the process's whole registry.
      expect(await scrapeMetrics(t)).toMatch(/^process_cpu_user_seconds_total /m);
    }

    const org = await createOrg(api);
    const repo = await createRepository(org.admin, org.orgId);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = new ProtocolClient(gateway.grpcAddress, token.secret);
    clients.push(agent);
    agent.hello({ capacity: 1 });
    await agent.next('welcome');
    expect(metricSample(await scrapeMetrics(gateway), 'agent_jobs_agents_connected')).toBe(1);

    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const assigned = await agent.next('assignment', 10_000);
    agent.start(job.id, assigned.attempt);
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: assigned.attempt, firstSeq: 1, lines: [{ at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: 'counted by the gateway' }] } });
    await agent.next('logAck');
    agent.finish(job.id, assigned.attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 1 });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');

    const atGateway = await scrapeMetrics(gateway);
    expect(metricSample(atGateway, 'agent_jobs_log_lines_stored_total')).toBe(1);
    expect(metricSample(atGateway, 'agent_jobs_job_queue_wait_seconds_count', { queue: 'backlog' })).toBe(1);
    await expect.poll(async () => metricSample(await scrapeMetrics(worker), 'agent_jobs_jobs_finished_total', { status: 'succeeded', queue: 'backlog' })).toBe(1);
    expect(metricSample(await scrapeMetrics(api), 'agent_jobs_jobs_created_total', { queue: 'backlog' })).toBe(1);

    // Stopped with its process: nothing listens there any more.
    const base = worker.system.metricsUrl!;
    await worker.stop();
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });
});
