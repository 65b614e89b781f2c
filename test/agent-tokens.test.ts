// Agent tokens (created by an admin, shown once, stored as a hash, revocable) and the agent list, on
// PostgreSQL and on PGlite. Role and tenancy refusals are in contract-statuses.test.ts.
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import type { AgentJobsClient } from '../generated/sdk/index.js';
import { createAgentToken, createOrg, type AgentToken } from './support/factories.js';
import { ProtocolClient } from './support/protocol-client.js';
import { drivers, useTestSystem } from './support/system.js';

const revoke = (client: AgentJobsClient, orgId: string, tokenId: string) =>
  client.POST('/v1/orgs/{orgId}/agent-tokens/{tokenId}/revoke', { params: { path: { orgId, tokenId } } });
const list = async (client: AgentJobsClient, orgId: string) => {
  const { data, error } = await client.GET('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId } } });
  expect(error, JSON.stringify(error)).toBeUndefined();
  return data!.items;
};
const newestFirst = (a: AgentToken, b: AgentToken) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id);

describe.each(drivers)('agent tokens on %s', (driver) => {
  const t = useTestSystem({ driver });

  /** The agent_tokens row exactly as stored, every column as text. */
  async function storedRow(tokenId: string): Promise<string> {
    const result = await t.system.database.db.execute(sql`select row_to_json(t)::text as row from agent_tokens t where t.id = ${tokenId}`);
    const rows = (result as unknown as { rows: { row: string }[] }).rows;
    expect(rows).toHaveLength(1);
    return rows[0]!.row;
  }

  it('lets an Admin create a token: 201, its secret shown once and beginning with the token prefix', async () => {
    const org = await createOrg(t);
    const { data, response } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: 'build-farm-eu-1' } });
    expect(response.status).toBe(201);
    const { token, secret } = data!;
    expect(token).toMatchObject({ orgId: org.orgId, name: 'build-farm-eu-1', createdBy: 'admin', lastUsedAt: null, revokedAt: null });
    expect(secret.startsWith(token.prefix)).toBe(true);
    // The prefix identifies the token; it is nowhere near enough to use it.
    expect(token.prefix.length).toBeGreaterThan(0);
    expect(secret.length - token.prefix.length).toBeGreaterThanOrEqual(32);

    const another = await createAgentToken(org.owner, org.orgId, 'build-farm-eu-1');
    expect(another.secret).not.toBe(secret);
    expect(another.token.id).not.toBe(token.id);
  });

  it('refuses a token without a name, with 400 pointing at it', async () => {
    const org = await createOrg(t);
    const { error, response } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: '' } });
    expect(response.status).toBe(400);
    expect(error?.errors?.[0]?.pointer).toBe('/name');
    expect(await list(org.admin, org.orgId)).toEqual([]);
  });

  it('lists tokens newest first, revoked ones included, and never a secret or its hash', async () => {
    const org = await createOrg(t);
    const created: Awaited<ReturnType<typeof createAgentToken>>[] = [];
    for (const name of ['first', 'second', 'third']) created.push(await createAgentToken(org.admin, org.orgId, name));
    await revoke(org.admin, org.orgId, created[0]!.token.id);

    const response = await t.fetch(`/v1/orgs/${org.orgId}/agent-tokens`, { headers: { authorization: `Bearer ${org.tokens.admin}` } });
    expect(response.status).toBe(200);
    const raw = await response.text();
    expect(raw).not.toContain('"secret"');
    expect(raw).not.toContain('"secretHash"');
    expect(raw.toLowerCase()).not.toContain('secret');
    for (const { token, secret } of created) expect(raw).not.toContain(secret.slice(token.prefix.length));

    const items = (JSON.parse(raw) as { items: AgentToken[] }).items;
    expect(items.map((i) => i.name)).toEqual([...created.map((c) => c.token)].sort(newestFirst).map((i) => i.name));
    for (const item of items) expect(Object.keys(item).sort()).toEqual(['createdAt', 'createdBy', 'id', 'lastUsedAt', 'name', 'orgId', 'prefix', 'revokedAt']);
    expect(items.find((i) => i.id === created[0]!.token.id)?.revokedAt).toEqual(expect.any(String));
  });

  it('stores only a hash of the secret: the secret appears nowhere in the stored row', async () => {
    const org = await createOrg(t);
    const { token, secret } = await createAgentToken(org.admin, org.orgId, 'hashed');
    const row = await storedRow(token.id);
    expect(row).not.toContain(secret);
    // Nor the part of it the prefix does not show, in any encoding a careless store might use.
    const hidden = secret.slice(token.prefix.length);
    expect(row).not.toContain(hidden);
    expect(row).not.toContain(Buffer.from(secret).toString('hex'));
    expect(row).not.toContain(Buffer.from(secret).toString('base64'));
    expect(row).toContain(token.prefix);
  });

  it('revokes a token, and revoking it again keeps the first revokedAt', async () => {
    const org = await createOrg(t);
    const { token } = await createAgentToken(org.admin, org.orgId, 'to-revoke');
    const kept = await createAgentToken(org.admin, org.orgId, 'kept');

    const first = await revoke(org.admin, org.orgId, token.id);
    expect(first.response.status).toBe(200);
    expect(first.data).toMatchObject({ id: token.id, name: 'to-revoke', prefix: token.prefix, createdAt: token.createdAt });
    expect(first.data?.revokedAt).toEqual(expect.any(String));
    expect(Date.parse(first.data!.revokedAt!)).toBeGreaterThanOrEqual(Date.parse(token.createdAt));

    const second = await revoke(org.owner, org.orgId, token.id);
    expect(second.response.status).toBe(200);
    expect(second.data).toEqual(first.data);

    const items = await list(org.admin, org.orgId);
    expect(items.find((i) => i.id === token.id)?.revokedAt).toBe(first.data!.revokedAt);
    expect(items.find((i) => i.id === kept.token.id)?.revokedAt).toBeNull();
  });

  it('lists no agents for a new organisation, to any member', async () => {
    const org = await createOrg(t);
    await createAgentToken(org.admin, org.orgId);
    for (const state of [undefined, 'connected', 'disconnected'] as const) {
      const { data, response } = await org.member.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId: org.orgId }, query: state ? { state } : {} } });
      expect(response.status).toBe(200);
      expect(data).toEqual({ items: [] });
    }
  });

  it('lists the organisation\'s agents by state: one connected, one that has gone', async () => {
    const org = await createOrg(t);
    const token = await createAgentToken(org.admin, org.orgId);
    const [staying, leaving] = [new ProtocolClient(t.grpcAddress, token.secret), new ProtocolClient(t.grpcAddress, token.secret)];
    try {
      for (const agent of [staying, leaving]) {
        agent.hello({ capacity: 1 });
        await agent.next('welcome');
      }
      leaving.close();
      const ids = async (state?: 'connected' | 'disconnected') =>
        ((await org.member.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId: org.orgId }, query: state ? { state } : {} } })).data?.items ?? []).map((a) => a.id).sort();
      await expect.poll(() => ids('disconnected'), { timeout: 20_000 }).toEqual([leaving.agentId]);
      expect(await ids('connected')).toEqual([staying.agentId]);
      expect(await ids()).toEqual([staying.agentId, leaving.agentId].sort());
    } finally {
      staying.close();
      leaving.close();
    }
  });
});
