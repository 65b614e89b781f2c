import { bigint, integer, pgTable, primaryKey, text, uuid } from 'drizzle-orm/pg-core';
import { timestamptz } from './columns.js';
import { logStreamEnum } from './enums.js';
import { jobs } from './jobs.js';

export const logLines = pgTable(
  'log_lines',
  {
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    // Per-job sequence chosen by the agent; (job, seq) makes a resent batch a no-op.
    seq: bigint('seq', { mode: 'number' }).notNull(),
    // The run (jobs.attempt) the line belongs to: readers of a retried job's log tell its runs apart.
    attempt: integer('attempt').notNull(),
    at: timestamptz('at').notNull(),
    stream: logStreamEnum('stream').notNull(),
    text: text('text').notNull(),
  },
  (t) => [primaryKey({ name: 'log_lines_pk', columns: [t.jobId, t.seq] })],
);

export type LogLineRow = typeof logLines.$inferSelect;
