// The SQL of runs' changes and their patches (agent.proto, RunChange and PatchChunk).
import { and, eq, or, sql } from 'drizzle-orm';
import { isPglite, type Executor } from './client.js';
import { terminalJobStatuses, type JobStatus } from '../domain/job.js';
import { jobs, runChanges, runPatchChunks, type ReportedOutcome, type RunChangeRow } from './schema/index.js';

export type NewRunChange = Omit<RunChangeRow, 'recordedAt'>;

/** Records a run's change; a repeat (a JobFinished sent again) leaves the first as it was. */
export async function insertChange(db: Executor, change: NewRunChange): Promise<void> {
  await db.insert(runChanges).values(change).onConflictDoNothing();
}

export async function findChange(db: Executor, jobId: string, attempt: number): Promise<RunChangeRow | undefined> {
  const [row] = await db.select().from(runChanges).where(and(eq(runChanges.jobId, jobId), eq(runChanges.attempt, attempt)));
  return row;
}

/** The changes of these runs, by job id (a job's change is the one of the run it succeeded with). */
export async function findChanges(db: Executor, runs: readonly { jobId: string; attempt: number }[]): Promise<Map<string, RunChangeRow>> {
  if (runs.length === 0) return new Map();
  const rows = await db
    .select()
    .from(runChanges)
    .where(or(...runs.map((run) => and(eq(runChanges.jobId, run.jobId), eq(runChanges.attempt, run.attempt)))));
  return new Map(rows.map((row) => [row.jobId, row]));
}

/**
 * The jobs that continue `jobId`'s change and stand in the way of another rework of it: a rework
 * still to run (queued, assigned, running) or one that succeeded with commits of its own, which
 * moved the branch. Reworks that failed or were cancelled, or changed nothing, left it as it was.
 */
export async function continuations(db: Executor, jobId: string): Promise<{ id: string; status: string }[]> {
  const rows = await db.execute<{ id: string; status: string }>(sql`
    select j.id, j.status from ${jobs} j
    left join ${runChanges} c on c.job_id = j.id and c.attempt = j.attempt
    where j.parent_job_id = ${jobId}
      and (j.status in ('queued', 'assigned', 'running') or (j.status = 'succeeded' and c.branch is not null))
    order by j.created_at
    limit 5`);
  return (rows as unknown as { rows: { id: string; status: string }[] }).rows;
}

/** Bytes of the run's patch stored from offset 0. */
export async function storedPatchBytes(db: Executor, jobId: string, attempt: number): Promise<number> {
  const result = await db.execute<{ end: string | number | null }>(sql`
    select max(${runPatchChunks.byteOffset} + octet_length(${runPatchChunks.data})) as end
    from ${runPatchChunks} where ${runPatchChunks.jobId} = ${jobId} and ${runPatchChunks.attempt} = ${attempt}`);
  return Number((result as unknown as { rows: { end: string | number | null }[] }).rows[0]?.end ?? 0);
}

/** The job and its patch as storePatchChunks found them, and whether it stored the chunks. */
export interface PatchChunksStored {
  /** Undefined when there is no such job. */
  job: { orgId: string; agentId: string | null; attempt: number; status: JobStatus; reportedKind: ReportedOutcome['kind'] | null } | undefined;
  /** Bytes of the run's patch stored from offset 0 before the chunks. */
  storedBefore: number;
  /** Whether the chunks' bytes past `storedBefore` went in. */
  stored: boolean;
}

/** What storePatchChunks's statement answers: the job's columns are null when there is no such job. */
type PatchChunksRow = { org_id: string | null; agent_id: string | null; attempt: number | null; status: JobStatus | null; reported_kind: ReportedOutcome['kind'] | null; stored_before: string | number; stored: number };

/**
 * Stores consecutive chunks of a run's patch, starting at `offset`, each a row at its offset (only
 * the bytes past what is stored), in one statement: one round trip per group of chunks, however many
 * rows. The chunks go in only while that agent holds `attempt` of the job (the row is locked, the
 * same fence as log lines, see insertLines), its run has reported no outcome and the job has not
 * ended, and `offset` leaves no gap; the caller tells which rule refused them from what is returned.
 */
