import { index, jsonb, pgTable, primaryKey, smallint, text, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';

/** The operations that take an `Idempotency-Key` (openapi.yaml): a key is scoped to one of them. */
export type IdempotentOperation = 'createJob' | 'createRepository';

/**
 * The answer each `Idempotency-Key` got, per organisation and operation, kept until `expires_at` so a
 * retry is answered with it. A row is written in the same transaction as what the request created,
 * so the primary key lets one request with a key create something; only successful answers are here.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    orgId: uuid('org_id').notNull(),
    operation: text('operation').$type<IdempotentOperation>().notNull(),
    key: text('key').notNull(),
    /** SHA-256 of the request (its canonical JSON): the same key with another request is refused. */
    fingerprint: text('fingerprint').notNull(),
    status: smallint('status').notNull(),
    resourceId: uuid('resource_id').notNull(),
    /** What was created, as the request's answer described it. */
    response: jsonb('response').$type<Record<string, unknown>>().notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    expiresAt: timestamptz('expires_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orgId, t.operation, t.key] }),
    // The sweep deletes the oldest expired keys first.
    index('idempotency_keys_expires_at_idx').on(t.expiresAt),
  ],
);

export type IdempotencyKeyRow = typeof idempotencyKeys.$inferSelect;
