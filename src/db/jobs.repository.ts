// The SQL of jobs and their events. Every status change goes through `transition`, which updates the
// row and appends the event in the caller's transaction, so the history never disagrees with the row.
import { and, asc, count, desc, eq, inArray, notInArray, sql, type SQL } from 'drizzle-orm';
import type { PgUpdateSetSource } from 'drizzle-orm/pg-core';
import type { Executor } from './client.js';
import { jobEvents, jobs, terminalJobStatuses, type JobEventRow, type JobEventType, type JobRow, type JobStatus, type NewJobRow, type QueueType } from './schema/index.js';

export interface JobListFilter {
  statuses?: readonly JobStatus[] | undefined;
  queueType?: QueueType | undefined;
  repoId?: string | undefined;
  /** Keyset position: only jobs strictly older than this. */
  before?: { createdAt: Date; id: string } | undefined;
}

export interface EventInput {
  type: JobEventType;
  detail?: string | null;
  agentId?: string | null;
}

export async function insertJob(tx: Executor, values: NewJobRow): Promise<JobRow> {
  const [row] = await tx.insert(jobs).values(values).returning();
  if (!row) throw new Error('insert into jobs returned no row');
  await appendEvent(tx, row, { type: 'created' });
  return row;
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
  if (filter.before) conditions.push(sql`(${jobs.createdAt}, ${jobs.id}) < (${filter.before.createdAt}, ${filter.before.id})`);
  return db
    .select()
    .from(jobs)
    .where(and(...conditions))
    .orderBy(desc(jobs.createdAt), desc(jobs.id))
    .limit(limit);
}

export async function listEvents(db: Executor, jobId: string): Promise<JobEventRow[]> {
  return db.select().from(jobEvents).where(eq(jobEvents.jobId, jobId)).orderBy(asc(jobEvents.seq));
}

export async function countQueued(db: Executor, orgId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(jobs)
    .where(and(eq(jobs.orgId, orgId), eq(jobs.status, 'queued')));
  return row?.n ?? 0;
}

export async function countUnfinishedForRepo(db: Executor, repoId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(jobs)
    .where(and(eq(jobs.repoId, repoId), notInArray(jobs.status, [...terminalJobStatuses])));
  return row?.n ?? 0;
}

/**
 * Moves a job to `to` if it is in one of `from`, applying `patch`, and records the event. Returns the
 * updated row, or undefined when the job was not in an allowed state (the caller decides whether
 * that is a conflict or an idempotent repeat).
 */
export async function transition(
  tx: Executor,
  jobId: string,
  from: readonly JobStatus[],
  to: JobStatus,
  patch: Omit<PgUpdateSetSource<typeof jobs>, 'id' | 'orgId' | 'status'>,
  event: EventInput,
): Promise<JobRow | undefined> {
  const [row] = await tx
    .update(jobs)
    .set({ ...patch, status: to, updatedAt: sql`now()` })
    .where(and(eq(jobs.id, jobId), inArray(jobs.status, [...from])))
    .returning();
  if (!row) return undefined;
  await appendEvent(tx, row, event);
  return row;
}

/** Appends an event to a job whose row the caller has locked (by update or select for update). */
export async function appendEvent(tx: Executor, job: JobRow, event: EventInput): Promise<void> {
  await tx.insert(jobEvents).values({
    jobId: job.id,
    seq: sql`(select coalesce(max(${jobEvents.seq}), 0) + 1 from ${jobEvents} where ${jobEvents.jobId} = ${job.id})`,
    type: event.type,
    status: job.status,
    attempt: job.attempt,
    agentId: event.agentId ?? job.agentId,
    detail: event.detail ?? null,
  });
}

/** Updates bookkeeping columns that are no status change (task tokens, reported outcomes). */
export async function updateJob(tx: Executor, jobId: string, patch: Partial<Pick<NewJobRow, 'claimTaskToken' | 'executeTaskToken' | 'reportedOutcome'>>): Promise<void> {
  await tx.update(jobs).set(patch).where(eq(jobs.id, jobId));
}

/** Locks the job row by id alone, for the workflow's and the gateway's bookkeeping. */
export async function lockJobById(tx: Executor, jobId: string): Promise<JobRow | undefined> {
  const [row] = await tx.select().from(jobs).where(eq(jobs.id, jobId)).for('update');
  return row;
}
