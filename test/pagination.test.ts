// Paging through lists: jobs newest first and repositories by name, a page at a time, joined by an
// opaque cursor, on PostgreSQL and on PGlite.
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentJobsClient, paths } from '../generated/sdk/index.js';
import { cancelQueuedJob, createJob, createOrg, createRepository, type Job, type Repository } from './support/factories.js';
import { reworkableJob } from './support/scripted-change.js';
import { drivers, useTestSystem } from './support/system.js';

type JobListQuery = NonNullable<paths['/v1/orgs/{orgId}/jobs']['get']['parameters']['query']>;
type JobFilter = Omit<JobListQuery, 'cursor'>;

/** The order the API promises for jobs: newest first, the id breaking ties between equal times. */
const newestFirst = (a: Job, b: Job) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id);

/** Submits `count` jobs, a few at a time, and returns them in submission order. */
async function submitJobs(client: AgentJobsClient, orgId: string, count: number, body: Parameters<typeof createJob>[2]): Promise<Job[]> {
  const jobs: Job[] = [];
  for (let i = 0; i < count; i += 8) {
    const batch = Array.from({ length: Math.min(8, count - i) }, (_, k) => createJob(client, orgId, { prompt: `job ${i + k}`, ...body }));
    jobs.push(...(await Promise.all(batch)));
  }
  return jobs;
}

/**
 * Follows nextCursor from the first page to the last, as a client would. `between` runs after each
 * page that has a successor, before that successor is asked for.
 */
async function walkJobs(client: AgentJobsClient, orgId: string, query: JobFilter, between?: () => Promise<void>) {
  const pages: { items: Job[]; nextCursor: string | null }[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data, error, response } = await client.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId }, query: { ...query, ...(cursor ? { cursor } : {}) } } });
    expect(error, JSON.stringify(error)).toBeUndefined();
    expect(response.status).toBe(200);
    pages.push(data!);
    if (data!.nextCursor === null) break;
    expect(pages.length, 'more pages than there are jobs: the cursor does not advance').toBeLessThan(500);
    cursor = data!.nextCursor;
    await between?.();
  }
  return { pages, items: pages.flatMap((p) => p.items) };
}

async function walkRepositories(client: AgentJobsClient, orgId: string, limit: number) {
  const pages: { items: Repository[]; nextCursor: string | null }[] = [];
  let cursor: string | undefined;
  for (;;) {
    const { data, error } = await client.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId }, query: { limit, ...(cursor ? { cursor } : {}) } } });
    expect(error, JSON.stringify(error)).toBeUndefined();
    pages.push(data!);
    if (data!.nextCursor === null) break;
    expect(pages.length, 'more pages than there are repositories: the cursor does not advance').toBeLessThan(500);
    cursor = data!.nextCursor;
  }
  return { pages, items: pages.flatMap((p) => p.items) };
}

const ids = (items: readonly { id: string }[]) => items.map((item) => item.id);

