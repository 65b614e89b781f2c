// Who may call what over REST: a verified PropelAuth access token for every organisation-scoped
// operation, and what each role may do; on PostgreSQL and on PGlite. The refusals of a role too low
// (403) and of another organisation (404) are in contract-statuses.test.ts.
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT, UnsecuredJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import type { AgentJobsClient } from '../generated/sdk/index.js';
import { loadHttpSpecification, securedOperationIds } from '../src/http/specification.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';
import { createAgentToken, createOrg, createPopulatedOrg, createRepository, storedState } from './support/factories.js';
import { expectProblem } from './support/problems.js';
import { drivers, useTestSystem } from './support/system.js';

/** The ids one organisation's paths need: a repository, a job and an agent token of its own. */
interface OrgFixture {
  orgId: string;
  repoId: string;
  jobId: string;
  tokenId: string;
}

interface Call {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: unknown;
}

/** One well-formed request per HTTP operation that needs a token, keyed by operationId. */
const securedCalls: Record<string, (f: OrgFixture) => Call> = {
  createRepository: (f) => ({ method: 'POST', path: `/v1/orgs/${f.orgId}/repositories`, body: { name: 'intruder', cloneUrl: 'https://git.example.test/x.git' } }),
  listRepositories: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/repositories` }),
  getRepository: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/repositories/${f.repoId}` }),
  deleteRepository: (f) => ({ method: 'DELETE', path: `/v1/orgs/${f.orgId}/repositories/${f.repoId}` }),
  createJob: (f) => ({ method: 'POST', path: `/v1/orgs/${f.orgId}/jobs`, body: { prompt: 'Fix it', repoId: f.repoId, queueType: 'backlog' } }),
  listJobs: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/jobs` }),
  getJob: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/jobs/${f.jobId}` }),
  cancelJob: (f) => ({ method: 'POST', path: `/v1/orgs/${f.orgId}/jobs/${f.jobId}/cancel`, body: { reason: 'because' } }),
  listJobLogs: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/jobs/${f.jobId}/logs` }),
  downloadJobLog: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/jobs/${f.jobId}/logs/download` }),
  getJobDiff: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/jobs/${f.jobId}/diff` }),
  createAgentToken: (f) => ({ method: 'POST', path: `/v1/orgs/${f.orgId}/agent-tokens`, body: { name: 'intruder' } }),
  listAgentTokens: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/agent-tokens` }),
  revokeAgentToken: (f) => ({ method: 'POST', path: `/v1/orgs/${f.orgId}/agent-tokens/${f.tokenId}/revoke` }),
  listAgents: (f) => ({ method: 'GET', path: `/v1/orgs/${f.orgId}/agents` }),
};

