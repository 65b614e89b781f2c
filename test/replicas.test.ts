// Many replicas against one PostgreSQL server and one Temporal: roles run apart, nothing needed to
// finish a job lives in one process, and everything crosses replicas through LISTEN/NOTIFY.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobOutcome, LogStream } from '../generated/proto/agent/v1/agent.js';
import { createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { LogStreamViewer, seqProblems } from './support/log-stream-client.js';
import { ProtocolClient } from './support/protocol-client.js';
import { createTestDatabase, drivers, dropTestDatabases, startTestSystem, type TestSystem } from './support/system.js';

describe.runIf(drivers.includes('postgres'))('replicas on one PostgreSQL server', () => {
  let gateway: TestSystem;
  let apiB: TestSystem;
  let apiC: TestSystem;
  let worker: TestSystem;
  let dataDir: string;
  const clients: ProtocolClient[] = [];

  beforeAll(async () => {
    const databaseUrl = await createTestDatabase();
    // One DATA_DIR only so that the replicas share the dev signing key, as they would share PropelAuth.
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-replicas-'));
    const common = { driver: 'postgres' as const, databaseUrl, dataDir, taskQueue: `jobs-${randomUUID()}` };
    const env = { AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '4s', DISPATCH_SWEEP_INTERVAL: '30s' };
    worker = await startTestSystem({ ...common, env: { ...env, ROLE: 'worker', REPLICA_ID: 'worker' } });
    gateway = await startTestSystem({ ...common, env: { ...env, ROLE: 'gateway', REPLICA_ID: 'gateway-a' } });
    apiB = await startTestSystem({ ...common, env: { ...env, ROLE: 'api', REPLICA_ID: 'api-b' } });
    apiC = await startTestSystem({ ...common, env: { ...env, ROLE: 'api', REPLICA_ID: 'api-c' } });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    for (const t of [apiC, apiB, gateway, worker]) await t?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
    await dropTestDatabases();
  });

  it('runs a job submitted on one replica on an agent held by another, and cancels it from a third', async () => {
    const orgB = await createOrg(apiB);
    const onC = apiC.client(orgB.tokens.member);
    const repo = await createRepository(orgB.admin, orgB.orgId);
    const { data: token } = await orgB.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: orgB.orgId } }, body: { name: 'runner' } });

    const agent = new ProtocolClient(gateway.grpcAddress, token!.secret);
    clients.push(agent);
    agent.hello({ capacity: 2 });
    expect((await agent.next('welcome')).replica).toBe('gateway-a');

    // The notification of the new job crosses from api-b to gateway-a (the sweep is too slow to be the cause).
    const first = await createJob(orgB.member, orgB.orgId, { repoId: repo.id });
    expect((await agent.next('assignment', 10_000)).jobId).toBe(first.id);
    agent.finish(first.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    await waitForJob(onC, orgB.orgId, first.id, (j) => j.status === 'succeeded');

    const second = await createJob(orgB.member, orgB.orgId, { repoId: repo.id });
    await agent.next('assignment', 10_000);
    agent.start(second.id, 1);
    await waitForJob(onC, orgB.orgId, second.id, (j) => j.status === 'running');

    await onC.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: orgB.orgId, jobId: second.id } }, body: { reason: 'from replica c' } });
    expect(await agent.next('cancel', 10_000)).toMatchObject({ jobId: second.id, reason: 'from replica c' });
    agent.finish(second.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { failureReason: 'terminated' });
    await waitForJob(onC, orgB.orgId, second.id, (j) => j.status === 'cancelled');

    const { data: agents } = await onC.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId: orgB.orgId }, query: {} } });
    expect(agents?.items).toEqual([expect.objectContaining({ id: agent.agentId, state: 'connected', replica: 'gateway-a', capacity: 2, runningJobIds: [] })]);
  });

  it('streams the log of a job whose agent one replica holds to viewers on two others, each line once', async () => {
    const org = await createOrg(apiB);
    const repo = await createRepository(org.admin, org.orgId);
    const { data: token } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: 'printer' } });
    const agent = new ProtocolClient(gateway.grpcAddress, token!.secret);
    clients.push(agent);
    agent.hello({ capacity: 1 });
    await agent.next('welcome');
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    await agent.next('assignment', 10_000);
    agent.start(job.id, 1);

    const viewers = [apiB, apiC, apiB, apiC].map((replica) => new LogStreamViewer(replica.url, org.orgId, job.id, { token: org.tokens.member }));
    await Promise.all(viewers.map((v) => v.opened));
    // Lines are stored by the gateway replica; the API replicas hear of them by NOTIFY alone.
    for (let firstSeq = 1; firstSeq <= 2000; firstSeq += 100) {
      const lines = Array.from({ length: 100 }, (_, i) => ({ at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: `line ${firstSeq + i}` }));
      agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq, lines } });
      await agent.next('logAck');
    }
    await Promise.all(viewers.map((v) => v.until((viewer) => viewer.lastSeq === 2000, 15_000)));
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 2000 });
    for (const viewer of viewers) {
      expect((await viewer.closed).code).toBe(1000);
      expect(seqProblems(viewer.lines, 1, 2000)).toEqual([]);
      expect(viewer.end).toMatchObject({ status: 'succeeded', lastSeq: 2000 });
    }
  });
});