describe.each(drivers)('pagination on %s', (driver) => {
  const t = useTestSystem({ driver });

  describe('jobs', () => {
    it('lists jobs newest first, one page at a time, joined by an opaque cursor, the last page with nextCursor null', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const submitted: Job[] = [];
      for (let i = 0; i < 12; i++) submitted.push(await createJob(org.member, org.orgId, { repoId: repo.id, prompt: `job ${i}` }));
      // Submitted one after the other, so each is at least as new as the one before.
      const times = submitted.map((j) => j.createdAt);
      expect(times).toEqual([...times].sort());

      const list = (cursor?: string) => org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { limit: 5, ...(cursor ? { cursor } : {}) } } });
      const first = await list();
      expect(ids(first.data!.items)).toEqual(ids([...submitted].sort(newestFirst).slice(0, 5)));
      expect(first.data!.items[0]?.id).toBe([...submitted].sort(newestFirst)[0]?.id);
      const cursor = first.data!.nextCursor;
      expect(cursor).toEqual(expect.any(String));
      // Opaque: it names no job and no time a client could edit.
      for (const job of first.data!.items) expect(cursor).not.toContain(job.id);
      expect(cursor).not.toContain(first.data!.items.at(-1)!.createdAt);

      const second = await list(cursor!);
      expect(ids(second.data!.items)).toEqual(ids([...submitted].sort(newestFirst).slice(5, 10)));
      const third = await list(second.data!.nextCursor!);
      expect(ids(third.data!.items)).toEqual(ids([...submitted].sort(newestFirst).slice(10)));
      expect(third.data!.nextCursor).toBeNull();
    });

    it('returns every job exactly once across the pages, with no empty page after a full last one', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const submitted = await submitJobs(org.member, org.orgId, 21, { repoId: repo.id });
      const expected = ids([...submitted].sort(newestFirst));

      for (const [limit, sizes] of [
        [7, [7, 7, 7]],
        [5, [5, 5, 5, 5, 1]],
        [21, [21]],
        [200, [21]],
      ] as const) {
        const { pages, items } = await walkJobs(org.member, org.orgId, { limit });
        expect(pages.map((p) => p.items.length), `limit ${limit}`).toEqual(sizes);
        expect(ids(items), `limit ${limit}`).toEqual(expected);
        expect(pages.at(-1)!.nextCursor).toBeNull();
      }

      const { pages, items } = await walkJobs(org.member, org.orgId, { limit: 1 });
      expect(pages).toHaveLength(21);
      expect(ids(items)).toEqual(expected);
    });

    it('keeps its place while jobs are submitted during the walk: no earlier job missed or repeated, no id twice', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const existing = await submitJobs(org.member, org.orgId, 32, { repoId: repo.id, prompt: 'before the walk' });

      // Some submissions race the whole walk; two more land between every pair of pages for certain.
      const racing = Promise.all(Array.from({ length: 12 }, (_, i) => createJob(org.member, org.orgId, { repoId: repo.id, prompt: `racing ${i}` })));
      const during: Job[] = [];
      const { pages, items } = await walkJobs(org.member, org.orgId, { limit: 7 }, async () => {
        during.push(await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'between pages' }));
        during.push(await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'between pages' }));
      });
      during.push(...(await racing));

      expect(pages.length).toBeGreaterThanOrEqual(5);
      expect(during.length).toBeGreaterThanOrEqual(12 + 8);
      const seen = ids(items);
      expect(new Set(seen).size, 'an id appeared on two pages').toBe(seen.length);
      for (const job of existing) expect(seen.filter((id) => id === job.id), `job ${job.id} submitted before the walk`).toHaveLength(1);
      const known = new Set([...ids(existing), ...ids(during)]);
      for (const id of seen) expect(known.has(id)).toBe(true);
      // Each page is still newest first.
      for (const page of pages) expect(ids(page.items)).toEqual(ids([...page.items].sort(newestFirst)));
    });

    it('pages 50 jobs by default and at most 200, refusing a limit outside 1..200', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      await submitJobs(org.member, org.orgId, 52, { repoId: repo.id });
      const list = (query: JobListQuery) => org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query } });

      const byDefault = await list({});
      expect(byDefault.data?.items).toHaveLength(50);
      expect(byDefault.data?.nextCursor).toEqual(expect.any(String));
      const rest = await list({ cursor: byDefault.data!.nextCursor! });
      expect(rest.data?.items).toHaveLength(2);
      expect(rest.data?.nextCursor).toBeNull();

      const widest = await list({ limit: 200 });
      expect(widest.data?.items).toHaveLength(52);
      expect(widest.data?.nextCursor).toBeNull();
      expect((await list({ limit: 1 })).data?.items).toHaveLength(1);

      for (const limit of [0, -1, 201, 1000]) {
        const { error, response } = await list({ limit });
        expect(response.status, `limit ${limit}`).toBe(400);
        expect(error?.code).toBe('invalid_argument');
        expect(error?.errors?.[0]?.pointer).toBe('/query/limit');
      }
      const notANumber = await t.fetch(`/v1/orgs/${org.orgId}/jobs?limit=ten`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
      expect(notANumber.status).toBe(400);
    });

    describe('with filters', () => {
      let org: Awaited<ReturnType<typeof createOrg>>;
      let repoA: Repository;
      let repoB: Repository;
      let all: Job[];

      beforeAll(async () => {
        org = await createOrg(t);
        [repoA, repoB] = await Promise.all([createRepository(org.admin, org.orgId, { name: 'filter-a' }), createRepository(org.admin, org.orgId, { name: 'filter-b' })]);
        // Four jobs of A that succeeded with a change, first (before anything else queues): one to rework each.
        const parents: string[] = [];
        for (let i = 0; i < 4; i++) parents.push(await reworkableJob(t, org, repoA.id));
        const inA = await submitJobs(org.member, org.orgId, 7, { repoId: repoA.id, prompt: 'in A' });
        const inB = await submitJobs(org.member, org.orgId, 4, { repoId: repoB.id, prompt: 'in B' });
        await Promise.all([inA[0]!, inA[2]!, inA[4]!, inB[1]!].map((job) => cancelQueuedJob(org.member, org.orgId, job.id)));
        // Reworks of those, one to be cancelled in turn.
        const rework = await Promise.all(parents.map((parentJobId) => createJob(org.member, org.orgId, { repoId: repoA.id, queueType: 'rework', parentJobId, prompt: 'rework in A' })));
        await cancelQueuedJob(org.member, org.orgId, rework[3]!.id);

        const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { limit: 200 } } });
        all = data!.items;
        expect(all).toHaveLength(19);
        expect(all.filter((j) => j.status === 'cancelled')).toHaveLength(5);
      });

      const cases: { name: string; query: () => JobFilter; matches: (job: Job) => boolean; count: number }[] = [
        { name: 'one status', query: () => ({ status: ['cancelled'], limit: 2 }), matches: (j) => j.status === 'cancelled', count: 5 },
        { name: 'any of several statuses', query: () => ({ status: ['queued', 'cancelled'], limit: 4 }), matches: (j) => j.status === 'queued' || j.status === 'cancelled', count: 15 },
        { name: 'a status that no job has', query: () => ({ status: ['running', 'timed_out'], limit: 3 }), matches: (j) => j.status === 'running' || j.status === 'timed_out', count: 0 },
        { name: 'queue type', query: () => ({ queueType: 'rework', limit: 3 }), matches: (j) => j.queueType === 'rework', count: 4 },
        { name: 'repository', query: () => ({ repoId: repoB.id, limit: 3 }), matches: (j) => j.repoId === repoB.id, count: 4 },
        {
          name: 'repository, queue type and status together',
          query: () => ({ repoId: repoA.id, queueType: 'backlog', status: ['queued'], limit: 2 }),
          matches: (j) => j.repoId === repoA.id && j.queueType === 'backlog' && j.status === 'queued',
          count: 4,
        },
        { name: 'repository and status', query: () => ({ repoId: repoA.id, status: ['cancelled', 'queued'], limit: 3 }), matches: (j) => j.repoId === repoA.id && (j.status === 'cancelled' || j.status === 'queued'), count: 11 },
        { name: 'repository and a queue it has no job in', query: () => ({ repoId: repoB.id, queueType: 'rework', limit: 3 }), matches: (j) => j.repoId === repoB.id && j.queueType === 'rework', count: 0 },
      ];

      it.each(cases)('pages through the jobs of $name, newest first, each once', async ({ query, matches, count }) => {
        const q = query();
        const { pages, items } = await walkJobs(org.member, org.orgId, q);
        const expected = all.filter(matches);
        expect(expected).toHaveLength(count);
        expect(ids(items)).toEqual(ids(expected));
        for (const page of pages) expect(page.items.length).toBeLessThanOrEqual(q.limit!);
        expect(pages).toHaveLength(Math.max(1, Math.ceil(count / q.limit!)));
        expect(pages.at(-1)!.nextCursor).toBeNull();
      });

      it('sends the status filter as a repeated query parameter', async () => {
        const response = await t.fetch(`/v1/orgs/${org.orgId}/jobs?status=queued&status=cancelled&limit=200`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
        expect(response.status).toBe(200);
        const body = (await response.json()) as { items: Job[] };
        expect(body.items).toHaveLength(15);
        const unknown = await t.fetch(`/v1/orgs/${org.orgId}/jobs?status=stuck`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
        expect(unknown.status).toBe(400);
      });
    });
  });

  describe('repositories', () => {
    it('lists repositories by name, one page at a time, each once, the last page with nextCursor null', async () => {
      const org = await createOrg(t);
      // Registered out of order; names that sort the same under any collation.
      const names = ['repo-d', 'repo-a', 'repo-g', 'repo-c', 'repo-f', 'repo-b', 'repo-e'];
      for (const name of names) await createRepository(org.admin, org.orgId, { name });
      const byName = [...names].sort();

      const { pages, items } = await walkRepositories(org.member, org.orgId, 3);
      expect(pages.map((p) => p.items.length)).toEqual([3, 3, 1]);
      expect(items.map((r) => r.name)).toEqual(byName);
      expect(pages.at(-1)!.nextCursor).toBeNull();

      const exact = await walkRepositories(org.member, org.orgId, 7);
      expect(exact.pages).toHaveLength(1);
      expect(exact.items.map((r) => r.name)).toEqual(byName);

      const one = await walkRepositories(org.member, org.orgId, 1);
      expect(one.items.map((r) => r.name)).toEqual(byName);
    });

    it('keeps its place when a repository is registered during the walk', async () => {
      const org = await createOrg(t);
      for (const name of ['walk-b', 'walk-d', 'walk-f', 'walk-h']) await createRepository(org.admin, org.orgId, { name });
      const first = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId }, query: { limit: 2 } } });
      expect(first.data!.items.map((r) => r.name)).toEqual(['walk-b', 'walk-d']);
      // One that sorts before the cursor and one after it.
      await createRepository(org.admin, org.orgId, { name: 'walk-a' });
      await createRepository(org.admin, org.orgId, { name: 'walk-e' });
      const rest: string[] = [];
      let cursor = first.data!.nextCursor;
      while (cursor) {
        const { data } = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId }, query: { limit: 2, cursor } } });
        rest.push(...data!.items.map((r) => r.name));
        cursor = data!.nextCursor;
      }
      expect(rest).toEqual(['walk-e', 'walk-f', 'walk-h']);
    });

    it('pages 50 repositories by default and refuses a limit outside 1..200', async () => {
      const org = await createOrg(t);
      for (let i = 0; i < 51; i += 17) await Promise.all(Array.from({ length: 17 }, () => createRepository(org.admin, org.orgId)));
      const { data } = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } } });
      expect(data?.items).toHaveLength(50);
      expect(data?.nextCursor).not.toBeNull();
      const rest = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId }, query: { cursor: data!.nextCursor! } } });
      expect(rest.data).toMatchObject({ nextCursor: null });
      expect(rest.data?.items).toHaveLength(1);
      for (const limit of [0, 201]) {
        const { error, response } = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId }, query: { limit } } });
        expect(response.status).toBe(400);
        expect(error?.errors?.[0]?.pointer).toBe('/query/limit');
      }
    });
  });
});
