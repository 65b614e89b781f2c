// A few of the deadlines a job's workflow keeps, end to end in real time on the real Temporal dev
// server, with short timeouts: the run deadline, and a cancel whose agent goes silent, which ends
// only once the agent's lease (kept in the database, on the wall clock) has run out. Every deadline
// at its full length, on Temporal's time-skipping test server, is in job-workflow-deadlines.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome } from '../generated/proto/agent/v1/agent.js';
import { createJob, waitForJob } from './support/factories.js';
import { closeClients, type ProtocolClient } from './support/protocol-client.js';
import { orgWithAgent } from './support/running-job.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('job deadlines on %s', (driver) => {
  const t = useTestSystem({ driver, env: { JOB_START_TIMEOUT: '2s', JOB_RUN_TIMEOUT: '4s', AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '4s' } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  it('keeps a cancelled job cancelling while its agent may still run it, kills it after the grace, and ends it once the agent confirms or its lease runs out', async () => {
    const { agent, ...org } = await orgWithAgent(t, clients);
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

  it('keeps a started job past the start deadline, and times it out when it runs too long', async () => {
    const { agent, ...org } = await orgWithAgent(t, clients);
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
