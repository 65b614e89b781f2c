// Registering, reading and deleting an organisation's repositories through the API, on PostgreSQL and on PGlite;
// the one home of the taken-name 409. Role and tenancy refusals are in contract-statuses.test.ts.
import { describe, expect, it } from 'vitest';
import type { AgentJobsClient } from '../generated/sdk/index.js';
import { cancelQueuedJob, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { drivers, useTestSystem } from './support/system.js';

const get = (client: AgentJobsClient, orgId: string, repoId: string) => client.GET('/v1/orgs/{orgId}/repositories/{repoId}', { params: { path: { orgId, repoId } } });
const remove = (client: AgentJobsClient, orgId: string, repoId: string) => client.DELETE('/v1/orgs/{orgId}/repositories/{repoId}', { params: { path: { orgId, repoId } } });
const listNames = async (client: AgentJobsClient, orgId: string) => {
  const { data } = await client.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId }, query: { limit: 200 } } });
  return data!.items.map((r) => r.name);
};

describe.each(drivers)('repositories on %s', (driver) => {
  const t = useTestSystem({ driver });

  describe('registering', () => {
    it('lets an Admin register a repository: 201 with a Location that leads to it, default branch "main"', async () => {
      const org = await createOrg(t);
      const { data, response } = await org.admin.POST('/v1/orgs/{orgId}/repositories', {
        params: { path: { orgId: org.orgId } },
        body: { name: 'billing', cloneUrl: 'git@github.com:acme/billing.git' },
      });
      expect(response.status).toBe(201);
      expect(data).toMatchObject({ orgId: org.orgId, name: 'billing', cloneUrl: 'git@github.com:acme/billing.git', defaultBranch: 'main' });
      expect(response.headers.get('location')).toBe(`/v1/orgs/${org.orgId}/repositories/${data!.id}`);

      const followed = await t.fetch(response.headers.get('location')!, { headers: { authorization: `Bearer ${org.tokens.member}` } });
      expect(followed.status).toBe(200);
      expect(await followed.json()).toEqual(data);
    });

    it('keeps the default branch it is given', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId, { defaultBranch: 'develop', cloneUrl: 'https://github.com/acme/web-app.git' });
      expect(repo).toMatchObject({ defaultBranch: 'develop', cloneUrl: 'https://github.com/acme/web-app.git' });
    });

    it('refuses a name taken in the same organisation with 409, and nothing changes', async () => {
      const org = await createOrg(t);
      const first = await createRepository(org.admin, org.orgId, { name: 'web-app' });
      const { error, response } = await org.admin.POST('/v1/orgs/{orgId}/repositories', {
        params: { path: { orgId: org.orgId } },
        body: { name: 'web-app', cloneUrl: 'https://github.com/acme/other.git' },
      });
      expect(response.status).toBe(409);
      expect(error).toMatchObject({ code: 'already_exists', type: 'urn:agent-jobs:problem:already-exists', errors: [{ pointer: '/name', message: 'is already taken' }] });
      expect(error?.detail).toContain('web-app');
      expect((await get(org.member, org.orgId, first.id)).data).toEqual(first);
      expect(await listNames(org.member, org.orgId)).toEqual(['web-app']);
    });

    it('registers a name only once when two admins claim it at the same moment', async () => {
      const org = await createOrg(t);
      const claim = (client: AgentJobsClient, cloneUrl: string) =>
        client.POST('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } }, body: { name: 'contested', cloneUrl } });
      const answers = await Promise.all([claim(org.admin, 'https://github.com/acme/a.git'), claim(org.owner, 'https://github.com/acme/b.git'), claim(org.admin, 'https://github.com/acme/c.git')]);
      expect(answers.map((a) => a.response.status).sort()).toEqual([201, 409, 409]);
      const winner = answers.find((a) => a.response.status === 201)!.data!;
      const { data } = await org.member.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } } });
      expect(data?.items).toEqual([winner]);
    });

    it('allows the same name in another organisation', async () => {
      const mine = await createOrg(t);
      const theirs = await createOrg(t);
      const a = await createRepository(mine.admin, mine.orgId, { name: 'web-app' });
      const b = await createRepository(theirs.admin, theirs.orgId, { name: 'web-app' });
      expect(a.id).not.toBe(b.id);
      expect(await listNames(mine.member, mine.orgId)).toEqual(['web-app']);
      expect(await listNames(theirs.member, theirs.orgId)).toEqual(['web-app']);
    });

    it('refuses an invalid name or clone URL with 400 pointing at the field', async () => {
      const org = await createOrg(t);
      const attempt = (body: { name: string; cloneUrl: string }) => org.admin.POST('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } }, body });
      const badName = await attempt({ name: 'has spaces', cloneUrl: 'https://github.com/acme/x.git' });
      expect(badName.response.status).toBe(400);
      expect(badName.error?.errors?.[0]?.pointer).toBe('/name');
      const badUrl = await attempt({ name: 'fine', cloneUrl: 'not a url' });
      expect(badUrl.response.status).toBe(400);
      expect(badUrl.error?.errors?.[0]?.pointer).toBe('/cloneUrl');
      expect(await listNames(org.admin, org.orgId)).toEqual([]);
    });
  });

  describe('reading', () => {
    it('lets anyone in the organisation list and get it', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId, { name: 'shared' });
      for (const client of [org.member, org.admin, org.owner]) {
        const { data, response } = await get(client, org.orgId, repo.id);
        expect(response.status).toBe(200);
        expect(data).toEqual(repo);
        const list = await client.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } } });
        expect(list.data).toEqual({ items: [repo], nextCursor: null });
      }
    });

  });

  describe('deleting', () => {
    it('deletes with 204: the repository is gone from get and list, and its name is free again', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId, { name: 'retired' });
      const kept = await createRepository(org.admin, org.orgId, { name: 'kept' });

      const { response } = await remove(org.admin, org.orgId, repo.id);
      expect(response.status).toBe(204);

      const after = await get(org.member, org.orgId, repo.id);
      expect(after.response.status).toBe(404);
      expect(after.error?.code).toBe('not_found');
      expect(await listNames(org.member, org.orgId)).toEqual(['kept']);
      expect((await remove(org.admin, org.orgId, repo.id)).response.status).toBe(404);

      const again = await createRepository(org.admin, org.orgId, { name: 'retired' });
      expect(again.id).not.toBe(repo.id);
      expect((await get(org.member, org.orgId, again.id)).data).toEqual(again);
      expect(await listNames(org.member, org.orgId)).toEqual(['kept', 'retired']);
      expect((await get(org.member, org.orgId, kept.id)).data).toEqual(kept);
    });

    it('takes no new jobs once deleted', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      await remove(org.admin, org.orgId, repo.id);
      const { error, response } = await org.member.POST('/v1/orgs/{orgId}/jobs', {
        params: { path: { orgId: org.orgId } },
        body: { prompt: 'too late', queueType: 'backlog', repoId: repo.id },
      });
      expect(response.status).toBe(404);
      expect(error?.code).toBe('not_found');
    });

    it('refuses with 409 while the repository has a queued job, and changes nothing', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const job = await createJob(org.member, org.orgId, { repoId: repo.id });

      const { error, response } = await remove(org.admin, org.orgId, repo.id);
      expect(response.status).toBe(409);
      expect(error).toMatchObject({ code: 'conflict', type: 'urn:agent-jobs:problem:conflict' });

      expect((await get(org.member, org.orgId, repo.id)).data).toEqual(repo);
      expect(await listNames(org.member, org.orgId)).toEqual([repo.name]);
      const still = await waitForJob(org.member, org.orgId, job.id, () => true);
      expect(still).toMatchObject({ status: 'queued', repoId: repo.id, cancelRequestedAt: null });
      expect(still.events.map((e) => e.type)).toEqual(['created']);
    });

    it('deletes once its job is cancelled, and the job stays readable', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'outlive my repository' });
      expect((await remove(org.admin, org.orgId, repo.id)).response.status).toBe(409);

      const cancelled = await cancelQueuedJob(org.member, org.orgId, job.id);
      const { response } = await remove(org.admin, org.orgId, repo.id);
      expect(response.status).toBe(204);

      const { data, response: read } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: org.orgId, jobId: job.id } } });
      expect(read.status).toBe(200);
      expect(data).toEqual(cancelled);
      expect(data).toMatchObject({ repoId: repo.id, status: 'cancelled', prompt: 'outlive my repository' });
      const listed = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } } });
      expect(listed.data?.items.map((j) => j.id)).toEqual([job.id]);
    });

    it('never leaves an unfinished job behind a deleted repository, however submissions and the delete interleave', async () => {
      const org = await createOrg(t);
      for (let round = 0; round < 12; round++) {
        const repo = await createRepository(org.admin, org.orgId);
        const submissions = Array.from({ length: 6 }, (_, i) =>
          org.member.POST('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } }, body: { prompt: `race ${i}`, queueType: 'backlog', repoId: repo.id } }),
        );
        const [deletion, ...submitted] = await Promise.all([remove(org.admin, org.orgId, repo.id), ...submissions]);
        for (const s of submitted) expect([201, 404]).toContain(s.response.status);
        const accepted = submitted.filter((s) => s.response.status === 201).map((s) => s.data!.id);

        if (deletion.response.status === 204) {
          // A submission that got in first would have made the delete refuse; one after it must be refused itself.
          expect(accepted, `repository ${repo.id} was deleted with queued jobs`).toEqual([]);
        } else {
          expect(deletion.response.status).toBe(409);
          expect(accepted.length).toBeGreaterThan(0);
          expect((await get(org.member, org.orgId, repo.id)).response.status).toBe(200);
        }
      }
    });
  });
});
