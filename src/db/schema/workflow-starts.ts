import { integer, pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';
import { jobs } from './jobs.js';

/**
 * The transactional outbox of workflow starts: a row is written in the same transaction as its job,
 * so a stored job always gets its workflow, even if the process dies right after answering 201.
 */
export const workflowStarts = pgTable('workflow_starts', {
  jobId: uuid('job_id')
    .primaryKey()
    .references(() => jobs.id, { onDelete: 'cascade' }),
  // A starter leases a row by moving this forward; a starter that died lets the lease run out.
  notBefore: timestamptz('not_before').notNull().defaultNow(),
  attempts: integer('attempts').notNull().default(0),
  lastError: text('last_error'),
});