export async function storePatchChunks(
  db: Executor,
  run: { jobId: string; attempt: number; orgId: string; agentId: string },
  offset: number,
  pieces: readonly Uint8Array[],
): Promise<PatchChunksStored> {
  let at = offset;
  const rows = sql.join(
    pieces.map((piece) => {
      const row = sql`(${at}::bigint, ${byteaValue(db, piece)})`;
      at += piece.byteLength;
      return row;
    }),
    sql`, `,
  );
  const result = await db.execute<PatchChunksRow>(sql`
    with job as (
      select org_id, agent_id, attempt, status, reported_outcome->>'kind' as reported_kind from ${jobs} where id = ${run.jobId} for share
    ), patch as (
      select coalesce(max(byte_offset + octet_length(data)), 0)::bigint as bytes from ${runPatchChunks} where job_id = ${run.jobId} and attempt = ${run.attempt}
    ), allowed as (
      select 1 from job, patch
      where job.org_id = ${run.orgId} and job.agent_id = ${run.agentId} and job.attempt = ${run.attempt}
        and job.status not in (${sql.join(terminalJobStatuses.map((status) => sql`${status}`), sql`, `)}) and job.reported_kind is null
        and ${offset}::bigint <= patch.bytes
    ), fresh as (
      insert into ${runPatchChunks} (job_id, attempt, byte_offset, data)
      select ${run.jobId}::uuid, ${run.attempt}::int, greatest(chunk.byte_offset, patch.bytes), substring(chunk.data from (greatest(patch.bytes - chunk.byte_offset, 0) + 1)::int)
      from (values ${rows}) as chunk (byte_offset, data), patch
      where exists (select 1 from allowed) and chunk.byte_offset + octet_length(chunk.data) > patch.bytes
      on conflict do nothing returning 1
    )
    select job.org_id, job.agent_id, job.attempt, job.status, job.reported_kind, patch.bytes as stored_before, (select count(*) from allowed)::int as stored
    from patch left join job on true`);
  const row = (result as unknown as { rows: PatchChunksRow[] }).rows[0];
  if (!row) throw new Error('storing patch chunks returned no row');
  return {
    job: row.org_id === null ? undefined : { orgId: row.org_id, agentId: row.agent_id, attempt: Number(row.attempt), status: row.status!, reportedKind: row.reported_kind },
    storedBefore: Number(row.stored_before),
    stored: Number(row.stored) > 0,
  };
}

/**
 * Bytes for a bytea column. node-postgres binds a Buffer as binary, with no copy beyond its own;
 * PGlite's bytea conversion works a byte at a time (about 0.4 s per MiB, blocking the event loop),
 * so it gets hex text, which Buffer encodes in microseconds. Reads come back as hex text on both
 * (encode(..., 'hex')), which is what node-postgres parses bytea from anyway.
 */
function byteaValue(db: Executor, data: Uint8Array) {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return isPglite(db) ? sql`decode(${bytes.toString('hex')}, 'hex')` : sql`${sql.param(bytes)}::bytea`;
}

/** Chunks read per query while a patch is served: a few MiB in memory at most. */
const CHUNKS_PER_PAGE = 4;

/**
 * The first `size` bytes of the run's patch, a page of chunks at a time, in offset order. Should two
 * chunks overlap (two streams of one agent stored the same bytes at different offsets), the overlap
 * is served once.
 */
export async function* readPatch(db: Executor, jobId: string, attempt: number, size: number): AsyncGenerator<Uint8Array> {
  let position = 0;
  while (position < size) {
    const result = await db.execute<{ byte_offset: string | number; data: string }>(sql`
      select ${runPatchChunks.byteOffset} as byte_offset, encode(${runPatchChunks.data}, 'hex') as data from ${runPatchChunks}
      where ${runPatchChunks.jobId} = ${jobId} and ${runPatchChunks.attempt} = ${attempt}
        and ${runPatchChunks.byteOffset} + octet_length(${runPatchChunks.data}) > ${position}
      order by ${runPatchChunks.byteOffset}
      limit ${CHUNKS_PER_PAGE}`);
    const rows = (result as unknown as { rows: { byte_offset: string | number; data: string }[] }).rows;
    if (rows.length === 0) return;
    for (const row of rows) {
      const offset = Number(row.byte_offset);
      if (offset > position) return; // a gap: what follows is not part of the stored patch
      const data = Buffer.from(row.data, 'hex').subarray(position - offset, size - offset);
      if (data.byteLength === 0) continue;
      position += data.byteLength;
      yield data;
    }
  }
}