describe.each(drivers)('authentication and tenancy on %s', (driver) => {
  const t = useTestSystem({ driver });

  async function populatedOrg() {
    const org = await createPopulatedOrg(t);
    return { ...org, fixture: { orgId: org.orgId, repoId: org.repo.id, jobId: org.job.id, tokenId: org.token.id } };
  }

  const snapshot = (org: { owner: AgentJobsClient; orgId: string }) => storedState(org.owner, org.orgId);

  const send = (call: Call, authorization?: string, init: { body?: string; contentType?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (authorization !== undefined) headers.authorization = authorization;
    const body = init.body ?? (call.body === undefined ? undefined : JSON.stringify(call.body));
    if (body !== undefined) headers['content-type'] = init.contentType ?? 'application/json';
    return t.fetch(call.path, { method: call.method, headers, ...(body !== undefined ? { body } : {}) });
  };

  describe('without a valid access token', () => {
    it('has a request for every operation that openapi.yaml secures', () => {
      expect(Object.keys(securedCalls).sort()).toEqual([...securedOperationIds(loadHttpSpecification())].sort());
    });

    it.each(Object.keys(securedCalls))('answers %s with 401 unauthenticated when no Authorization header is sent, and changes nothing', async (operationId) => {
      const org = await populatedOrg();
      const before = await snapshot(org);
      const problem = await expectProblem(await send(securedCalls[operationId]!(org.fixture)), 401, 'unauthenticated');
      expect(problem.errors).toBeUndefined();
      expect(await snapshot(org)).toEqual(before);
    });

    it('answers 401 before looking at the body: a body that is not JSON, of the wrong type or invalid is still 401', async () => {
      const org = await populatedOrg();
      const before = await snapshot(org);
      const createJobCall = securedCalls.createJob!(org.fixture);
      for (const init of [
        { body: '{"prompt": ' },
        { body: JSON.stringify({ prompt: 5, maxAttempts: '3', bogus: true }) },
        { body: '[]' },
        { body: 'plain words', contentType: 'text/plain' },
      ]) {
        await expectProblem(await send(createJobCall, undefined, init), 401, 'unauthenticated');
      }
      // Nor does a malformed path teach anything before the token is checked.
      await expectProblem(await send({ method: 'GET', path: '/v1/orgs/not-a-uuid/jobs/not-a-uuid' }), 401, 'unauthenticated');
      expect(await snapshot(org)).toEqual(before);
    });

    it.each([
      ['another scheme', 'Basic dXNlcjpwYXNz'],
      ['the scheme alone', 'Bearer'],
      ['the scheme and a blank', 'Bearer '],
      ['a token that is not a JWT', 'Bearer not-a-token'],
      ['three dots of garbage', 'Bearer aaa.bbb.ccc'],
      ['two tokens', 'Bearer x y'],
    ])('answers 401 to a malformed Authorization header: %s', async (_, authorization) => {
      const org = await populatedOrg();
      for (const operationId of ['listJobs', 'createJob'] as const) {
        await expectProblem(await send(securedCalls[operationId]!(org.fixture), authorization), 401, 'unauthenticated');
      }
    });

    it('answers 401 to an expired token, though it was signed by the right key for a member', async () => {
      const org = await populatedOrg();
      const expired = await t.token({ userId: 'member', orgs: { [org.orgId]: 'Owner' }, expiresInSeconds: -60 });
      for (const operationId of ['listJobs', 'createJob'] as const) {
        await expectProblem(await send(securedCalls[operationId]!(org.fixture), `Bearer ${expired}`), 401, 'unauthenticated');
      }
    });

    it('answers 401 to a token with the right claims and issuer signed by another key', async () => {
      const org = await populatedOrg();
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
      const forged = await mintDevToken(privateKey, issuer(), { userId: 'owner', orgs: [{ orgId: org.orgId, role: 'Owner' }] });
      for (const operationId of ['listJobs', 'createJob'] as const) {
        await expectProblem(await send(securedCalls[operationId]!(org.fixture), `Bearer ${forged}`), 401, 'unauthenticated');
      }
    });

    it('answers 401 to a token signed by the right key for another issuer', async () => {
      const org = await populatedOrg();
      const foreign = await mintDevToken(devPrivateKey(), 'https://auth.elsewhere.example', { userId: 'owner', orgs: [{ orgId: org.orgId, role: 'Owner' }] });
      await expectProblem(await send(securedCalls.listJobs!(org.fixture), `Bearer ${foreign}`), 401, 'unauthenticated');
    });

    it('answers 401 to an unsigned token and to one signed with the public key as an HMAC secret', async () => {
      const org = await populatedOrg();
      const claims = {
        user_id: 'owner',
        org_id_to_org_member_info: { [org.orgId]: { org_id: org.orgId, org_name: 'x', user_role: 'Owner', inherited_user_roles_plus_current_role: ['Member', 'Admin', 'Owner'], user_permissions: [] } },
      };
      const now = Math.floor(Date.now() / 1000);
      const unsigned = new UnsecuredJWT(claims).setSubject('owner').setIssuer(issuer()).setIssuedAt(now).setExpirationTime(now + 3600).encode();
      const publicPem = loadOrCreateDevKeys(keyDir()).publicKeyPem;
      const confused = await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject('owner')
        .setIssuer(issuer())
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .sign(new TextEncoder().encode(publicPem));
      for (const token of [unsigned, confused]) {
        await expectProblem(await send(securedCalls.listJobs!(org.fixture), `Bearer ${token}`), 401, 'unauthenticated');
      }
    });

    it('takes the token from the Authorization header only, never from the query string', async () => {
      const org = await populatedOrg();
      const call = securedCalls.listJobs!(org.fixture);
      await expectProblem(await send({ ...call, path: `${call.path}?access_token=${org.tokens.owner}` }), 401, 'unauthenticated');
    });

    it('accepts the Bearer scheme in any letter case, as HTTP schemes are', async () => {
      const org = await populatedOrg();
      const response = await send(securedCalls.listJobs!(org.fixture), `bearer ${org.tokens.member}`);
      expect(response.status).toBe(200);
    });
  });

  describe('roles', () => {
    it('lets a Member do what members do: submit, list and read jobs, list and read repositories, list agents', async () => {
      const org = await populatedOrg();
      for (const operationId of ['createJob', 'listJobs', 'getJob', 'listRepositories', 'getRepository', 'listAgents', 'listJobLogs'] as const) {
        const response = await send(securedCalls[operationId]!(org.fixture), `Bearer ${org.tokens.member}`);
        expect(response.status, operationId).toBeLessThan(300);
      }
    });

    it.each(['admin', 'owner'] as const)('lets an %s register and delete repositories and create, list and revoke agent tokens', async (who) => {
      const org = await createOrg(t);
      const client = org[who];
      const path = { orgId: org.orgId };

      const repo = await createRepository(client, org.orgId, { name: `by-${who}` });
      const deleted = await client.DELETE('/v1/orgs/{orgId}/repositories/{repoId}', { params: { path: { ...path, repoId: repo.id } } });
      expect(deleted.response.status).toBe(204);

      const { token, secret } = await createAgentToken(client, org.orgId, `farm-${who}`);
      expect(token.createdBy).toBe(who);
      expect(secret.startsWith(token.prefix)).toBe(true);
      const list = await client.GET('/v1/orgs/{orgId}/agent-tokens', { params: { path } });
      expect(list.data?.items.map((x) => x.id)).toEqual([token.id]);
      const revoked = await client.POST('/v1/orgs/{orgId}/agent-tokens/{tokenId}/revoke', { params: { path: { ...path, tokenId: token.id } } });
      expect(revoked.response.status).toBe(200);
      expect(revoked.data?.revokedAt).not.toBeNull();
    });
  });

  describe('health probes', () => {
    it.each(['/healthz', '/readyz'])('answers %s without a token, and ignores a bad one', async (path) => {
      const anonymous = await t.fetch(path);
      expect(anonymous.status).toBe(200);
      const withGarbage = await t.fetch(path, { headers: { authorization: 'Bearer garbage' } });
      expect(withGarbage.status).toBe(200);
    });
  });

  function devPrivateKey(): string {
    return loadOrCreateDevKeys(keyDir()).privateKeyPem;
  }
  function keyDir(): string {
    const { auth } = t.system.config;
    if (auth.mode !== 'dev') throw new Error('test systems use dev auth');
    return auth.keyDir;
  }
  function issuer(): string {
    const { auth } = t.system.config;
    if (auth.mode !== 'dev') throw new Error('test systems use dev auth');
    return auth.issuer;
  }
});
