// The SQL of agent tokens and agents.
import { and, asc, desc, eq, inArray, isNotNull, isNull, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { agents, agentTokens, gatewayStarts, jobs, type AgentRow, type AgentTokenRow, type JobRow } from './schema/index.js';

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
  agent: { id: string; orgId: string; tokenId: string; name: string; version: string | null; labels: string[]; capacity: number; replica: string; sessionId: string; leaseMs: number; leaseMarginMs: number },
): Promise<AgentRow | undefined> {
  const now = sql`now()`;
  const live = {
    tokenId: agent.tokenId,
    name: agent.name,
    version: agent.version,
    labels: agent.labels,
    capacity: agent.capacity,
    replica: agent.replica,
    sessionId: agent.sessionId,
    leaseMs: agent.leaseMs,
    leaseMarginMs: agent.leaseMarginMs,
  };
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

/**
 * Records that the agent was heard on this session, by the database's clock (the lease rule counts
 * from it). False when the session is no longer the agent's current one (a newer stream took over).
 */
export async function recordAgentHeard(db: Executor, agentId: string, sessionId: string): Promise<boolean> {
  const rows = await db
    .update(agents)
    .set({ lastHeartbeatAt: sql`now()` })
    .where(and(eq(agents.id, agentId), eq(agents.sessionId, sessionId)))
    .returning({ id: agents.id });
  return rows.length > 0;
}

/** A gateway replica has started: every agent's silence counts from now at the earliest. */
export async function recordGatewayStart(db: Executor, replica: string): Promise<void> {
  await db
    .insert(gatewayStarts)
    .values({ replica, startedAt: sql`now()` })
    .onConflictDoUpdate({ target: gatewayStarts.replica, set: { startedAt: sql`now()` } });
}

/** What the lease rule needs to know of a live attempt's agent (see agent.proto). */
export interface AttemptLease {
  /** How long the agent has gone unheard, by the database's clock: since its last recorded Hello or
   * Heartbeat, or since the latest gateway start, whichever is later. */
  silentMs: number;
  /** The lease and margin the agent was given in its last Welcome (null: an agent from before leases). */
  leaseMs: number | null;
  leaseMarginMs: number | null;
  /** The run's cancel grace, which the agent waits out after its lease before SIGKILL. */
  cancelGraceMs: number;
}

/** The lease of the agent holding this attempt; undefined when the attempt is no longer live with that agent. */
export async function attemptLease(db: Executor, attempt: { jobId: string; agentId: string; attempt: number }): Promise<AttemptLease | undefined> {
  const [row] = await db
    .select({
      silentMs: sql<string | null>`extract(epoch from (now() - greatest(${agents.lastHeartbeatAt}, (select max(${gatewayStarts.startedAt}) from ${gatewayStarts})))) * 1000`,
      leaseMs: agents.leaseMs,
      leaseMarginMs: agents.leaseMarginMs,
      timeouts: jobs.timeouts,
    })
    .from(jobs)
    .innerJoin(agents, eq(agents.id, jobs.agentId))
    .where(and(eq(jobs.id, attempt.jobId), eq(jobs.agentId, attempt.agentId), eq(jobs.attempt, attempt.attempt), inArray(jobs.status, ['assigned', 'running'])));
  if (!row) return undefined;
  return {
    // Never heard at all (and no gateway start recorded): silent for as long as can be.
    silentMs: row.silentMs === null ? Number.MAX_SAFE_INTEGER : Math.max(0, Number(row.silentMs)),
    leaseMs: row.leaseMs,
    leaseMarginMs: row.leaseMarginMs,
    cancelGraceMs: row.timeouts.cancelGraceMs,
  };
}

/** The live attempts of these jobs: who holds each (for a heartbeat naming runs the server may have moved). */
export async function liveHolders(db: Executor, jobIds: string[]): Promise<{ id: string; agentId: string | null; attempt: number; status: JobRow['status']; reported: boolean }[]> {
  if (jobIds.length === 0) return [];
  return db
    .select({ id: jobs.id, agentId: jobs.agentId, attempt: jobs.attempt, status: jobs.status, reported: sql<boolean>`${jobs.reportedOutcome} is not null` })
    .from(jobs)
    .where(inArray(jobs.id, jobIds));
}

/** The jobs an agent holds now: assigned to it and not finished. */
export async function listHeldJobRows(db: Executor, agentId: string): Promise<JobRow[]> {
  return db
    .select()
    .from(jobs)
    .where(and(eq(jobs.agentId, agentId), inArray(jobs.status, ['assigned', 'running'])));
}
