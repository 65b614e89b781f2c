// The SQL of jobs and their events. Every status change goes through `transition`, which updates the
// row and appends its event in one statement, so the history never disagrees with the row (and the
// event takes its number from the row: see jobs.eventSeq). The
// writes on a job's hot path (dispatch, start, the workflow's tokens, the agent's outcome) are single
// conditional statements rather than lock-then-update transactions: a job costs each of them one
// round trip, and the row is locked only for that statement.
import { and, asc, count, desc, eq, inArray, isNotNull, isNull, notInArray, sql, type AnyColumn, type SQL } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { Executor } from './client.js';
import { storedAnswerSql, type KeyScope, type StoredAnswer } from './idempotency-keys.repository.js';
import { jobEvents, jobs, repositories, terminalJobStatuses, workflowStarts, type JobEventRow, type JobEventType, type JobRow, type JobStatus, type NewJobRow, type QueueType, type ReportedOutcome, type StopRequest } from './schema/index.js';

export interface JobListFilter {
  statuses?: readonly JobStatus[] | undefined;
  queueType?: QueueType | undefined;
  repoId?: string | undefined;
  parentJobId?: string | undefined;
  /** Keyset position: only jobs strictly older than this. */
  before?: { createdAt: Date; id: string } | undefined;
}

export interface EventInput {
  type: JobEventType;
  detail?: string | null;
  agentId?: string | null;
}

/**
 * Stores a new job with its `created` event and its row in the workflow-start outbox, in one
 * statement: a stored job always has both, and costs one round trip inside the caller's
 * transaction (which holds the repository).
 */
export async function insertJob(tx: Executor, values: NewJobRow): Promise<JobRow> {
  const job = tx.$with('job').as(tx.insert(jobs).values({ ...values, eventSeq: 1 }).returning());
  const recorded = tx.$with('recorded', {}).as(eventInsert(job, { type: 'created' }));
  const outboxed = tx.$with('outboxed', {}).as(sql`insert into ${workflowStarts} (${sql.identifier(workflowStarts.jobId.name)}) select ${job.id} from ${job}`);
  const [row] = await tx.with(job, recorded, outboxed).select().from(job);
  if (!row) throw new Error('insert into jobs returned no row');
  return row;
}

/**
 * What a submission checks first, in one query: whether the repository is live, how many jobs the
 * organisation has queued, and, for a request with an Idempotency-Key, what that key answered before.
 */
export async function submissionCheck(
  db: Executor,
  orgId: string,
  repoId: string,
  key?: KeyScope,
): Promise<{ repositoryLive: boolean; queued: number; answered: StoredAnswer | null }> {
  const [row] = await db
    .select({
      repositoryLive: sql<boolean>`exists (select 1 from ${repositories} where ${and(eq(repositories.orgId, orgId), eq(repositories.id, repoId), isNull(repositories.deletedAt))})`,
      queued: sql<number>`(select count(*) from ${jobs} where ${and(eq(jobs.orgId, orgId), eq(jobs.status, 'queued'))})`.mapWith(Number),
      answered: key ? storedAnswerSql(key) : sql<StoredAnswer | null>`null::jsonb`,
    })
    .from(sql`(select 1) as one`);
  return row ?? { repositoryLive: false, queued: 0, answered: null };
}

export async function findJob(db: Executor, orgId: string, jobId: string): Promise<JobRow | undefined> {
  const [row] = await db
    .select()
    .from(jobs)
    .where(and(eq(jobs.orgId, orgId), eq(jobs.id, jobId)));
  return row;
}

export async function findJobById(db: Executor, jobId: string): Promise<JobRow | undefined> {
  const [row] = await db.select().from(jobs).where(eq(jobs.id, jobId));
  return row;
}

/** Locks the job row for the rest of the transaction. */
export async function lockJob(tx: Executor, orgId: string, jobId: string): Promise<JobRow | undefined> {
  const [row] = await tx
    .select()
    .from(jobs)
    .where(and(eq(jobs.orgId, orgId), eq(jobs.id, jobId)))
    .for('update');
  return row;
}

