// The lease rule of agent.v1 and the slots it decides, as a scripted agent over real gRPC sees them:
// what Welcome promises, how every Heartbeat is answered, what the agent's own list of runs does to
// its jobs and its slots, and how a run the server takes back is dropped.
import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome, NoticeCode } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('agent leases on %s', (driver) => {
  const t = useTestSystem({ driver, env: { AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '4s', JOB_START_TIMEOUT: '3s', DISPATCH_SWEEP_INTERVAL: '1s' } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  async function orgWithAgent(options: { capacity?: number; heartbeatMs?: number } = {}) {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = new ProtocolClient(t.grpcAddress, token.secret);
    clients.push(agent);
    agent.hello({ capacity: options.capacity ?? 1, heartbeatMs: options.heartbeatMs ?? 0 });
    const welcome = await agent.next('welcome');
    return { ...org, repo, agent, welcome };
  }

  async function logTexts(org: Pick<Awaited<ReturnType<typeof orgWithAgent>>, 'orgId' | 'member'>, jobId: string): Promise<string[]> {
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId }, query: {} } });
    return data!.items.map((line) => line.text);
  }

  it('states the lease in Welcome: its duration and the margin the server adds before giving a silent agent\'s job away', async () => {
    const { welcome } = await orgWithAgent();
    expect(welcome.leaseDuration).toEqual({ seconds: 4, nanos: 0 });
    expect(welcome.leaseMargin).toEqual({ seconds: 1, nanos: 0 });
    expect(welcome.heartbeatInterval).toEqual({ seconds: 1, nanos: 0 });
  });

  it('answers every Heartbeat with a HeartbeatAck naming its seq, once it has recorded hearing the agent', async () => {
    const { agent, ...org } = await orgWithAgent();
    const listed = async () => (await org.member.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId: org.orgId }, query: {} } })).data!.items.find((a) => a.id === agent.agentId)!;
    const before = (await listed()).lastHeartbeatAt;
    const first = agent.heartbeat();
    expect(await agent.next('heartbeatAck')).toEqual({ seq: first });
    // Recorded before it was answered: the database's clock has moved on from the Hello.
    expect(new Date((await listed()).lastHeartbeatAt!).getTime()).toBeGreaterThan(new Date(before!).getTime());
    const second = agent.heartbeat();
    const third = agent.heartbeat();
    expect(await agent.next('heartbeatAck')).toEqual({ seq: second });
    expect(await agent.next('heartbeatAck')).toEqual({ seq: third });
  });

  it('drops a run it takes back from a connected agent, and gives its slot to the next job at once', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1, heartbeatMs: 500 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    expect(await agent.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    agent.send({ $case: 'accepted', value: { jobId: job.id, attempt: 1 } });
    // Never started: at the start deadline the server asks for the run to stop, then takes it back.
    expect(await agent.next('cancel', 30_000)).toMatchObject({ jobId: job.id, attempt: 1 });
    expect(await agent.next('drop', 30_000)).toMatchObject({ jobId: job.id, attempt: 1, reason: expect.stringContaining('went back to the queue') });
    agent.held.delete(job.id);
    // The agent never reported the run's end, yet its one slot takes the job again at once.
    expect(await agent.next('assignment', 30_000)).toMatchObject({ jobId: job.id, attempt: 2 });
  });

  it('puts back at once a run the agent accepted but no longer lists, counting the attempt, and marks the attempt in the log, each line with its run', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await agent.next('assignment');
    agent.start(job.id, 1);
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: 1, text: 'from attempt 1' }] } });
    await agent.next('logAck');
    agent.heartbeat();
    await agent.next('heartbeatAck');

    // The agent lost the run (a bug, a crash of its runner): its next heartbeat leaves it out.
    agent.held.delete(job.id);
    agent.heartbeat();
    const retry = await agent.next('assignment', 30_000);
    expect(retry).toMatchObject({ jobId: job.id, attempt: 2 });
    const requeued = await waitForJob(org.member, org.orgId, job.id, (j) => j.attempt === 2);
    expect(requeued.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'requeued', 'assigned']);
    expect(requeued.events[3]?.detail).toBe('the agent no longer lists this run in its heartbeats');

    // The next attempt's lines follow a line of the server's that says where attempt 1 ended.
    agent.start(job.id, 2);
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 2, firstSeq: 1, lines: [{ at: new Date(), stream: 1, text: 'from attempt 2' }] } });
    await agent.next('logAck');
    const expected = [
      [1, 1, 'from attempt 1'],
      [2, 1, 'attempt 1 ended without a result: the agent no longer lists this run in its heartbeats; the job goes back to the queue'],
      [3, 2, 'from attempt 2'],
    ];
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    expect(data!.items.map((line) => [line.seq, line.attempt, line.text])).toEqual(expected);
    // A live viewer tells the runs apart the same way.
    const viewer = new LogStreamViewer(t.url, org.orgId, job.id, { token: org.tokens.member });
    try {
      await viewer.until((v) => v.lines.length >= 3);
      expect(viewer.lines.map((line) => [line.seq, line.attempt, line.text])).toEqual(expected);
    } finally {
      viewer.cut();
    }
  });

  it('refuses the log lines of a run it took back', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await agent.next('assignment');
    agent.start(job.id, 1);
    agent.held.delete(job.id);
    agent.heartbeat();
    await agent.next('heartbeatAck');
    // Sent after the heartbeat that gave the run up: the job is no longer this run's.
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: 1, text: 'stale' }] } });
    expect(await agent.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB, jobId: job.id, attempt: 1 });
    expect(await logTexts(org, job.id)).not.toContain('stale');
  });

  it('tells an agent that lists a run that is not its own to drop it', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await agent.next('assignment');
    // Another attempt of the job it was assigned, and a job that does not exist.
    agent.held.set(job.id, { attempt: 7, lastSeq: 0 });
    agent.held.set('00000000-0000-4000-8000-000000000000', { attempt: 1, lastSeq: 0 });
    agent.heartbeat();
    const drops = [await agent.next('drop'), await agent.next('drop')];
    expect(drops).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ jobId: job.id, attempt: 7 }),
        expect.objectContaining({ jobId: '00000000-0000-4000-8000-000000000000', attempt: 1, reason: 'no such job' }),
      ]),
    );
  });

  it('keeps the run of an agent that is heard, however long it runs, and reports its end as the outcome', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1, heartbeatMs: 300 });
    // Lease 4s + grace 1s + margin 1s: the job could go elsewhere 6s after the agent was last heard.
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, cancelGraceSeconds: 1 });
    await agent.next('assignment');
    agent.start(job.id, 1);
    // Heard for twice lease + grace + margin.
    let acks = 0;
    while (acks < 40) {
      await agent.next('heartbeatAck');
      acks++;
    }
    expect((await waitForJob(org.member, org.orgId, job.id, () => true)).status).toBe('running');
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done).toMatchObject({ attempt: 1 });
  });

  it('completes a claim that never reached its workflow (the claiming gateway died in between), so the job is not stuck assigned', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 0, heartbeatMs: 300 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    const { db } = t.system.database;
    // The workflow waits in its claim step…
    const waiting = async () => ((await db.execute(sql`select 1 from jobs where id = ${job.id} and claim_task_token is not null`)) as unknown as { rows: unknown[] }).rows.length === 1;
    while (!(await waiting())) await new Promise((resolve) => setTimeout(resolve, 50));
    // …when a gateway claims the job in the database and dies before telling Temporal.
    await db.execute(sql`update jobs set status = 'assigned', agent_id = ${agent.agentId}, attempt = 1, assigned_at = now() - interval '1 minute' where id = ${job.id}`);
    agent.start(job.id, 1);
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 30_000);
    expect(done).toMatchObject({ attempt: 1, exitCode: 0 });
  });

  it('delivers a claim whose claim step lost its activity (its worker died before recording it), so the job is not stuck assigned', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 0, heartbeatMs: 300 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    const { db } = t.system.database;
    const waiting = async () => ((await db.execute(sql`select 1 from jobs where id = ${job.id} and claim_task_token is not null`)) as unknown as { rows: unknown[] }).rows.length === 1;
    while (!(await waiting())) await new Promise((resolve) => setTimeout(resolve, 50));
    // The job is claimed in the database, and no token of the claim step is on record to complete it with.
    await db.execute(sql`update jobs set status = 'assigned', agent_id = ${agent.agentId}, attempt = 1, assigned_at = now() - interval '1 minute', claim_task_token = null where id = ${job.id}`);
    agent.start(job.id, 1);
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 30_000);
    expect(done).toMatchObject({ attempt: 1, exitCode: 0 });
  });

  it('hands the workflow a report it never received (the gateway that recorded it died before telling Temporal)', async () => {
    const { agent, ...org } = await orgWithAgent({ capacity: 1, heartbeatMs: 300 });
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await agent.next('assignment');
    agent.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');
    const { db } = t.system.database;
    const executing = async () => ((await db.execute(sql`select 1 from jobs where id = ${job.id} and execute_task_token is not null`)) as unknown as { rows: unknown[] }).rows.length === 1;
    while (!(await executing())) await new Promise((resolve) => setTimeout(resolve, 50));
    // The run's end is recorded, as a gateway does before it tells Temporal; this one dies first.
    // The agent, unacknowledged, still lists the run, so no heartbeat timeout will come to the rescue.
    await db.execute(sql`update jobs set reported_outcome = ${JSON.stringify({ kind: 'succeeded', exitCode: 0 })}::jsonb, assigned_at = now() - interval '1 minute' where id = ${job.id}`);
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 30_000);
    expect(done).toMatchObject({ attempt: 1, exitCode: 0 });
  });
});

