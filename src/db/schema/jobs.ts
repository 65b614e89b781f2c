import { sql } from 'drizzle-orm';
import { bigint, bigserial, check, index, integer, jsonb, pgTable, text, uniqueIndex, uuid, type AnyPgColumn } from 'drizzle-orm/pg-core';
import type { JobTimeouts, JobTraceContext, ReportedOutcome, StopRequest } from '../../domain/job.js';
import { timestamptz } from './columns.js';
import { jobEventTypeEnum, jobStatusEnum, queueTypeEnum } from './enums.js';
import { repositories } from './repositories.js';

export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    orgId: uuid('org_id').notNull(),
    repoId: uuid('repo_id')
      .notNull()
      .references(() => repositories.id),
    queueType: queueTypeEnum('queue_type').notNull(),
    prompt: text('prompt').notNull(),
    status: jobStatusEnum('status').notNull().default('queued'),
    parentJobId: uuid('parent_job_id').references((): AnyPgColumn => jobs.id),
    labels: text('labels').array().notNull().default(sql`'{}'::text[]`),
    // The run number: each assignment takes the next, so (job, attempt) names one run for good.
    attempt: integer('attempt').notNull().default(0),
    // Runs an agent declined before starting them: they do not count against max_attempts.
    declinedAttempts: integer('declined_attempts').notNull().default(0),
    // No default here: openapi.yaml states it (CreateJobRequest.maxAttempts), and every insert names it.
    maxAttempts: integer('max_attempts').notNull(),
    agentId: uuid('agent_id'),
    exitCode: integer('exit_code'),
    failureReason: text('failure_reason'),
    createdBy: text('created_by').notNull(),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
    assignedAt: timestamptz('assigned_at'),
    startedAt: timestamptz('started_at'),
    finishedAt: timestamptz('finished_at'),
    cancelRequestedAt: timestamptz('cancel_requested_at'),
    // The per-job limits the workflow runs with, fixed at creation (sent to the agent with the assignment).
    timeouts: jsonb('timeouts').$type<JobTimeouts>().notNull(),
    // Task tokens (base64) of the workflow's waiting activities: claimJob waits for an agent to take
    // the job, executeJob for the agent to finish it. The gateway completes them with these.
    claimTaskToken: text('claim_task_token'),
    executeTaskToken: text('execute_task_token'),
    // What the agent reported before executeJob had recorded its token (a job can finish that fast):
    // executeJob returns it as soon as it starts.
    reportedOutcome: jsonb('reported_outcome').$type<ReportedOutcome>(),
    // The workflow asked the agent to stop this attempt (cancel, run timeout, start deadline). Kept
    // so that an agent that missed the request (its gateway was down, the notification was lost)
    // is told again when it reconnects or next heartbeats.
    stopRequest: jsonb('stop_request').$type<StopRequest>(),
    // Agents number each attempt's log lines from 1; stored lines are numbered from this base, so a
    // retried job's log continues after the lines of earlier attempts.
    logSeqBase: bigint('log_seq_base', { mode: 'number' }).notNull().default(0),
    // The number of the job's last event. Each status change takes the next one in the UPDATE that
    // makes it, which sees the row as the last writer left it, so events are numbered from 1 without
    // gaps or duplicates even when changes race (a max(seq) + 1 read in the same statement would
    // see only what was committed when the statement began).
    eventSeq: integer('event_seq').notNull().default(0),
    // The trace the job belongs to (null when the server that created it was not tracing): read by
    // the workflow starter and by the gateway's assignment, on any replica and after any restart.
    traceContext: jsonb('trace_context').$type<JobTraceContext>(),
  },
  (t) => [
    // Listing: newest first, keyset-paginated on (created_at, id).
    index('jobs_org_created_idx').on(t.orgId, t.createdAt.desc(), t.id.desc()),
    // Dispatch: the queued jobs of one organisation in dispatch order (rework first, then FIFO).
    index('jobs_dispatch_idx')
      .on(t.orgId, sql`(${t.queueType} = 'rework') desc`, t.createdAt, t.id)
      .where(sql`${t.status} = 'queued'`),
    index('jobs_agent_idx').on(t.agentId).where(sql`${t.status} in ('assigned', 'running')`),
    // The gateways' sweep for claims and reports that never reached their workflows: live jobs by age.
    index('jobs_live_assigned_idx').on(t.assignedAt).where(sql`${t.status} in ('assigned', 'running')`),
    index('jobs_repo_idx').on(t.repoId),
    // A job's revisions (JobDetail.revisions, listJobs?parentJobId=), in creation order.
    index('jobs_parent_idx').on(t.parentJobId, t.createdAt.desc(), t.id.desc()).where(sql`${t.parentJobId} is not null`),
    check('jobs_attempt_within_limit', sql`${t.attempt} >= 0 and ${t.attempt} - ${t.declinedAttempts} <= ${t.maxAttempts}`),
    check('jobs_rework_has_parent', sql`(${t.queueType} = 'rework') = (${t.parentJobId} is not null)`),
  ],
);

export type { ReportedOutcome, StopRequest } from '../../domain/job.js';

export const jobEvents = pgTable(
  'job_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    jobId: uuid('job_id')
      .notNull()
      .references(() => jobs.id, { onDelete: 'cascade' }),
    // Per-job order from 1, without gaps: the job's event_seq when the event was written.
    seq: integer('seq').notNull(),
    type: jobEventTypeEnum('type').notNull(),
    status: jobStatusEnum('status').notNull(),
    attempt: integer('attempt').notNull(),
    agentId: uuid('agent_id'),
    detail: text('detail'),
    at: timestamptz('at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('job_events_job_seq_idx').on(t.jobId, t.seq)],
);

export type JobRow = typeof jobs.$inferSelect;
export type NewJobRow = typeof jobs.$inferInsert;
export type JobEventRow = typeof jobEvents.$inferSelect;