export async function listJobs(db: Executor, orgId: string, filter: JobListFilter, limit: number): Promise<JobRow[]> {
  const conditions: SQL[] = [eq(jobs.orgId, orgId)];
  if (filter.statuses?.length) conditions.push(inArray(jobs.status, [...filter.statuses]));
  if (filter.queueType) conditions.push(eq(jobs.queueType, filter.queueType));
  if (filter.repoId) conditions.push(eq(jobs.repoId, filter.repoId));
  if (filter.parentJobId) conditions.push(eq(jobs.parentJobId, filter.parentJobId));
  if (filter.before) conditions.push(sql`(${jobs.createdAt}, ${jobs.id}) < (${filter.before.createdAt}, ${filter.before.id})`);
  return db
    .select()
    .from(jobs)
    .where(and(...conditions))
    .orderBy(desc(jobs.createdAt), desc(jobs.id))
    .limit(limit);
}

/** The ids of the rework jobs that revise this job, oldest first, at most `limit`. */
export async function listRevisionIds(db: Executor, jobId: string, limit: number): Promise<string[]> {
  const rows = await db.select({ id: jobs.id }).from(jobs).where(eq(jobs.parentJobId, jobId)).orderBy(asc(jobs.createdAt), asc(jobs.id)).limit(limit);
  return rows.map((row) => row.id);
}

export async function listEvents(db: Executor, jobId: string): Promise<JobEventRow[]> {
  return db.select().from(jobEvents).where(eq(jobEvents.jobId, jobId)).orderBy(asc(jobEvents.seq));
}

export async function countUnfinishedForRepo(db: Executor, repoId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(jobs)
    .where(and(eq(jobs.repoId, repoId), notInArray(jobs.status, [...terminalJobStatuses])));
  return row?.n ?? 0;
}

/**
 * Moves a job to `to` if it is in one of `from` (and matches `also`), applying `patch`, and records
 * the event. Returns the updated row, or undefined when the job was not in an allowed state (the
 * caller decides whether that is a conflict or an idempotent repeat).
 */
export async function transition(
  db: Executor,
  jobId: string,
  from: readonly JobStatus[],
  to: JobStatus,
  patch: Omit<PgUpdateSetSource<typeof jobs>, 'id' | 'orgId' | 'status'>,
  event: EventInput,
  also?: SQL,
): Promise<JobRow | undefined> {
  return transitionWhere(db, also ? and(eq(jobs.id, jobId), also)! : eq(jobs.id, jobId), from, to, patch, event);
}

/**
 * `transition` of the job `which` selects (dispatch names it by a subquery that picks and locks it).
 * The event is inserted by the same statement, from the updated row (a data-modifying CTE), so it
 * commits with the change whether or not the caller holds a transaction.
 */
export async function transitionWhere(
  db: Executor,
  which: SQL,
  from: readonly JobStatus[],
  to: JobStatus,
  patch: Omit<PgUpdateSetSource<typeof jobs>, 'id' | 'orgId' | 'status'>,
  event: EventInput,
): Promise<JobRow | undefined> {
  const moved = db.$with('moved').as(
    db
      .update(jobs)
      .set({ ...patch, status: to, updatedAt: sql`now()`, eventSeq: sql`${jobs.eventSeq} + 1` })
      .where(and(which, inArray(jobs.status, [...from])))
      .returning(),
  );
  const recorded = db.$with('recorded', {}).as(eventInsert(moved, event));
  const [row] = await db.with(moved, recorded).select().from(moved);
  return row;
}

/** The insert of the event of each job row a data-modifying CTE (`changed`) returns, as that row now is. */
function eventInsert(changed: { id: AnyColumn; eventSeq: AnyColumn; status: AnyColumn; attempt: AnyColumn; agentId: AnyColumn }, event: EventInput): SQL {
  const column = (c: { name: string }) => sql.identifier(c.name);
  return sql`insert into ${jobEvents} (${column(jobEvents.jobId)}, ${column(jobEvents.seq)}, ${column(jobEvents.type)}, ${column(jobEvents.status)}, ${column(jobEvents.attempt)}, ${column(jobEvents.agentId)}, ${column(jobEvents.detail)})
    select ${changed.id}, ${changed.eventSeq}, ${event.type}::job_event_type, ${changed.status}, ${changed.attempt}, ${event.agentId ? sql`${event.agentId}::uuid` : changed.agentId}, ${event.detail ?? null}::text
    from ${changed}`;
}

/**
 * Records the claim step's task token while the job is still queued. False when a dispatcher was
 * quicker (or the job ended): the caller reads the job to see which.
 */
export async function recordClaimToken(db: Executor, jobId: string, taskToken: string): Promise<boolean> {
  const rows = await db
    .update(jobs)
    .set({ claimTaskToken: taskToken })
    .where(and(eq(jobs.id, jobId), eq(jobs.status, 'queued')))
    .returning({ id: jobs.id });
  return rows.length > 0;
}

