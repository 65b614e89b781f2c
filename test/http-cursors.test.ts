// A list's cursor is good for the listing that issued it only: another organisation's cursor, a cursor
// of other filters or of another list, one edited by hand or one the server never issued is a 400 at
// /query/cursor, never a page positioned by a foreign row. This file is the one home of refused cursors,
// for every listing of openapi.yaml that takes one (jobs and repositories); the year-9999 bound is in
// http-hostile-input.test.ts.
import { randomUUID } from 'node:crypto';
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

  it.each(['jobs', 'repositories'])('refuses a cursor it never issued, or one edited by hand, when listing %s', async (list) => {
    const org = await listedOrg();
    const pathname = `/v1/orgs/${org.orgId}/${list}`;
    const issued = await org.nextCursor(`${pathname}?limit=1`);
    // Edited by hand to point at another row: the position says another id, the check appended to it
    // (its last 22 characters) is kept, and no longer matches.
    const position = Buffer.from(issued.slice(0, -22), 'base64url').toString('utf8');
    expect(position).toMatch(/[0-9a-f-]{36}/);
    const edited = `${Buffer.from(position.replace(/[0-9a-f-]{36}/, randomUUID()), 'utf8').toString('base64url')}${issued.slice(-22)}`;
    const forged = [
      edited,
      'not-a-cursor',
      'forged',
      Buffer.from('not a cursor').toString('base64url'),
      Buffer.from('1700000000000.not-a-uuid').toString('base64url'),
      Buffer.from(`${Date.now()}.${randomUUID()}.extra`).toString('base64url'),
      Buffer.from(`${randomUUID()}.`).toString('base64url'),
      'abc!',
      '%00',
    ];
    for (const cursor of forged) {
      const problem = await expectProblem(await org.get(`${pathname}?limit=1&cursor=${encodeURIComponent(cursor)}`), 400, 'invalid_argument');
      expect(problem.errors, cursor).toEqual([{ pointer: '/query/cursor', message: expect.any(String) }]);
    }
    // The cursor as issued is still taken.
    expect((await org.get(`${pathname}?limit=1&cursor=${issued}`)).status).toBe(200);
  });

  it('refuses a cursor with other filters, or of another list, and takes it back with the same filters at any page size', async () => {
    const org = await listedOrg();
    const jobs = `/v1/orgs/${org.orgId}/jobs`;
    const filtered = await org.nextCursor(`${jobs}?limit=1&status=queued&repoId=${org.repos[0]!.id}`);
    for (const query of ['status=running', `status=queued&repoId=${org.repos[1]!.id}`, 'status=queued', '']) {
      await expectProblem(await org.get(`${jobs}?limit=1&cursor=${filtered}&${query}`), 400, 'invalid_argument');
    }
    await expectProblem(await org.get(`/v1/orgs/${org.orgId}/repositories?cursor=${filtered}`), 400, 'invalid_argument');
    const ofRepositories = await org.nextCursor(`/v1/orgs/${org.orgId}/repositories?limit=1`);
    await expectProblem(await org.get(`${jobs}?cursor=${ofRepositories}`), 400, 'invalid_argument');
    const samePage = await org.get(`${jobs}?limit=5&repoId=${org.repos[0]!.id.toUpperCase()}&status=queued&cursor=${filtered}`);
    expect(samePage.status).toBe(200);
    expect(((await samePage.json()) as { items: unknown[] }).items).toHaveLength(2);
  });
});
