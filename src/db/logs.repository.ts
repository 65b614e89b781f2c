// The SQL of log lines, keyed by (job, seq).
import { and, asc, eq, gt } from 'drizzle-orm';
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