/**
 * Records the execute step's task token while the attempt is live and its outcome not yet reported.
 * False otherwise: the caller reads the job for the outcome (or why it cannot execute).
 */
export async function recordExecuteToken(db: Executor, jobId: string, taskToken: string): Promise<boolean> {
  const rows = await db
    .update(jobs)
    .set({ executeTaskToken: taskToken })
    .where(and(eq(jobs.id, jobId), inArray(jobs.status, ['assigned', 'running']), isNull(jobs.reportedOutcome)))
    .returning({ id: jobs.id });
  return rows.length > 0;
}

/** The attempt as one agent holds it: a condition for writes only that agent may make. */
export function heldBy(holder: { orgId: string; agentId: string; attempt: number }): SQL {
  return and(eq(jobs.orgId, holder.orgId), eq(jobs.agentId, holder.agentId), eq(jobs.attempt, holder.attempt))!;
}

/**
 * Records the agent's outcome of a live attempt it holds, once. Returns the execute step's task
 * token (null until that step waits), or undefined when nothing was recorded (not held, already
 * reported, or ended): the caller reads the job to tell which.
 */
export async function recordOutcome(db: Executor, jobId: string, holder: { orgId: string; agentId: string; attempt: number }, outcome: ReportedOutcome): Promise<{ executeTaskToken: string | null } | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ reportedOutcome: outcome })
    .where(and(eq(jobs.id, jobId), heldBy(holder), inArray(jobs.status, ['assigned', 'running']), isNull(jobs.reportedOutcome)))
    .returning({ executeTaskToken: jobs.executeTaskToken });
  return row;
}

/**
 * Records that the agent running this attempt was asked to stop it, while the attempt is live.
 * Returns the job (for its agent), or undefined when that attempt is no longer live.
 */
export async function recordStopRequest(db: Executor, jobId: string, request: StopRequest): Promise<JobRow | undefined> {
  const [row] = await db
    .update(jobs)
    .set({ stopRequest: request })
    .where(and(eq(jobs.id, jobId), eq(jobs.attempt, request.attempt), inArray(jobs.status, ['assigned', 'running'])))
    .returning();
  return row;
}

/**
 * Claims whose workflow never heard of them: the job is assigned but its execute step has not
 * recorded its token a while later, because the process that claimed it died before completing the
 * claim step on Temporal, Temporal was away, or the claim step's activity was lost with its worker
 * before it recorded its own token. Delivering them again is harmless (Temporal refuses a second
 * completion; the workflow ignores a claim of a run it has claimed).
 */
export async function listStalledClaims(db: Executor, olderThanMs: number, limit: number): Promise<Pick<JobRow, 'id' | 'agentId' | 'attempt' | 'claimTaskToken' | 'traceContext'>[]> {
  return db
    .select({ id: jobs.id, agentId: jobs.agentId, attempt: jobs.attempt, claimTaskToken: jobs.claimTaskToken, traceContext: jobs.traceContext })
    .from(jobs)
    .where(
      and(
        inArray(jobs.status, ['assigned', 'running']),
        isNull(jobs.executeTaskToken),
        sql`${jobs.assignedAt} < now() - ${`${olderThanMs} milliseconds`}::interval`,
      ),
    )
    .orderBy(asc(jobs.assignedAt))
    .limit(limit);
}

/**
 * Agents' reports recorded on jobs whose workflow has not acted on them: the report is on the row and
 * the execute step waits (its token recorded), because the process that recorded it died before
 * handing it to Temporal, or Temporal was away. Delivering them again is harmless (Temporal refuses
 * a second completion). Jobs assigned in the last `olderThanMs` are left to the normal path.
 */
export async function listUndeliveredReports(db: Executor, olderThanMs: number, limit: number): Promise<Pick<JobRow, 'id' | 'executeTaskToken' | 'reportedOutcome'>[]> {
  return db
    .select({ id: jobs.id, executeTaskToken: jobs.executeTaskToken, reportedOutcome: jobs.reportedOutcome })
    .from(jobs)
    .where(
      and(
        inArray(jobs.status, ['assigned', 'running']),
        isNotNull(jobs.reportedOutcome),
        isNotNull(jobs.executeTaskToken),
        sql`${jobs.assignedAt} < now() - ${`${olderThanMs} milliseconds`}::interval`,
      ),
    )
    .orderBy(asc(jobs.assignedAt))
    .limit(limit);
}
