// The deadlines a job's workflow keeps, met (or missed) by a scripted agent over real gRPC: time in
// the queue, time from assignment to started, run time, and the grace an agent has to stop a
// cancelled job.
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('job deadlines on %s', (driver) => {
  const t = useTestSystem({ driver, env: { JOB_QUEUE_TIMEOUT: '3s', JOB_START_TIMEOUT: '2s', JOB_RUN_TIMEOUT: '4s', AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '4s' } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  async function orgWithAgent() {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = new ProtocolClient(t.grpcAddress, token.secret);
    clients.push(agent);
    agent.hello({ capacity: 1 });
    await agent.next('welcome');
    return { ...org, repo, agent };
  }

  it('times out a job no agent takes within the queue timeout', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'timed_out', 30_000);
    expect(done).toMatchObject({ attempt: 0, agentId: null, failureReason: 'no agent accepted the job within 3000 ms' });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'timed_out']);
  });

  it('keeps a cancelled job cancelling while its agent may still run it, kills it after the grace, and ends it once the agent confirms or its lease runs out', async () => {
    const { agent, ...org } = await orgWithAgent();
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, cancelGraceSeconds: 1 });
    await agent.next('assignment');
    agent.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');

    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } }, body: { reason: 'wrong branch' } });
    expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1, reason: 'wrong branch', grace: { seconds: 1, nanos: 0 } });
    // The agent does not confirm within the grace: it is told to kill the run now…
    expect(await agent.next('cancel', 30_000)).toMatchObject({ jobId: job.id, attempt: 1, grace: { seconds: 0, nanos: 0 } });
    // …and while it is heard, its command may still run: the job is cancelling, not cancelled.
    const cancelling = await waitForJob(org.member, org.orgId, job.id, (j) => j.cancelRequestedAt !== null);
    expect(cancelling.status).toBe('running');

    // The agent goes silent: once its lease has surely run out (it stopped the run by itself), the job ends.
    agent.close();
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled', 60_000);
    expect(done).toMatchObject({ failureReason: 'wrong branch', attempt: 1 });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'cancel_requested', 'cancelled']);
  });

  it('takes a job back from an agent that does not start it in time, counting the attempt, and offers it again', async () => {
    const { agent, ...org } = await orgWithAgent();
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, maxAttempts: 3 });
    expect(await agent.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    agent.send({ $case: 'accepted', value: { jobId: job.id, attempt: 1 } });

    // Still preparing (a slow clone, say) at the deadline: told to drop the attempt.
    expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1, reason: 'not started within 2000 ms' });
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { failureReason: 'dropped' });

    // Its one slot is free again once it says so, and the job comes back as attempt 2.
    expect(await agent.next('assignment', 30_000)).toMatchObject({ jobId: job.id, attempt: 2 });
    agent.start(job.id, 2);
    agent.finish(job.id, 2, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done.events.map((e) => [e.type, e.attempt])).toEqual([
      ['created', 0],
      ['assigned', 1],
      ['requeued', 1],
      ['assigned', 2],
      ['started', 2],
      ['succeeded', 2],
    ]);
    expect(done.events[2]?.detail).toBe('agent did not start the job within 2000 ms');
  });

  it('keeps a started job past the start deadline, and times it out when it runs too long', async () => {
    const { agent, ...org } = await orgWithAgent();
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    expect(await agent.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    agent.start(job.id, 1);

    // No cancel at the start deadline (it started); at the run deadline, the agent is asked to stop.
    const cancel = await agent.next('cancel', 30_000);
    expect(cancel).toMatchObject({ jobId: job.id, attempt: 1, reason: 'run time exceeded 4000 ms' });
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { exitCode: 143, failureReason: 'terminated' });

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'timed_out');
    expect(done).toMatchObject({ attempt: 1, failureReason: 'run time exceeded 4000 ms' });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'timed_out']);
  });
});
