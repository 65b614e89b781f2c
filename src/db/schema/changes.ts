import { bigint, boolean, customType, integer, jsonb, pgTable, primaryKey, text, uuid } from 'drizzle-orm/pg-core';
import type { ChangeCommit } from '../../domain/change.js';
import { timestamptz } from './columns.js';
import { jobs } from './jobs.js';

/**
 * The change a run reported with its JobFinished (agent.proto, RunChange), one row per run. The
 * job's change is the row of the attempt it succeeded with; rows of other runs are kept but never
 * shown, like their log lines.
 */
export const runChanges = pgTable(
  'run_changes',
  {
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    attempt: integer('attempt').notNull(),
    // Null when the run changed nothing.
    branch: text('branch'),
    pushed: boolean('pushed').notNull(),
    baseCommit: text('base_commit').notNull(),
    headCommit: text('head_commit').notNull(),
    commits: jsonb('commits').$type<ChangeCommit[]>().notNull(),
    commitCount: integer('commit_count').notNull(),
    filesChanged: integer('files_changed').notNull(),
    insertions: integer('insertions').notNull(),
    deletions: integer('deletions').notNull(),
    summary: text('summary'),
    pullRequestUrl: text('pull_request_url'),
    // The whole patch's size; its bytes are in run_patch_chunks unless it was over the server's limit.
    patchSize: bigint('patch_size', { mode: 'number' }).notNull(),
    patchStored: boolean('patch_stored').notNull(),
    recordedAt: timestamptz('recorded_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'run_changes_pk', columns: [t.jobId, t.attempt] })],
);

const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType: () => 'bytea',
});

/**
 * A run's patch as it arrived, in the agent's chunks: keyed by byte offset, so a resent chunk is
 * stored once, and read back in offset order a page at a time (a patch may be tens of MiB).
 */
export const runPatchChunks = pgTable(
  'run_patch_chunks',
  {
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    attempt: integer('attempt').notNull(),
    byteOffset: bigint('byte_offset', { mode: 'number' }).notNull(),
    data: bytea('data').notNull(),
  },
  (t) => [primaryKey({ name: 'run_patch_chunks_pk', columns: [t.jobId, t.attempt, t.byteOffset] })],
);

export type RunChangeRow = typeof runChanges.$inferSelect;
