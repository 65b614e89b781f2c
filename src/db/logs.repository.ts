// The SQL of log lines, keyed by (job, seq).
import { and, asc, eq, gt, inArray, max, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { jobs, logLines, type JobStatus, type LogLineRow } from './schema/index.js';

export async function linesAfter(db: Executor, jobId: string, after: number, limit: number): Promise<LogLineRow[]> {
  return db
    .select()
    .from(logLines)
    .where(and(eq(logLines.jobId, jobId), gt(logLines.seq, after)))
    .orderBy(asc(logLines.seq))
    .limit(limit);
}

export type NewLogLine = Omit<LogLineRow, 'jobId'>;

/**
 * Stores one job's lines idempotently: a line already stored under (job, seq) is left as it was.
 * The columns travel as four arrays (unnest), so the statement has five parameters however many
 * lines a batch holds. Drizzle's insert builder (2,500 parameters for 500 lines) spent 10-14 ms of
 * the server's CPU per batch, more than the database took to store it, and capped one agent's
 * log at ~20,000 lines/s. The stream goes as text[], cast per row: PGlite cannot bind an array of
 * an enum type.
 *
 * With `fence`, the lines are stored only while that agent still holds `attempt` of the job,
 * checked in the same statement under a share lock on the job row: a requeue (which updates the
 * row) either waits for this insert or is seen by it, so a run the server has moved on from cannot
 * add a line after the requeue's marker. Returns false when the fence refused the lines.
 */
export async function insertLines(db: Executor, jobId: string, attempt: number, lines: readonly Omit<NewLogLine, 'attempt'>[], fence?: { agentId: string }): Promise<boolean> {
  if (lines.length === 0) return true;
  const rows = sql`
    select ${jobId}::uuid, line.seq, ${attempt}::int, line.at, line.stream::log_stream, line.text
    from unnest(
      ${sql.param(lines.map((l) => l.seq))}::bigint[],
      ${sql.param(lines.map((l) => l.at.toISOString()))}::timestamptz[],
      ${sql.param(lines.map((l) => l.stream))}::text[],
      ${sql.param(lines.map((l) => l.text))}::text[]
    ) as line(seq, at, stream, text)`;
  if (!fence) {
    await db.execute(sql`insert into ${logLines} (job_id, seq, attempt, at, stream, text) ${rows} on conflict do nothing`);
    return true;
  }
  const result = await db.execute<{ held: number }>(sql`
    with fence as (
      select 1 from ${jobs} where ${jobs.id} = ${jobId} and ${jobs.agentId} = ${fence.agentId} and ${jobs.attempt} = ${attempt} for share
    ), stored as (
      insert into ${logLines} (job_id, seq, attempt, at, stream, text) ${rows} where exists (select 1 from fence) on conflict do nothing returning 1
    )
    select (select count(*) from fence)::int as held`);
  return Number((result as unknown as { rows: { held: number }[] }).rows[0]?.held ?? 0) > 0;
}

/**
 * Writes a line of the server's own into the job's log, after every stored line (the agent's next
 * attempt numbers from after it): where an attempt ended and why, so the log never runs two
 * attempts together unmarked.
 */
export async function appendServerLine(db: Executor, jobId: string, attempt: number, text: string): Promise<void> {
  await db.execute(sql`
    insert into ${logLines} (job_id, seq, attempt, at, stream, text)
    select ${jobId}::uuid, coalesce(max(${logLines.seq}), 0) + 1, ${attempt}::int, now(), 'system'::log_stream, ${text}
    from ${logLines} where ${logLines.jobId} = ${jobId}
    on conflict do nothing`);
}

/** The highest stored sequence number of the job's log, 0 when it has none. */
export async function lastSeq(db: Executor, jobId: string): Promise<number> {
  const [row] = await db.select({ seq: max(logLines.seq) }).from(logLines).where(eq(logLines.jobId, jobId));
  return Number(row?.seq ?? 0);
}

/** What a log stream needs to know of each job: its state and its highest stored line. */
export interface JobLogStateRow {
  jobId: string;
  orgId: string;
  status: JobStatus;
  attempt: number;
  updatedAt: Date;
  exitCode: number | null;
  failureReason: string | null;
  lastSeq: number;
}

/** The log state of each of these jobs (those that exist), in one query however many are followed. */
export async function jobLogStates(db: Executor, jobIds: readonly string[]): Promise<JobLogStateRow[]> {
  if (jobIds.length === 0) return [];
  const rows = await db
    .select({
      jobId: jobs.id,
      orgId: jobs.orgId,
      status: jobs.status,
      attempt: jobs.attempt,
      updatedAt: jobs.updatedAt,
      exitCode: jobs.exitCode,
      failureReason: jobs.failureReason,
      lastSeq: sql<string>`(select coalesce(max(${logLines.seq}), 0) from ${logLines} where ${logLines.jobId} = ${jobs.id})`,
    })
    .from(jobs)
    .where(inArray(jobs.id, [...jobIds]));
  return rows.map((row) => ({ ...row, lastSeq: Number(row.lastSeq) }));
}
