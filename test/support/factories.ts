// Small factories: each test creates the organisation, people and rows it needs through the API.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { AgentJobsClient, components } from '../../generated/sdk/index.js';
import type { TestSystem } from './system.js';

export type Job = components['schemas']['Job'];
export type Repository = components['schemas']['Repository'];

/** A fresh organisation with an owner, an admin and a member, and their SDK clients. */
export async function createOrg(t: TestSystem) {
  const orgId = randomUUID();
  const [ownerToken, adminToken, memberToken] = await Promise.all([
    t.token({ userId: 'owner', orgs: { [orgId]: 'Owner' } }),
    t.token({ userId: 'admin', orgs: { [orgId]: 'Admin' } }),
    t.token({ userId: 'member', orgs: { [orgId]: 'Member' } }),
  ]);
  return {
    orgId,
    owner: t.client(ownerToken),
    admin: t.client(adminToken),
    member: t.client(memberToken),
    tokens: { owner: ownerToken, admin: adminToken, member: memberToken },
  };
}

export type Org = Awaited<ReturnType<typeof createOrg>>;

export async function createRepository(client: AgentJobsClient, orgId: string, overrides: Partial<{ name: string; cloneUrl: string; defaultBranch: string }> = {}): Promise<Repository> {
  const { data, error, response } = await client.POST('/v1/orgs/{orgId}/repositories', {
    params: { path: { orgId } },
    body: { name: overrides.name ?? `repo-${randomUUID().slice(0, 8)}`, cloneUrl: overrides.cloneUrl ?? 'https://git.example.test/acme/app.git', ...(overrides.defaultBranch ? { defaultBranch: overrides.defaultBranch } : {}) },
  });
  expect(error, JSON.stringify(error)).toBeUndefined();
  expect(response.status).toBe(201);
  return data!;
}

export async function createJob(
  client: AgentJobsClient,
  orgId: string,
  body: { repoId: string; prompt?: string; queueType?: 'backlog' | 'rework'; parentJobId?: string; labels?: string[]; maxAttempts?: number; cancelGraceSeconds?: number },
): Promise<Job> {
  const { data, error, response } = await client.POST('/v1/orgs/{orgId}/jobs', {
    params: { path: { orgId } },
    body: { prompt: body.prompt ?? 'Fix the flaky test', queueType: body.queueType ?? 'backlog', ...body },
  });
  expect(error, JSON.stringify(error)).toBeUndefined();
  expect(response.status).toBe(201);
  return data!;
}

/** Polls a job until `done` holds, for outcomes the workflow reaches asynchronously. */
export async function waitForJob(client: AgentJobsClient, orgId: string, jobId: string, done: (job: components['schemas']['JobDetail']) => boolean, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { data } = await client.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId, jobId } } });
    if (data && done(data)) return data;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not reach the expected state in ${timeoutMs} ms; last seen ${JSON.stringify(data)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export type AgentToken = components['schemas']['AgentToken'];

/** An agent token created by `client` (an Admin); returns the token and its once-shown secret. */
export async function createAgentToken(client: AgentJobsClient, orgId: string, name = `agents-${randomUUID().slice(0, 8)}`) {
  const { data, error, response } = await client.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId } }, body: { name } });
  expect(error, JSON.stringify(error)).toBeUndefined();
  expect(response.status).toBe(201);
  return data!;
}

/** Cancels a queued job and waits until its workflow has recorded it cancelled. */
export async function cancelQueuedJob(client: AgentJobsClient, orgId: string, jobId: string) {
  const { error, response } = await client.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId, jobId } } });
  expect(error, JSON.stringify(error)).toBeUndefined();
  expect(response.status).toBe(202);
  return waitForJob(client, orgId, jobId, (j) => j.status === 'cancelled');
}

/** Waits for the job's workflow to exist (it starts from the outbox just after the create answers). */
export async function waitForWorkflow(t: TestSystem, jobId: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await t.system.temporal.workflow.getHandle(jobId).describe();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** An organisation with a repository (`web-app`), one queued job and an agent token, and its people. */
export async function createPopulatedOrg(t: TestSystem) {
  const org = await createOrg(t);
  const repo = await createRepository(org.admin, org.orgId, { name: 'web-app' });
  const job = await createJob(org.member, org.orgId, { repoId: repo.id });
  const { token } = await createAgentToken(org.admin, org.orgId);
  return { ...org, repo, job, token };
}

/** Everything an organisation has stored, as its Owner lists it: "nothing changed" compares these. */
export async function storedState(owner: AgentJobsClient, orgId: string) {
  const path = { orgId };
  const [repos, jobs, tokens] = await Promise.all([
    owner.GET('/v1/orgs/{orgId}/repositories', { params: { path, query: { limit: 200 } } }),
    owner.GET('/v1/orgs/{orgId}/jobs', { params: { path, query: { limit: 200 } } }),
    owner.GET('/v1/orgs/{orgId}/agent-tokens', { params: { path } }),
  ]);
  return { repos: repos.data!.items, jobs: jobs.data!.items, tokens: tokens.data!.items };
}
