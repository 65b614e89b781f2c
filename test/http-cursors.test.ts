// A list's cursor is good for the listing that issued it only: another organisation's cursor, a cursor
// of other filters or of another list is a 400 at /query/cursor, never a page positioned by a foreign row.
import { describe, expect, it } from 'vitest';
import { createJob, createOrg, createRepository } from './support/factories.js';
import { expectProblem } from './support/problems.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('cursors bound to what issued them, on %s', (driver) => {
  const t = useTestSystem({ driver });

  /** An organisation with three repositories and three queued jobs, listed one per page. */
  async function listedOrg() {
    const org = await createOrg(t);
    const repos = [];
    for (const name of ['a-web', 'b-api', 'c-cli']) repos.push(await createRepository(org.admin, org.orgId, { name }));
    for (let i = 0; i < 3; i++) await createJob(org.member, org.orgId, { repoId: repos[0]!.id });
    const get = (pathname: string) => t.fetch(pathname, { headers: { authorization: `Bearer ${org.tokens.owner}` } });
    const nextCursor = async (pathname: string) => {
      const response = await get(pathname);
      expect(response.status).toBe(200);
      return ((await response.json()) as { nextCursor: string }).nextCursor;
    };
    return { ...org, repos, get, nextCursor };
  }

  it("refuses another organisation's cursor, for jobs and for repositories", async () => {
    const [mine, theirs] = [await listedOrg(), await listedOrg()];
    for (const list of ['jobs', 'repositories']) {
      const foreign = await theirs.nextCursor(`/v1/orgs/${theirs.orgId}/${list}?limit=1`);
      const problem = await expectProblem(await mine.get(`/v1/orgs/${mine.orgId}/${list}?limit=1&cursor=${foreign}`), 400, 'invalid_argument');
      expect(problem.errors).toEqual([{ pointer: '/query/cursor', message: 'is not a valid cursor' }]);
    }
  });

  it('refuses a cursor with other filters, or of another list, and takes it back with the same filters at any page size', async () => {
    const org = await listedOrg();
    const jobs = `/v1/orgs/${org.orgId}/jobs`;
    const filtered = await org.nextCursor(`${jobs}?limit=1&status=queued&repoId=${org.repos[0]!.id}`);
    for (const query of ['status=running', `status=queued&repoId=${org.repos[1]!.id}`, 'status=queued', '']) {
      await expectProblem(await org.get(`${jobs}?limit=1&cursor=${filtered}&${query}`), 400, 'invalid_argument');
    }
    await expectProblem(await org.get(`/v1/orgs/${org.orgId}/repositories?cursor=${filtered}`), 400, 'invalid_argument');
    const samePage = await org.get(`${jobs}?limit=5&repoId=${org.repos[0]!.id.toUpperCase()}&status=queued&cursor=${filtered}`);
    expect(samePage.status).toBe(200);
    expect(((await samePage.json()) as { items: unknown[] }).items).toHaveLength(2);
  });
});
