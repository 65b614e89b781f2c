// Idempotent submission: POST …/jobs and POST …/repositories with an Idempotency-Key are done once per
// organisation, operation and key; a retry is answered like the first request, on PostgreSQL and on PGlite.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { createAgentJobsClient, type AgentJobsClient } from '../generated/sdk/index.js';
import { createOrg, createRepository } from './support/factories.js';
import { expectProblem, pointers } from './support/problems.js';
import { drivers, useTestSystem, type TestSystem } from './support/system.js';

const postJob = (client: AgentJobsClient, orgId: string, body: { repoId: string; prompt?: string }, key?: string) =>
  client.POST('/v1/orgs/{orgId}/jobs', {
    params: { path: { orgId }, ...(key === undefined ? {} : { header: { 'Idempotency-Key': key } }) },
    body: { prompt: body.prompt ?? 'Fix the flaky test', repoId: body.repoId, queueType: 'backlog' },
  });

const postRepository = (client: AgentJobsClient, orgId: string, name: string, key: string) =>
  client.POST('/v1/orgs/{orgId}/repositories', {
    params: { path: { orgId }, header: { 'Idempotency-Key': key } },
    body: { name, cloneUrl: 'https://git.example.test/acme/app.git' },
  });

const jobIds = async (client: AgentJobsClient, orgId: string) => {
  const { data } = await client.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId }, query: { limit: 200 } } });
  return data!.items.map((job) => job.id);
};

const keyRows = async (t: TestSystem, key: string) => {
  const result = await t.system.database.db.execute(sql`select count(*)::int as n from idempotency_keys where key = ${key}`);
  return Number((result as unknown as { rows: { n: number }[] }).rows[0]?.n);
};

