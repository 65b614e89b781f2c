// The SQL of agent tokens and agents.
import { and, asc, desc, eq, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { agents, agentTokens, jobs, type AgentRow, type AgentTokenRow, type JobRow } from './schema/index.js';

export async function insertAgentToken(db: Executor, values: typeof agentTokens.$inferInsert): Promise<AgentTokenRow> {
  const [row] = await db.insert(agentTokens).values(values).returning();
  if (!row) throw new Error('insert into agent_tokens returned no row');
  return row;
}

/** Newest first, revoked ones included, as listAgentTokens promises. */
export async function listAgentTokens(db: Executor, orgId: string): Promise<AgentTokenRow[]> {
  return db.select().from(agentTokens).where(eq(agentTokens.orgId, orgId)).orderBy(desc(agentTokens.createdAt), desc(agentTokens.id));
}

export async function findAgentToken(db: Executor, orgId: string, tokenId: string): Promise<AgentTokenRow | undefined> {
  const [row] = await db
    .select()
    .from(agentTokens)
    .where(and(eq(agentTokens.orgId, orgId), eq(agentTokens.id, tokenId)));
  return row;
}

/** The live (unrevoked) token with this secret hash, if any. */
export async function findLiveTokenByHash(db: Executor, secretHash: string): Promise<AgentTokenRow | undefined> {
  const [row] = await db
    .select()
    .from(agentTokens)
    .where(and(eq(agentTokens.secretHash, secretHash), isNull(agentTokens.revokedAt)));
  return row;
}

/** Revokes once: a second call keeps the first revocation time. */
export async function revokeAgentToken(db: Executor, orgId: string, tokenId: string): Promise<AgentTokenRow | undefined> {
  await db
    .update(agentTokens)
    .set({ revokedAt: sql`now()` })
    .where(and(eq(agentTokens.orgId, orgId), eq(agentTokens.id, tokenId), isNull(agentTokens.revokedAt)));
  return findAgentToken(db, orgId, tokenId);
}

export async function listAgents(db: Executor, orgId: string, state?: 'connected' | 'disconnected'): Promise<AgentRow[]> {
  const connected = state === 'connected' ? isNotNull(agents.sessionId) : state === 'disconnected' ? isNull(agents.sessionId) : undefined;
  return db
    .select()
    .from(agents)
    .where(connected ? and(eq(agents.orgId, orgId), connected) : eq(agents.orgId, orgId))
    .orderBy(asc(agents.name), asc(agents.id));
}

/** The assigned or running jobs held by these agents. */
export async function listHeldJobs(db: Executor, orgId: string, agentIds: string[]): Promise<{ id: string; agentId: string | null }[]> {
  return db
    .select({ id: jobs.id, agentId: jobs.agentId })
    .from(jobs)
    .where(and(eq(jobs.orgId, orgId), inArray(jobs.status, ['assigned', 'running']), inArray(jobs.agentId, agentIds)));
}

export async function touchAgentToken(db: Executor, tokenId: string): Promise<void> {
  await db.update(agentTokens).set({ lastUsedAt: sql`now()` }).where(eq(agentTokens.id, tokenId));
}

export async function revokedTokenIds(db: Executor, tokenIds: string[]): Promise<string[]> {
  const rows = await db
    .select({ id: agentTokens.id })
    .from(agentTokens)
    .where(and(inArray(agentTokens.id, tokenIds), isNotNull(agentTokens.revokedAt)));
  return rows.map((r) => r.id);
}

/**
 * Records the agent as connected through this session. An agent id already registered by another
 * organisation is not taken over: returns undefined.
 */
export async function upsertConnectedAgent(
  db: Executor,
  agent: { id: string; orgId: string; tokenId: string; name: string; version: string | null; labels: string[]; capacity: number; replica: string; sessionId: string },
): Promise<AgentRow | undefined> {
  const now = sql`now()`;
  const live = { tokenId: agent.tokenId, name: agent.name, version: agent.version, labels: agent.labels, capacity: agent.capacity, replica: agent.replica, sessionId: agent.sessionId };
  const [row] = await db
    .insert(agents)
    .values({ ...agent, connectedAt: now, lastHeartbeatAt: now, disconnectedAt: null })
    .onConflictDoUpdate({
      target: agents.id,
      set: { ...live, connectedAt: now, lastHeartbeatAt: now, disconnectedAt: null },
      setWhere: eq(agents.orgId, agent.orgId),
    })
    .returning();
  return row;
}

/** Only the session that connected last may mark the agent gone (an older stream may close late). */
export async function markAgentDisconnected(db: Executor, agentId: string, sessionId: string): Promise<void> {
  await db
    .update(agents)
    .set({ sessionId: null, replica: null, disconnectedAt: sql`now()` })
    .where(and(eq(agents.id, agentId), eq(agents.sessionId, sessionId)));
}

export async function touchAgentHeartbeat(db: Executor, agentId: string, sessionId: string): Promise<void> {
  await db
    .update(agents)
    .set({ lastHeartbeatAt: sql`now()` })
    .where(and(eq(agents.id, agentId), eq(agents.sessionId, sessionId)));
}

/** The jobs an agent holds now: assigned to it and not finished. */
export async function listHeldJobRows(db: Executor, agentId: string): Promise<JobRow[]> {
  return db
    .select()
    .from(jobs)
    .where(and(eq(jobs.agentId, agentId), inArray(jobs.status, ['assigned', 'running'])));
}
