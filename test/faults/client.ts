// The suite talks to the system as its users do: the generated SDK over REST with dev access tokens,
// one organisation per row (so one row's agents never take another row's jobs).
import { randomUUID } from 'node:crypto';
import { createAgentJobsClient, type AgentJobsClient, type JobDetail, type LogPage } from '../../generated/sdk/index.js';
import type { SystemUnderTest } from './system.js';

export interface Tenant {
  baseUrl: string;
  orgId: string;
  token: string;
  api: AgentJobsClient;
  repoId: string;
  /** An agent token's secret (`ajt_…`) for this organisation's agents. */
  agentSecret: string;
}

export interface StoredLine {
  stream: string;
  text: string;
}

/** Statuses a job ends in; anything else may still change. */
export const terminalStatuses: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/** Requests give up after this long, so a frozen or dead API never hangs a row past its deadline. */
const REQUEST_TIMEOUT_MS = 5_000;
const timedFetch: typeof fetch = (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });

export async function createTenant(sut: SystemUnderTest, cloneUrl: string, label: string): Promise<Tenant> {
  const orgId = randomUUID();
  const token = await sut.token({ userId: `faults-${label}`, orgs: [{ orgId, role: 'Admin' }], expiresInSeconds: 3_600 });
  const api = createAgentJobsClient({ baseUrl: sut.apiUrl, token, fetch: timedFetch });
  const repo = await api.POST('/v1/orgs/{orgId}/repositories', { params: { path: { orgId } }, body: { name: `faults-${label}`, cloneUrl } });
  if (!repo.data) throw new Error(`creating a repository answered ${repo.response.status}: ${JSON.stringify(repo.error)}`);
  const agentToken = await api.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId } }, body: { name: `faults-${label}` } });
  if (!agentToken.data) throw new Error(`creating an agent token answered ${agentToken.response.status}: ${JSON.stringify(agentToken.error)}`);
  return { baseUrl: sut.apiUrl, orgId, token, api, repoId: repo.data.id, agentSecret: agentToken.data.secret };
}

export async function submitJob(tenant: Tenant, prompt: string): Promise<string> {
  const { data, error, response } = await tenant.api.POST('/v1/orgs/{orgId}/jobs', {
    params: { path: { orgId: tenant.orgId } },
    body: { prompt, repoId: tenant.repoId, queueType: 'backlog' },
  });
  if (!data) throw new Error(`submitting a job answered ${response.status}: ${JSON.stringify(error)}`);
  return data.id;
}

/** The job, or undefined while the API cannot answer (a row may have taken it down). */
export async function getJob(tenant: Tenant, jobId: string): Promise<JobDetail | undefined> {
  try {
    const { data } = await tenant.api.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: tenant.orgId, jobId } } });
    return data;
  } catch {
    return undefined;
  }
}

/** Statuses of every job of the organisation (up to `max`), by id; undefined while the API cannot answer. */
export async function listJobStatuses(tenant: Tenant, max: number): Promise<Map<string, { status: string; attempt: number }> | undefined> {
  const statuses = new Map<string, { status: string; attempt: number }>();
  let cursor: string | undefined;
  try {
    do {
      const { data } = await tenant.api.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: tenant.orgId }, query: { limit: 200, ...(cursor ? { cursor } : {}) } } });
      if (!data) return undefined;
      for (const job of data.items) statuses.set(job.id, { status: job.status, attempt: job.attempt });
      cursor = data.nextCursor ?? undefined;
    } while (cursor && statuses.size < max);
  } catch {
    return undefined;
  }
  return statuses;
}

/** One page of stored lines after `after`; undefined while the API cannot answer. */
export async function logPage(tenant: Tenant, jobId: string, after: number): Promise<LogPage | undefined> {
  try {
    const { data } = await tenant.api.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: tenant.orgId, jobId }, query: { after, limit: 1000 } } });
    return data;
  } catch {
    return undefined;
  }
}

/** The cancel's HTTP status, or why it got none (a hung or refused request is a finding, not a crash). */
export async function cancelJob(tenant: Tenant, jobId: string, reason: string): Promise<number | string> {
  try {
    const { response } = await tenant.api.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: tenant.orgId, jobId } }, body: { reason } });
    return response.status;
  } catch (err) {
    return err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : `an error (${String(err)})`;
  }
}

/** The whole stored log as a user downloads it (`<at> <stream> <text>` a line), in order. */
export async function downloadLog(tenant: Tenant, jobId: string): Promise<StoredLine[]> {
  const response = await timedFetch(`${tenant.baseUrl}/v1/orgs/${tenant.orgId}/jobs/${jobId}/logs/download`, {
    headers: { authorization: `Bearer ${tenant.token}` },
  });
  if (response.status !== 200) throw new Error(`downloading the log of ${jobId} answered ${response.status}`);
  const lines: StoredLine[] = [];
  for (const line of (await response.text()).split('\n')) {
    if (line === '') continue;
    const first = line.indexOf(' ');
    const second = line.indexOf(' ', first + 1);
    if (first < 0 || second < 0) continue;
    lines.push({ stream: line.slice(first + 1, second), text: line.slice(second + 1) });
  }
  return lines;
}
