// Submitting, reading and cancelling jobs through the API, on PostgreSQL and on PGlite.
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cancelQueuedJob, createJob, createOrg, createRepository, waitForJob, waitForWorkflow } from './support/factories.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('jobs on %s', (driver) => {
  const t = useTestSystem({ driver, env: { ORG_MAX_QUEUED_JOBS: '5' } });

  it('stores a submitted job as queued, with its first event, and starts its workflow', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'Add a README' });
    expect(job).toMatchObject({ status: 'queued', queueType: 'backlog', prompt: 'Add a README', attempt: 0, maxAttempts: 3, cancelGraceSeconds: 30, parentJobId: null, createdBy: 'member' });

    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: org.orgId, jobId: job.id } } });
    expect(data?.events.map((e) => [e.type, e.status])).toEqual([['created', 'queued']]);

    // The workflow starts from the outbox right after the answer.
    const description = await waitForWorkflow(t, job.id);
    expect(description.status.name).toBe('RUNNING');
    expect(description.type).toBe('jobWorkflow');
  });

  it('cancels a queued job through its workflow and records every step', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });

    const { data, response } = await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', {
      params: { path: { orgId: org.orgId, jobId: job.id } },
      body: { reason: 'wrong repository' },
    });
    expect(response.status).toBe(202);
    expect(data?.cancelRequestedAt).not.toBeNull();

    const cancelled = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled');
    expect(cancelled.failureReason).toBe('wrong repository');
    expect(cancelled.finishedAt).not.toBeNull();
    expect(cancelled.events.map((e) => e.type)).toEqual(['created', 'cancel_requested', 'cancelled']);
    expect(await t.system.temporal.workflow.getHandle(job.id).result()).toBe('cancelled');
  });

  it('answers 409 when cancelling a job that already finished, and changes nothing', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } } });
    const before = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled');

    const { error, response } = await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } } });
    expect(response.status).toBe(409);
    expect(error).toMatchObject({ code: 'conflict', type: 'urn:agent-jobs:problem:conflict' });
    const after = await waitForJob(org.member, org.orgId, job.id, () => true);
    expect(after).toEqual(before);
  });

  it('shows a job\'s revisions: the rework jobs naming it, on the job oldest first and in the list filtered by parentJobId', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const original = await createJob(org.member, org.orgId, { repoId: repo.id });
    expect((await waitForJob(org.member, org.orgId, original.id, () => true)).revisions).toEqual([]);
    await cancelQueuedJob(org.member, org.orgId, original.id);

    const first = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: original.id, prompt: 'Rename the toggle' });
    await cancelQueuedJob(org.member, org.orgId, first.id);
    const second = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: original.id, prompt: 'Also the docs' });
    // A revision of the revision belongs to the chain one step on, not to the original.
    const nested = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: first.id });
    await createJob(org.member, org.orgId, { repoId: repo.id });

    expect((await waitForJob(org.member, org.orgId, original.id, () => true)).revisions).toEqual([first.id, second.id]);
    expect((await waitForJob(org.member, org.orgId, first.id, () => true)).revisions).toEqual([nested.id]);
    const page = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { parentJobId: original.id, limit: 1 } } });
    expect(page.data?.items.map((j) => j.id)).toEqual([second.id]);
    const next = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { parentJobId: original.id, limit: 1, cursor: page.data!.nextCursor! } } });
    expect(next.data?.items.map((j) => j.id)).toEqual([first.id]);
    expect(next.data?.nextCursor).toBeNull();
  });

  it('requires a rework job to name a finished job of the same repository', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const other = await createRepository(org.admin, org.orgId);
    const running = await createJob(org.member, org.orgId, { repoId: repo.id });

    const attempt = (body: { repoId: string; parentJobId?: string }) =>
      org.member.POST('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } }, body: { prompt: 'Address review comments', queueType: 'rework', ...body } as never });

    const missing = await attempt({ repoId: repo.id });
    expect(missing.response.status).toBe(400);
    expect(missing.error?.errors?.[0]?.pointer).toBe('/parentJobId');

    const unfinished = await attempt({ repoId: repo.id, parentJobId: running.id });
    expect(unfinished.response.status).toBe(400);
    expect(unfinished.error?.errors).toEqual([{ pointer: '/parentJobId', message: 'is still queued' }]);

    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: running.id } } });
    await waitForJob(org.member, org.orgId, running.id, (j) => j.status === 'cancelled');

    const otherRepo = await attempt({ repoId: other.id, parentJobId: running.id });
    expect(otherRepo.response.status).toBe(400);
    expect(otherRepo.error?.errors?.[0]?.message).toBe('belongs to another repository');

    const rework = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: running.id });
    expect(rework).toMatchObject({ queueType: 'rework', parentJobId: running.id, status: 'queued' });

    const backlogWithParent = await org.member.POST('/v1/orgs/{orgId}/jobs', {
      params: { path: { orgId: org.orgId } },
      body: { prompt: 'x', queueType: 'backlog', repoId: repo.id, parentJobId: running.id } as never,
    });
    expect(backlogWithParent.response.status).toBe(400);
  });

  it('refuses a job past the organisation queued limit with 429 and Retry-After', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    for (let i = 0; i < 5; i++) await createJob(org.member, org.orgId, { repoId: repo.id });
    const { error, response } = await org.member.POST('/v1/orgs/{orgId}/jobs', {
      params: { path: { orgId: org.orgId } },
      body: { prompt: 'one too many', queueType: 'backlog', repoId: repo.id },
    });
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(error?.code).toBe('resource_exhausted');
    const list = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { limit: 50 } } });
    expect(list.data?.items).toHaveLength(5);
  });

  it('answers 404 for a repository or job of another organisation, exactly as for a missing one', async () => {
    const mine = await createOrg(t);
    const theirs = await createOrg(t);
    const theirRepo = await createRepository(theirs.admin, theirs.orgId);
    const theirJob = await createJob(theirs.member, theirs.orgId, { repoId: theirRepo.id });

    const submit = await mine.member.POST('/v1/orgs/{orgId}/jobs', {
      params: { path: { orgId: mine.orgId } },
      body: { prompt: 'steal', queueType: 'backlog', repoId: theirRepo.id },
    });
    expect(submit.response.status).toBe(404);

    const foreign = await mine.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: mine.orgId, jobId: theirJob.id } } });
    const missing = await mine.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: mine.orgId, jobId: randomUUID() } } });
    expect(foreign.response.status).toBe(404);
    expect(missing.response.status).toBe(404);
    expect(foreign.error?.code).toBe(missing.error?.code);

    const viaTheirOrg = await mine.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: theirs.orgId, jobId: theirJob.id } } });
    expect(viaTheirOrg.response.status).toBe(404);
  });
});
