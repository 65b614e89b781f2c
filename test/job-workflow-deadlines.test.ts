// The deadlines a job's workflow keeps, at the lengths operators set (hours, minutes), on Temporal's
// time-skipping test server: the real system (gateway, activities, database) runs against it, a
// scripted agent plays its part over real gRPC, and the test moves Temporal's clock to just before
// each deadline instead of waiting for it. See test/support/time-skipping.ts for what may be skipped.
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome } from '../generated/proto/agent/v1/agent.js';
import { createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { closeClients, type ProtocolClient } from './support/protocol-client.js';
import { orgWithAgent } from './support/running-job.js';
import { drivers, useTestSystem } from './support/system.js';
import { testServerPath, useTimeSkippingServer } from './support/time-skipping.js';

const hour = 3_600_000;
const minute = 60_000;

describe.skipIf(!testServerPath)('job deadlines at full length, on the time-skipping test server', () => {
  const temporal = useTimeSkippingServer();
  const t = useTestSystem({
    driver: drivers[0]!,
    temporalAddress: () => temporal.address,
    env: { JOB_QUEUE_TIMEOUT: '24h', JOB_START_TIMEOUT: '5m', JOB_RUN_TIMEOUT: '2h', JOB_CANCEL_GRACE: '30s', AGENT_SILENCE_TIMEOUT: '3h' },
  });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  it('times out a job no agent takes within the 24 h queue timeout', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    expect(await temporal.skipToNextDeadline(job.id, 'claimJob')).toMatchObject({ kind: 'activity schedule-to-close', afterMs: 24 * hour });

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'timed_out', 30_000);
    expect(done).toMatchObject({ attempt: 0, agentId: null, failureReason: `no agent accepted the job within ${24 * hour} ms` });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'timed_out']);
  });

  it('takes a job back from an agent that does not start it within 5 minutes, counting the attempt, and fails it when the attempts run out', async () => {
    const { agent, ...org } = await orgWithAgent(t, clients);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, maxAttempts: 2 });
    for (const attempt of [1, 2]) {
      expect(await agent.next('assignment')).toMatchObject({ jobId: job.id, attempt });
      // Accepted, and still preparing (a slow clone, say) at the deadline: told to drop the attempt.
      agent.send({ $case: 'accepted', value: { jobId: job.id, attempt } });
      expect(await temporal.skipToNextDeadline(job.id, 'executeJob')).toMatchObject({ kind: 'timer', afterMs: 5 * minute });
      expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt, reason: `not started within ${5 * minute} ms` });
      agent.finish(job.id, attempt, JobOutcome.JOB_OUTCOME_CANCELLED, { failureReason: 'dropped' });
    }

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed');
    expect(done).toMatchObject({ attempt: 2, failureReason: `agent did not start the job within ${5 * minute} ms; gave up after 2 attempts` });
    expect(done.events.map((e) => [e.type, e.attempt])).toEqual([
      ['created', 0],
      ['assigned', 1],
      ['requeued', 1],
      ['assigned', 2],
      ['failed', 2],
    ]);
  });

  it('keeps a started job past the 5-minute start deadline, and times it out at the 2-hour run deadline', async () => {
    const { agent, ...org } = await orgWithAgent(t, clients);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    expect(await agent.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    agent.start(job.id, 1);

    // The start deadline passes: the job started, so the run goes on; the next deadline is the
    // run's, counted from the start the agent reported, and the first cancel the agent hears is its.
    expect(await temporal.skipToNextDeadline(job.id, 'executeJob')).toMatchObject({ kind: 'timer', afterMs: 5 * minute });
    expect(await temporal.skipToNextDeadline(job.id, 'executeJob')).toMatchObject({ kind: 'timer' });
    expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1, reason: `run time exceeded ${2 * hour} ms` });
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { exitCode: 143, failureReason: 'terminated' });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'timed_out');
    expect(done).toMatchObject({ attempt: 1, failureReason: `run time exceeded ${2 * hour} ms` });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'timed_out']);
  });

  it('gives a cancelled run its 10-minute grace, then tells the agent to kill it, and ends the job cancelled once the agent confirms', async () => {
    const { agent, ...org } = await orgWithAgent(t, clients);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, cancelGraceSeconds: 600 });
    await agent.next('assignment');
    agent.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');

    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } }, body: { reason: 'wrong branch' } });
    expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1, reason: 'wrong branch', grace: { seconds: 600, nanos: 0 } });
    expect(await temporal.skipToNextDeadline(job.id, 'executeJob')).toMatchObject({ kind: 'timer', afterMs: 10 * minute });
    expect(await agent.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1, grace: { seconds: 0, nanos: 0 } });
    expect((await waitForJob(org.member, org.orgId, job.id, (j) => j.cancelRequestedAt !== null)).status).toBe('running');

    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { exitCode: 137, failureReason: 'killed' });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled');
    expect(done).toMatchObject({ attempt: 1, failureReason: 'wrong branch' });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'cancel_requested', 'cancelled']);
  });
});
