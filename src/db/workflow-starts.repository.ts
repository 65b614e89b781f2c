// The SQL of the workflow-start outbox. Rows are written with their job, by jobs.repository's insertJob.
import { and, eq, inArray, lte, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { jobs, workflowStarts, type JobRow } from './schema/index.js';

/**
 * Leases up to `limit` due starts for `leaseMs` (other starters skip them meanwhile) and returns
 * what each start needs. The lease, not a held transaction, protects them: starts talk to Temporal,
 * and no database lock should wait on that.
 */
export async function leaseDueStarts(db: Executor, limit: number, leaseMs: number): Promise<Pick<JobRow, 'id' | 'maxAttempts' | 'timeouts'>[]> {
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
    .returning({ id: jobs.id, maxAttempts: jobs.maxAttempts, timeouts: jobs.timeouts });
}

export async function completeWorkflowStart(db: Executor, jobId: string): Promise<void> {
  await db.delete(workflowStarts).where(eq(workflowStarts.jobId, jobId));
}

export async function deferWorkflowStart(db: Executor, jobId: string, error: string, delayMs: number): Promise<void> {
  await db
    .update(workflowStarts)
    .set({ lastError: error.slice(0, 2000), notBefore: sql`now() + ${`${delayMs} milliseconds`}::interval` })
    .where(eq(workflowStarts.jobId, jobId));
}
