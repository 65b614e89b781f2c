// Bad input of any kind gets a 4xx problem that says what is wrong, never a 500, and changes nothing
// stored; on PostgreSQL and on PGlite.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createOrg, createPopulatedOrg, createRepository, storedState } from './support/factories.js';
import { expectProblem, pointers } from './support/problems.js';
import { drivers, dropTestDatabases, startTestSystem, type TestSystem, useTestSystem } from './support/system.js';

describe.each(drivers)('bad input on %s', (driver) => {
  const t = useTestSystem({ driver });

  /** An organisation with a repository and one queued job, so "nothing changed" has something to compare. */
  async function populatedOrg() {
    const org = await createPopulatedOrg(t);
    const raw = (method: string, path: string, body?: string, contentType = 'application/json') =>
      t.fetch(path, {
        method,
        headers: { authorization: `Bearer ${org.tokens.owner}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
        ...(body !== undefined ? { body } : {}),
      });
    /** Submits `body` as it is, JSON-encoded unless it is already a string. */
    const submit = (body: unknown, contentType?: string) => raw('POST', `/v1/orgs/${org.orgId}/jobs`, typeof body === 'string' ? body : JSON.stringify(body), contentType);
    return { ...org, raw, submit, stored: () => storedState(org.owner, org.orgId) };
  }
  type Org = Awaited<ReturnType<typeof populatedOrg>>;

  /** Runs `request`, expects the problem, and checks the organisation's rows are as they were. */
  async function refusedAndNothingStored(org: Org, request: () => Promise<Response>, status: number, code: Parameters<typeof expectProblem>[2]) {
    const before = await org.stored();
    const problem = await expectProblem(await request(), status, code);
    expect(await org.stored()).toEqual(before);
    return problem;
  }

  describe('request bodies that are not a JSON object', () => {
    it.each([
      ['JSON cut short', '{"prompt": "Fix it", '],
      ['a trailing comma', '{"prompt": "Fix it",}'],
      ['single quotes', "{'prompt': 'Fix it'}"],
      ['an empty body', ''],
      ['a JSON array', '[]'],
      ['an array of the right object', '[{"prompt": "Fix it", "queueType": "backlog"}]'],
      ['a JSON string', '"Fix it"'],
      ['a JSON number', '42'],
      ['JSON null', 'null'],
      ['a prototype-poisoning key', '{"__proto__": {"admin": true}, "prompt": "Fix it", "queueType": "backlog"}'],
      ['a constructor-prototype key', '{"constructor": {"prototype": {"admin": true}}, "prompt": "Fix it", "queueType": "backlog"}'],
    ])('refuses %s with 400 invalid_argument, and stores nothing', async (_, body) => {
      const org = await populatedOrg();
      await refusedAndNothingStored(org, () => org.submit(body), 400, 'invalid_argument');
    });
  });

  describe('job submissions that break the schema', () => {
    const valid = (org: Org) => ({ prompt: 'Fix the flaky test', repoId: org.repo.id, queueType: 'backlog' });

    it('points at each field of the wrong type: a number for the prompt, a string for maxAttempts', async () => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({ ...valid(org), prompt: 5, maxAttempts: '3' }), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual(expect.arrayContaining(['/prompt', '/maxAttempts']));
      expect(problem.errors?.every((e) => e.message.length > 0)).toBe(true);
    });

    it('points at an unknown field rather than dropping it', async () => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({ ...valid(org), bogus: true }), 400, 'invalid_argument');
      expect(problem.errors).toEqual([{ pointer: '/bogus', message: 'is not a known field' }]);
    });

    it('points at every missing required field', async () => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({}), 400, 'invalid_argument');
      expect(pointers(problem).sort()).toEqual(['/prompt', '/queueType', '/repoId']);
      const onlyPrompt = await refusedAndNothingStored(org, () => org.submit({ prompt: 'Fix it' }), 400, 'invalid_argument');
      expect(pointers(onlyPrompt).sort()).toEqual(['/queueType', '/repoId']);
    });

    it.each([
      ['an empty prompt', ''],
      ['a whitespace-only prompt', ' \t\n  '],
      ['a prompt of 100001 characters', 'x'.repeat(100_001)],
    ])('refuses %s, pointing at /prompt', async (_, prompt) => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({ ...valid(org), prompt }), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual(['/prompt']);
    });

    it('accepts a prompt of exactly 100000 characters, the longest there is', async () => {
      const org = await populatedOrg();
      const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, prompt: 'x'.repeat(100_000) });
      expect(job.prompt).toHaveLength(100_000);
    });

    it.each([
      ['an unknown queue type', { queueType: 'urgent' }, '/queueType'],
      ['a repository id that is not a uuid', { repoId: 'web-app' }, '/repoId'],
      ['zero attempts', { maxAttempts: 0 }, '/maxAttempts'],
      ['eleven attempts', { maxAttempts: 11 }, '/maxAttempts'],
      ['a fractional attempt count', { maxAttempts: 2.5 }, '/maxAttempts'],
      ['a grace period of zero seconds', { cancelGraceSeconds: 0 }, '/cancelGraceSeconds'],
      ['labels that are not an array', { labels: 'frontend' }, '/labels'],
      ['a label in capitals', { labels: ['Frontend'] }, '/labels/0'],
      ['the same label twice', { labels: ['web', 'web'] }, '/labels'],
      ['a parent job on a backlog job', { parentJobId: randomUUID() }, '/parentJobId'],
    ])('refuses %s, pointing at the field', async (_, change, pointer) => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({ ...valid(org), ...change }), 400, 'invalid_argument');
      expect(pointers(problem)).toContain(pointer);
    });

    it('refuses a number too large for any integer, pointing at the field', async () => {
      const org = await populatedOrg();
      // JSON.stringify cannot write 1e400; a client's hand-written JSON can.
      const body = `{"prompt": "Fix it", "repoId": "${org.repo.id}", "queueType": "backlog", "maxAttempts": 1e400}`;
      const problem = await refusedAndNothingStored(org, () => org.submit(body), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual(['/maxAttempts']);
    });
  });

  describe('text the database cannot hold', () => {
    // PostgreSQL text has no NUL character; a request carrying one must be refused, not fail in SQL.
    it('refuses a prompt with a NUL character with 400 pointing at /prompt', async () => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.submit({ prompt: 'Fix\u0000it', repoId: org.repo.id, queueType: 'backlog' }), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual(['/prompt']);
    });

    it('refuses a NUL character in a repository clone URL, a cancellation reason and an agent token name', async () => {
      const org = await populatedOrg();
      const cases: [string, string, unknown, string][] = [
        ['POST', `/v1/orgs/${org.orgId}/repositories`, { name: 'other', cloneUrl: 'https://git.example.test/a\u0000b.git' }, '/cloneUrl'],
        ['POST', `/v1/orgs/${org.orgId}/repositories`, { name: 'other', cloneUrl: 'https://git.example.test/a.git', defaultBranch: 'ma\u0000in' }, '/defaultBranch'],
        ['POST', `/v1/orgs/${org.orgId}/jobs/${org.job.id}/cancel`, { reason: 'no\u0000pe' }, '/reason'],
        ['POST', `/v1/orgs/${org.orgId}/agent-tokens`, { name: 'farm\u0000' }, '/name'],
        ['POST', `/v1/orgs/${org.orgId}/jobs`, { prompt: 'Fix it', repoId: org.repo.id, queueType: 'backlog', labels: ['ok', 'a\u0000'] }, '/labels/1'],
      ];
      for (const [method, path, body, pointer] of cases) {
        const problem = await refusedAndNothingStored(org, () => org.raw(method, path, JSON.stringify(body)), 400, 'invalid_argument');
        expect(pointers(problem), path).toContain(pointer);
      }
    });
  });

  describe('paths', () => {
    it('refuses a job id that is not a uuid with 400 pointing at /params/jobId', async () => {
      const org = await populatedOrg();
      for (const [method, suffix] of [['GET', ''], ['POST', '/cancel'], ['GET', '/logs'], ['GET', '/logs/download']] as const) {
        const problem = await refusedAndNothingStored(org, () => org.raw(method, `/v1/orgs/${org.orgId}/jobs/not-a-uuid${suffix}`), 400, 'invalid_argument');
        expect(problem.errors, suffix).toEqual([{ pointer: '/params/jobId', message: expect.any(String) }]);
      }
    });

    it('refuses an organisation id that is not a uuid with 400 pointing at /params/orgId', async () => {
      const org = await populatedOrg();
      for (const [method, path, body] of [
        ['GET', '/v1/orgs/acme/jobs', undefined],
        ['POST', '/v1/orgs/acme/jobs', JSON.stringify({ prompt: 'Fix it', repoId: org.repo.id, queueType: 'backlog' })],
        ['GET', '/v1/orgs/acme/repositories', undefined],
      ] as const) {
        const problem = await refusedAndNothingStored(org, () => org.raw(method, path, body), 400, 'invalid_argument');
        expect(pointers(problem), path).toEqual(['/params/orgId']);
      }
    });

    it('refuses repository and agent token ids that are not uuids, pointing at the parameter', async () => {
      const org = await populatedOrg();
      const repo = await refusedAndNothingStored(org, () => org.raw('DELETE', `/v1/orgs/${org.orgId}/repositories/web-app`), 400, 'invalid_argument');
      expect(pointers(repo)).toEqual(['/params/repoId']);
      const token = await refusedAndNothingStored(org, () => org.raw('POST', `/v1/orgs/${org.orgId}/agent-tokens/farm/revoke`), 400, 'invalid_argument');
      expect(pointers(token)).toEqual(['/params/tokenId']);
    });

    it('answers an unknown route with a 404 problem, with or without a token', async () => {
      const org = await populatedOrg();
      for (const [method, path] of [
        ['GET', '/v1/nothing-here'],
        ['GET', '/v2/orgs/x/jobs'],
        ['POST', `/v1/orgs/${org.orgId}/jobs/${org.job.id}/retry`],
      ] as const) {
        await expectProblem(await org.raw(method, path), 404, 'not_found');
        await expectProblem(await t.fetch(path, { method }), 404, 'not_found');
      }
    });

    it('answers a known path asked with a method it does not have with a 405 problem naming the methods it has', async () => {
      const org = await populatedOrg();
      for (const [method, path, allow] of [
        ['PUT', `/v1/orgs/${org.orgId}/jobs`, 'GET, HEAD, POST'],
        ['DELETE', `/v1/orgs/${org.orgId}/jobs/${org.job.id}`, 'GET, HEAD'],
        ['PATCH', `/v1/orgs/${org.orgId}/repositories/${org.repo.id}`, 'DELETE, GET, HEAD'],
        ['PUT', '/healthz', 'GET, HEAD'],
      ] as const) {
        for (const response of [await org.raw(method, path), await t.fetch(path, { method })]) {
          const problem = await expectProblem(response, 405, 'method_not_allowed');
          expect(response.headers.get('allow'), path).toBe(allow);
          expect(problem.detail).toContain(allow);
        }
      }
      expect((await org.owner.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: org.orgId, jobId: org.job.id } } })).data?.status).toBe('queued');
    });
  });

  describe('query parameters', () => {
    it.each([
      ['limit=0', '/query/limit'],
      ['limit=1000', '/query/limit'],
      ['limit=abc', '/query/limit'],
      ['limit=1.5', '/query/limit'],
      ['status=bogus', '/query/status'],
      ['status=queued&status=queued', '/query/status'],
      ['queueType=urgent', '/query/queueType'],
      ['repoId=web-app', '/query/repoId'],
      ['cursor=', '/query/cursor'],
      [`cursor=${'a'.repeat(513)}`, '/query/cursor'],
    ])('refuses ?%s when listing jobs, pointing at %s', async (query, pointer) => {
      const org = await populatedOrg();
      const problem = await expectProblem(await org.raw('GET', `/v1/orgs/${org.orgId}/jobs?${query}`), 400, 'invalid_argument');
      expect(pointers(problem).length).toBeGreaterThan(0);
      for (const p of pointers(problem)) expect(p === pointer || p.startsWith(`${pointer}/`), p).toBe(true);
    });

    it('refuses limits outside 1..200 and a bad state filter on the other lists too', async () => {
      const org = await populatedOrg();
      const repos = await expectProblem(await org.raw('GET', `/v1/orgs/${org.orgId}/repositories?limit=201`), 400, 'invalid_argument');
      expect(pointers(repos)).toEqual(['/query/limit']);
      const logs = await expectProblem(await org.raw('GET', `/v1/orgs/${org.orgId}/jobs/${org.job.id}/logs?after=-1&limit=5001`), 400, 'invalid_argument');
      expect(pointers(logs).sort()).toEqual(['/query/after', '/query/limit']);
      const agents = await expectProblem(await org.raw('GET', `/v1/orgs/${org.orgId}/agents?state=asleep`), 400, 'invalid_argument');
      expect(pointers(agents)).toEqual(['/query/state']);
    });
  });

  describe('content types', () => {
    it.each([
      ['text/plain', JSON.stringify({ prompt: 'Fix it', queueType: 'backlog' })],
      ['application/x-www-form-urlencoded', 'prompt=Fix+it&queueType=backlog'],
      ['application/xml', '<job><prompt>Fix it</prompt></job>'],
      ['application/vnd.api+json', JSON.stringify({ prompt: 'Fix it', queueType: 'backlog' })],
      ['application/problem+json', JSON.stringify({ prompt: 'Fix it', queueType: 'backlog' })],
    ])('refuses a %s body to a job submission with 415 unsupported_media_type, and stores nothing', async (contentType, body) => {
      const org = await populatedOrg();
      await refusedAndNothingStored(org, () => org.submit(body, contentType), 415, 'unsupported_media_type');
    });

    it('refuses a text/plain body with 415 on every operation that takes a JSON body', async () => {
      const org = await populatedOrg();
      for (const path of [`/v1/orgs/${org.orgId}/repositories`, `/v1/orgs/${org.orgId}/agent-tokens`, `/v1/orgs/${org.orgId}/jobs/${org.job.id}/cancel`]) {
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', path, '{"name": "farm", "reason": "stop"}', 'text/plain'), 415, 'unsupported_media_type');
        expect(problem.detail, path).toContain('application/json');
      }
    });

    it('refuses a missing body where one is required with 400 invalid_argument, and stores nothing', async () => {
      const org = await populatedOrg();
      for (const path of [`/v1/orgs/${org.orgId}/jobs`, `/v1/orgs/${org.orgId}/repositories`, `/v1/orgs/${org.orgId}/agent-tokens`]) {
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', path), 400, 'invalid_argument');
        expect(problem.errors, path).toEqual([{ pointer: '/', message: 'is required' }]);
      }
    });
  });

  describe('repositories', () => {
    it.each([
      ['a clone URL that is not a URL', { cloneUrl: 'not a url' }, '/cloneUrl'],
      ['a plain-http clone URL', { cloneUrl: 'http://git.example.test/acme/app.git' }, '/cloneUrl'],
      ['an ftp clone URL', { cloneUrl: 'ftp://git.example.test/acme/app.git' }, '/cloneUrl'],
      ['a clone URL with nothing after the scheme', { cloneUrl: 'https://' }, '/cloneUrl'],
      ['an empty clone URL', { cloneUrl: '' }, '/cloneUrl'],
      ['a name with a space', { name: 'web app' }, '/name'],
      ['a name with a slash', { name: 'acme/web-app' }, '/name'],
      ['an empty name', { name: '' }, '/name'],
      ['a name of 101 characters', { name: 'a'.repeat(101) }, '/name'],
      ['an empty default branch', { defaultBranch: '' }, '/defaultBranch'],
    ])('refuses %s with 400 pointing at the field, and registers nothing', async (_, change, pointer) => {
      const org = await populatedOrg();
      const body = { name: 'billing', cloneUrl: 'https://git.example.test/acme/billing.git', ...change };
      const problem = await refusedAndNothingStored(org, () => org.raw('POST', `/v1/orgs/${org.orgId}/repositories`, JSON.stringify(body)), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual([pointer]);
    });
  });

  describe('agent tokens and cancellations', () => {
    it.each([
      ['an empty agent token name', 'agent-tokens', { name: '' }, '/name'],
      ['an agent token name of 101 characters', 'agent-tokens', { name: 'a'.repeat(101) }, '/name'],
      ['an agent token with no name', 'agent-tokens', {}, '/name'],
      ['a cancellation reason of 1001 characters', 'cancel', { reason: 'a'.repeat(1001) }, '/reason'],
      ['a cancellation with an unknown field', 'cancel', { force: true }, '/force'],
    ])('refuses %s, pointing at the field, and changes nothing', async (_, target, body, pointer) => {
      const org = await populatedOrg();
      const path = target === 'cancel' ? `/v1/orgs/${org.orgId}/jobs/${org.job.id}/cancel` : `/v1/orgs/${org.orgId}/agent-tokens`;
      const problem = await refusedAndNothingStored(org, () => org.raw('POST', path, JSON.stringify(body)), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual([pointer]);
    });
  });
});

describe.each(drivers)('a body over the size limit on %s', (driver) => {
  let t: TestSystem;
  beforeAll(async () => {
    t = await startTestSystem({ driver, env: { BODY_LIMIT_BYTES: '4096' } });
  });
  afterAll(async () => {
    await t?.stop();
    await dropTestDatabases();
  });

  it('is refused with 413 payload_too_large and nothing is stored, while a body under the limit is taken', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const before = await storedState(org.owner, org.orgId);
    const submit = (prompt: string) =>
      t.fetch(`/v1/orgs/${org.orgId}/jobs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${org.tokens.member}`, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt, repoId: repo.id, queueType: 'backlog' }),
      });

    await expectProblem(await submit('x'.repeat(10 * 1024)), 413, 'payload_too_large');
    expect(await storedState(org.owner, org.orgId)).toEqual(before);

    const taken = await submit('x'.repeat(3 * 1024));
    expect(taken.status).toBe(201);
  });

  it('refuses an oversized body with 413 on every operation that takes one', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const before = await storedState(org.owner, org.orgId);
    const huge = 'x'.repeat(10 * 1024);
    for (const [path, body] of [
      [`/v1/orgs/${org.orgId}/repositories`, { name: 'big', cloneUrl: `https://git.example.test/${huge}.git` }],
      [`/v1/orgs/${org.orgId}/jobs/${job.id}/cancel`, { reason: huge }],
      [`/v1/orgs/${org.orgId}/agent-tokens`, { name: huge }],
    ] as const) {
      const response = await t.fetch(path, { method: 'POST', headers: { authorization: `Bearer ${org.tokens.owner}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      await expectProblem(response, 413, 'payload_too_large');
    }
    expect(await storedState(org.owner, org.orgId)).toEqual(before);
  });
});
