// The SQL of the workflow outbox: starts are written with their job (jobs.repository's insertJob),
// cancels with the job's cancel_requested event (enqueueCancel).
import { and, eq, inArray, isNull, lte, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { jobs, workflowStarts, type JobRow } from './schema/index.js';

/**
 * Leases up to `limit` due starts for `leaseMs` (other starters skip them meanwhile) and returns
 * what each start needs. The lease, not a held transaction, protects them: starts talk to Temporal,
 * and no database lock should wait on that.
 */
export interface DueDelivery extends Pick<JobRow, 'id' | 'maxAttempts' | 'timeouts' | 'traceContext'> {
  /** Set: deliver this cancel (starting the workflow too if need be). Null: start the workflow. */
  cancelReason: string | null;
}

export async function leaseDueStarts(db: Executor, limit: number, leaseMs: number): Promise<DueDelivery[]> {
  const due = db
    .select({ jobId: workflowStarts.jobId })
    .from(workflowStarts)
    .where(lte(workflowStarts.notBefore, sql`now()`))
    .orderBy(workflowStarts.notBefore)
    .limit(limit)
    .for('update', { skipLocked: true });
  return db
    .update(workflowStarts)
    .set({ notBefore: sql`now() + ${`${leaseMs} milliseconds`}::interval`, attempts: sql`${workflowStarts.attempts} + 1` })
    .from(jobs)
    .where(and(inArray(workflowStarts.jobId, due), eq(jobs.id, workflowStarts.jobId)))
    .returning({ id: jobs.id, maxAttempts: jobs.maxAttempts, timeouts: jobs.timeouts, traceContext: jobs.traceContext, cancelReason: workflowStarts.cancelReason });
}

/** Starts and cancels written and not yet delivered, however long they have waited. */
export async function countPending(db: Executor): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(workflowStarts);
  return Number(row?.n ?? 0);
}

/**
 * Removes a delivered row, unless a cancel was written to it after it was leased: that one is still
 * to be delivered.
 */
export async function completeWorkflowStart(db: Executor, delivered: Pick<DueDelivery, 'id' | 'cancelReason'>): Promise<void> {
  const sameCancel = delivered.cancelReason === null ? isNull(workflowStarts.cancelReason) : eq(workflowStarts.cancelReason, delivered.cancelReason);
  await db.delete(workflowStarts).where(and(eq(workflowStarts.jobId, delivered.id), sameCancel));
}

/** A cancel for the job's workflow, due now (replacing a start not yet made: the cancel starts it too). */
export async function enqueueCancel(tx: Executor, jobId: string, reason: string): Promise<void> {
  await tx
    .insert(workflowStarts)
    .values({ jobId, cancelReason: reason, notBefore: sql`now()` })
    .onConflictDoUpdate({ target: workflowStarts.jobId, set: { cancelReason: reason, notBefore: sql`now()`, lastError: null } });
}

export async function deferWorkflowStart(db: Executor, jobId: string, error: string, delayMs: number): Promise<void> {
  await db
    .update(workflowStarts)
    .set({ lastError: error.slice(0, 2000), notBefore: sql`now() + ${`${delayMs} milliseconds`}::interval` })
    .where(eq(workflowStarts.jobId, jobId));
}
