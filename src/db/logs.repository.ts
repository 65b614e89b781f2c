// The SQL of log lines, keyed by (job, seq).
import { and, asc, eq, gt, max } from 'drizzle-orm';
import type { Executor } from './client.js';
import { logLines, type LogLineRow } from './schema/index.js';

export async function linesAfter(db: Executor, jobId: string, after: number, limit: number): Promise<LogLineRow[]> {
  return db
    .select()
    .from(logLines)
    .where(and(eq(logLines.jobId, jobId), gt(logLines.seq, after)))
    .orderBy(asc(logLines.seq))
    .limit(limit);
}

/** Stores lines idempotently: a line already stored under (job, seq) is left as it was. */
export async function insertLines(db: Executor, rows: LogLineRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.insert(logLines).values(rows).onConflictDoNothing();
}

/** The highest stored sequence number of the job's log, 0 when it has none. */
export async function lastSeq(db: Executor, jobId: string): Promise<number> {
  const [row] = await db.select({ seq: max(logLines.seq) }).from(logLines).where(eq(logLines.jobId, jobId));
  return Number(row?.seq ?? 0);
}
