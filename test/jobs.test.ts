// Submitting, reading and cancelling jobs through the API, on PostgreSQL and on PGlite.
import { afterEach, describe, expect, it } from 'vitest';
import { cancelQueuedJob, createJob, createOrg, createRepository, waitForJob, waitForWorkflow } from './support/factories.js';
import type { ProtocolClient } from './support/protocol-client.js';
import { changeOf, commitId, scriptedAgent } from './support/scripted-change.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('jobs on %s', (driver) => {
  const t = useTestSystem({ driver, env: { ORG_MAX_QUEUED_JOBS: '5' } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

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
    const agent = await scriptedAgent(t, org, clients);
    const original = await agent.succeed({ repoId: repo.id }, changeOf());
    expect((await waitForJob(org.member, org.orgId, original.jobId, () => true)).revisions).toEqual([]);

    // A revision that changed nothing leaves the original's branch where it was: it may be revised again.
    const first = await agent.succeed({ repoId: repo.id, queueType: 'rework', parentJobId: original.jobId, prompt: 'Rename the toggle' }, changeOf({ branch: '', headCommit: commitId('base'), commits: [], commitCount: 0 }));
    const second = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: original.jobId, prompt: 'Also the docs', labels: ['nobody-has-this'] });
    // A revision of the revision belongs to the chain one step on, not to the original.
    const nested = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: first.jobId, labels: ['nobody-has-this'] });
    await createJob(org.member, org.orgId, { repoId: repo.id, labels: ['nobody-has-this'] });

    expect((await waitForJob(org.member, org.orgId, original.jobId, () => true)).revisions).toEqual([first.jobId, second.id]);
    expect((await waitForJob(org.member, org.orgId, first.jobId, () => true)).revisions).toEqual([nested.id]);
    const page = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { parentJobId: original.jobId, limit: 1 } } });
    expect(page.data?.items.map((j) => j.id)).toEqual([second.id]);
    const next = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { parentJobId: original.jobId, limit: 1, cursor: page.data!.nextCursor! } } });
    expect(next.data?.items.map((j) => j.id)).toEqual([first.jobId]);
    expect(next.data?.nextCursor).toBeNull();
  });

  it('accepts a rework only of a job of the same repository that succeeded with a pushed change no other job continues', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const other = await createRepository(org.admin, org.orgId);
    const agent = await scriptedAgent(t, org, clients);
    const attempt = (body: { repoId: string; parentJobId?: string }) =>
      org.member.POST('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } }, body: { prompt: 'Address review comments', queueType: 'rework', ...body } as never });
    const refusal = async (body: { repoId: string; parentJobId?: string }) => {
      const { response, error } = await attempt(body);
      expect(response.status).toBe(400);
      return error?.errors;
    };

    expect((await refusal({ repoId: repo.id }))?.[0]?.pointer).toBe('/parentJobId');
    const queued = await createJob(org.member, org.orgId, { repoId: repo.id, labels: ['nobody-has-this'] });
    expect(await refusal({ repoId: repo.id, parentJobId: queued.id })).toEqual([{ pointer: '/parentJobId', message: 'is still queued' }]);
    await cancelQueuedJob(org.member, org.orgId, queued.id);
    expect(await refusal({ repoId: repo.id, parentJobId: queued.id })).toEqual([{ pointer: '/parentJobId', message: 'cancelled: it has no change to continue' }]);

    const silent = await agent.succeed({ repoId: repo.id }, undefined);
    expect(await refusal({ repoId: repo.id, parentJobId: silent.jobId })).toEqual([{ pointer: '/parentJobId', message: 'succeeded without reporting a change (its agent reports none)' }]);
    const local = await agent.succeed({ repoId: repo.id }, changeOf({ branch: 'agent-jobs/local', pushed: false }));
    expect(await refusal({ repoId: repo.id, parentJobId: local.jobId })).toEqual([{ pointer: '/parentJobId', message: 'its change was not pushed (branch agent-jobs/local is on its agent only)' }]);

    const parent = await agent.succeed({ repoId: repo.id }, changeOf());
    expect((await refusal({ repoId: other.id, parentJobId: parent.jobId }))?.[0]?.message).toBe('belongs to another repository');
    const rework = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: parent.jobId, labels: ['nobody-has-this'] });
    expect(rework).toMatchObject({ queueType: 'rework', parentJobId: parent.jobId, status: 'queued', change: null });
    // Two reworks of one change would both push onto its branch: the second must build on the first.
    expect(await refusal({ repoId: repo.id, parentJobId: parent.jobId })).toEqual([{ pointer: '/parentJobId', message: `job ${rework.id} (queued) continues it; rework that one instead` }]);
    await cancelQueuedJob(org.member, org.orgId, rework.id);
    // A rework that ended without moving the branch leaves the parent's change free to rework again.
    expect((await attempt({ repoId: repo.id, parentJobId: parent.jobId })).response.status).toBe(201);

    const backlogWithParent = await org.member.POST('/v1/orgs/{orgId}/jobs', {
      params: { path: { orgId: org.orgId } },
      body: { prompt: 'x', queueType: 'backlog', repoId: repo.id, parentJobId: parent.jobId } as never,
    });
    expect(backlogWithParent.response.status).toBe(400);
  });

  it('gives a rework job its parent\'s labels unless it names its own', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const agent = await scriptedAgent(t, org, clients, ['gpu', 'team:web']);
    const parents = [];
    for (let i = 0; i < 2; i++) parents.push(await agent.succeed({ repoId: repo.id, labels: ['gpu', 'team:web'] }, changeOf()));
    const inherited = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: parents[0]!.jobId });
    expect(inherited.labels).toEqual(['gpu', 'team:web']);
    const none = await createJob(org.member, org.orgId, { repoId: repo.id, queueType: 'rework', parentJobId: parents[1]!.jobId, labels: [] });
    expect(none.labels).toEqual([]);
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
});
