import { integer, pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';
import { jobs } from './jobs.js';

/**
 * The transactional outbox of what must reach a job's workflow: its start, written in the same
 * transaction as the job, so a stored job always gets its workflow even if the process dies right
 * after answering 201; and a cancel, written with the job's cancel_requested event, so a recorded
 * cancel always reaches the workflow even if Temporal is away or the process dies after answering.
 */
export const workflowStarts = pgTable('workflow_starts', {
  jobId: uuid('job_id')
    .primaryKey()
    .references(() => jobs.id, { onDelete: 'cascade' }),
  // A starter leases a row by moving this forward; a starter that died lets the lease run out.
  notBefore: timestamptz('not_before').notNull().defaultNow(),
  attempts: integer('attempts').notNull().default(0),
  lastError: text('last_error'),
  // Set: deliver a cancel with this reason (signal-with-start, so it also starts a workflow that
  // has not started yet). Null: only start the workflow.
  cancelReason: text('cancel_reason'),
});