const expireKey = async (t: TestSystem, key: string) => {
  await t.system.database.db.execute(sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = ${key}`);
};

describe.each(drivers)('idempotent submission on %s', (driver) => {
  // A short wait, so the in-flight case answers 409 quickly.
  const t = useTestSystem({ driver, env: { IDEMPOTENCY_KEY_WAIT: '500ms' } });

  describe('jobs', () => {
    it('answers a retry with the same key and body with the first job, marked as a replay, and queues one job', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = `"${randomUUID()}"`;

      const first = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(first.response.status).toBe(201);
      expect(first.response.headers.get('idempotent-replayed')).toBeNull();

      const retry = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(retry.response.status).toBe(201);
      expect(retry.response.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.response.headers.get('location')).toBe(first.response.headers.get('location'));
      expect(retry.data).toEqual(first.data);
      expect(await jobIds(org.member, org.orgId)).toEqual([first.data!.id]);
    });

    it('replays the job as it was created, even after it moved on (here: cancelled)', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();
      const first = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      const cancelled = await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: first.data!.id } }, body: {} });
      expect(cancelled.response.status).toBe(202);

      const retry = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(retry.response.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.data).toEqual(first.data);
      expect(retry.data!.status).toBe('queued');
    });

    it('takes the quoted (Structured Field) and the bare spelling of a key as the same key', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();
      const first = await postJob(org.member, org.orgId, { repoId: repo.id }, `"${key}"`);
      const bare = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(bare.response.headers.get('idempotent-replayed')).toBe('true');
      expect(bare.data!.id).toBe(first.data!.id);
    });

    it('refuses the same key with another body with a 422 problem, and queues nothing more', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();
      const first = await postJob(org.member, org.orgId, { repoId: repo.id, prompt: 'one thing' }, key);
      const other = await postJob(org.member, org.orgId, { repoId: repo.id, prompt: 'another thing' }, key);
      const problem = await expectProblem(other.response, 422, 'idempotency_key_reused', other.error);
      expect(pointers(problem)).toEqual(['/headers/idempotency-key']);
      expect(await jobIds(org.member, org.orgId)).toEqual([first.data!.id]);
    });

    it('keeps no answer for a refused request: corrected, the same key creates the job', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();

      const invalid = await postJob(org.member, org.orgId, { repoId: repo.id, prompt: '   ' }, key);
      await expectProblem(invalid.response, 400, 'invalid_argument', invalid.error);
      const missing = await postJob(org.member, org.orgId, { repoId: randomUUID() }, key);
      await expectProblem(missing.response, 404, 'not_found', missing.error);

      const corrected = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(corrected.response.status).toBe(201);
      expect(corrected.response.headers.get('idempotent-replayed')).toBeNull();
      expect(await jobIds(org.member, org.orgId)).toEqual([corrected.data!.id]);
    });

    it('scopes a key to its organisation and its operation', async () => {
      const [a, b] = [await createOrg(t), await createOrg(t)];
      const [repoA, repoB] = [await createRepository(a.admin, a.orgId), await createRepository(b.admin, b.orgId)];
      const key = randomUUID();
      const inA = await postJob(a.member, a.orgId, { repoId: repoA.id }, key);
      const inB = await postJob(b.member, b.orgId, { repoId: repoB.id }, key);
      expect(inB.response.headers.get('idempotent-replayed')).toBeNull();
      expect(inB.data!.id).not.toBe(inA.data!.id);

      const repository = await postRepository(a.admin, a.orgId, 'same-key', key);
      expect(repository.response.status).toBe(201);
      expect(repository.response.headers.get('idempotent-replayed')).toBeNull();
    });

    it('refuses an empty or over-long key with a 400 pointing at the header, and takes 255 characters', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const send = (key: string) =>
        t.fetch(`/v1/orgs/${org.orgId}/jobs`, {
          method: 'POST',
          headers: { authorization: `Bearer ${org.tokens.member}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify({ prompt: 'Fix it', repoId: repo.id, queueType: 'backlog' }),
        });
      for (const bad of ['', '""', 'k'.repeat(256), `"${'k'.repeat(256)}"`, 'two, keys', '"a\\"b"']) {
        const response = await send(bad);
        expect(response.status, `key ${JSON.stringify(bad)}`).toBe(400);
        const problem = await expectProblem(response, 400, 'invalid_argument');
        expect(pointers(problem), bad).toEqual(['/headers/idempotency-key']);
      }
      expect((await send('k'.repeat(255))).status).toBe(201);
      expect((await send(`"${'q'.repeat(255)}"`)).status).toBe(201);
      expect(await jobIds(org.member, org.orgId)).toHaveLength(2);
    });

    it('forgets an expired key: the sweep deletes it, and the key then creates anew, whatever the body', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const swept = randomUUID();
      const first = await postJob(org.member, org.orgId, { repoId: repo.id }, swept);
      await expireKey(t, swept);
      expect(await t.system.services.idempotency.sweep()).toBeGreaterThanOrEqual(1);
      expect(await keyRows(t, swept)).toBe(0);
      const again = await postJob(org.member, org.orgId, { repoId: repo.id }, swept);
      expect(again.response.headers.get('idempotent-replayed')).toBeNull();
      expect(again.data!.id).not.toBe(first.data!.id);

      // Expired but not yet swept: the key is free all the same, for another body too.
      const unswept = randomUUID();
      await postJob(org.member, org.orgId, { repoId: repo.id, prompt: 'before' }, unswept);
      await expireKey(t, unswept);
      const reused = await postJob(org.member, org.orgId, { repoId: repo.id, prompt: 'after' }, unswept);
      expect(reused.response.status).toBe(201);
      expect(reused.response.headers.get('idempotent-replayed')).toBeNull();
      expect(await keyRows(t, unswept)).toBe(1);
    });

    it('creates one job for ten concurrent requests with one key, and gives each the same answer', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();
      const answers = await Promise.all(Array.from({ length: 10 }, () => postJob(org.member, org.orgId, { repoId: repo.id }, key)));
      for (const answer of answers) {
        expect(answer.response.status, JSON.stringify(answer.error)).toBe(201);
        expect(answer.data).toEqual(answers[0]!.data);
      }
      expect(answers.filter((answer) => answer.response.headers.get('idempotent-replayed') === null)).toHaveLength(1);
      expect(await jobIds(org.member, org.orgId)).toEqual([answers[0]!.data!.id]);
    });

    it.runIf(driver === 'postgres')('answers 409 to a retry while the first request with the key is still in flight, then serves the key', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const key = randomUUID();
      const config = t.system.config.database;
      if (config.kind !== 'postgres') throw new Error('needs PostgreSQL');
      // Another replica's request with this key, its transaction not committed yet.
      const inFlight = new pg.Client({ connectionString: config.url });
      await inFlight.connect();
      try {
        await inFlight.query('begin');
        await inFlight.query(
          `insert into idempotency_keys (org_id, operation, key, fingerprint, status, resource_id, response, expires_at)
           values ($1, 'createJob', $2, 'other', 201, $3, '{}', now() + interval '1 hour')`,
          [org.orgId, key, randomUUID()],
        );
        const retry = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
        await expectProblem(retry.response, 409, 'idempotency_key_in_use', retry.error);
        expect(await jobIds(org.member, org.orgId)).toEqual([]);
        // The first request failed after all: nothing was kept, and the key serves the retry.
        await inFlight.query('rollback');
      } finally {
        await inFlight.end();
      }
      const after = await postJob(org.member, org.orgId, { repoId: repo.id }, key);
      expect(after.response.status).toBe(201);
      expect(await jobIds(org.member, org.orgId)).toEqual([after.data!.id]);
    });
  });

  describe('repositories', () => {
    it('answers a retry with the repository the first request registered, not a 409 for its name', async () => {
      const org = await createOrg(t);
      const key = randomUUID();
      const first = await postRepository(org.admin, org.orgId, 'web-app', key);
      const retry = await postRepository(org.admin, org.orgId, 'web-app', key);
      expect(retry.response.status).toBe(201);
      expect(retry.response.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.response.headers.get('location')).toBe(first.response.headers.get('location'));
      expect(retry.data).toEqual(first.data);
    });

    it('refuses the same key for another repository with a 422 problem', async () => {
      const org = await createOrg(t);
      const key = randomUUID();
      await postRepository(org.admin, org.orgId, 'first', key);
      const other = await postRepository(org.admin, org.orgId, 'second', key);
      await expectProblem(other.response, 422, 'idempotency_key_reused', other.error);
      const { data } = await org.admin.GET('/v1/orgs/{orgId}/repositories', { params: { path: { orgId: org.orgId } } });
      expect(data!.items.map((r) => r.name)).toEqual(['first']);
    });

    it('registers one repository for ten concurrent requests with one key, and gives each the same answer', async () => {
      const org = await createOrg(t);
      const key = randomUUID();
      const answers = await Promise.all(Array.from({ length: 10 }, () => postRepository(org.admin, org.orgId, 'raced', key)));
      for (const answer of answers) {
        expect(answer.response.status, JSON.stringify(answer.error)).toBe(201);
        expect(answer.data).toEqual(answers[0]!.data);
      }
      expect(answers.filter((answer) => answer.response.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    });
  });

  describe('the SDK', () => {
    const recording = (token: string, options: { idempotencyKey?: false | (() => string) } = {}) => {
      const keys: (string | null)[] = [];
      const client = createAgentJobsClient({
        baseUrl: t.url,
        token,
        ...options,
        fetch: async (input: Request | string | URL, init?: RequestInit) => {
          const request = new Request(input, init);
          if (request.method === 'POST') keys.push(request.headers.get('idempotency-key'));
          return fetch(request);
        },
      });
      return { client, keys };
    };

    it('sends a fresh key with each create by default, so two calls are two jobs', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const { client, keys } = recording(org.tokens.member);
      await postJob(client, org.orgId, { repoId: repo.id });
      await postJob(client, org.orgId, { repoId: repo.id });
      expect(keys).toHaveLength(2);
      for (const key of keys) expect(key).toMatch(/^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$/);
      expect(keys[0]).not.toBe(keys[1]);
      expect(await jobIds(org.member, org.orgId)).toHaveLength(2);
    });

    it('keeps a key the call sets, takes a key maker, and can send none', async () => {
      const org = await createOrg(t);
      const repo = await createRepository(org.admin, org.orgId);
      const own = recording(org.tokens.member);
      await postJob(own.client, org.orgId, { repoId: repo.id }, 'mine');
      expect(own.keys).toEqual(['mine']);

      const fixed = recording(org.tokens.member, { idempotencyKey: () => 'retry-safe' });
      const first = await postJob(fixed.client, org.orgId, { repoId: repo.id, prompt: 'Once' });
      const second = await postJob(fixed.client, org.orgId, { repoId: repo.id, prompt: 'Once' });
      expect(second.data!.id).toBe(first.data!.id);
      expect(fixed.keys).toEqual(['"retry-safe"', '"retry-safe"']);

      const none = recording(org.tokens.member, { idempotencyKey: false });
      await postJob(none.client, org.orgId, { repoId: repo.id });
      expect(none.keys).toEqual([null]);
    });
  });
});
