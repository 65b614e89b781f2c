import { sql } from 'drizzle-orm';
import { index, integer, pgTable, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';

export const agentTokens = pgTable(
  'agent_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    orgId: uuid('org_id').notNull(),
    name: text('name').notNull(),
    // The first characters of the secret, so a person can tell tokens apart; never enough to use it.
    prefix: text('prefix').notNull(),
    // SHA-256 of the secret: secrets are 256 random bits, so a slow hash would add nothing.
    secretHash: text('secret_hash').notNull(),
    createdBy: text('created_by').notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    lastUsedAt: timestamptz('last_used_at'),
    revokedAt: timestamptz('revoked_at'),
  },
  (t) => [uniqueIndex('agent_tokens_secret_hash_idx').on(t.secretHash), index('agent_tokens_org_idx').on(t.orgId, t.createdAt)],
);

export const agents = pgTable(
  'agents',
  {
    // Chosen by the agent once and kept, so a reconnect is recognised as the same agent.
    id: uuid('id').primaryKey(),
    orgId: uuid('org_id').notNull(),
    tokenId: uuid('token_id')
      .notNull()
      .references(() => agentTokens.id),
    name: text('name').notNull(),
    version: text('version'),
    labels: text('labels').array().notNull().default(sql`'{}'::text[]`),
    capacity: integer('capacity').notNull().default(1),
    // The replica holding the agent's stream and its session; null while disconnected.
    replica: text('replica'),
    sessionId: uuid('session_id'),
    connectedAt: timestamptz('connected_at'),
    disconnectedAt: timestamptz('disconnected_at'),
    // When a gateway last recorded hearing the agent (its Hello or a Heartbeat), by the database's
    // clock: what the lease rule counts from (see agent.proto). Written before it is acknowledged.
    lastHeartbeatAt: timestamptz('last_heartbeat_at'),
    // The lease this agent was given in its last Welcome, and the margin the server adds: the lease
    // rule counts with the figures the agent itself was told, whatever the configuration is now.
    leaseMs: integer('lease_ms'),
    leaseMarginMs: integer('lease_margin_ms'),
  },
  (t) => [index('agents_org_idx').on(t.orgId)],
);

/**
 * When each gateway replica last started. While no gateway runs, no agent can be heard, so the
 * lease rule counts an agent's silence from the later of its last heartbeat and the latest start.
 */
export const gatewayStarts = pgTable('gateway_starts', {
  replica: text('replica').primaryKey(),
  startedAt: timestamptz('started_at').notNull().defaultNow(),
});

export type AgentTokenRow = typeof agentTokens.$inferSelect;
export type AgentRow = typeof agents.$inferSelect;
