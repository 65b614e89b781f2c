// The SQL of runs' changes and their patches (agent.proto, RunChange and PatchChunk).
import { and, eq, or, sql } from 'drizzle-orm';
import { isPglite, type Executor } from './client.js';
import { jobs, runChanges, runPatchChunks, type RunChangeRow } from './schema/index.js';

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

/**
 * Stores one chunk while that agent still holds `attempt` of the job (the same fence as log lines,
 * see insertLines). Returns false when the fence refused it. A chunk already stored at that offset
 * is left as it was.
 */
export async function insertPatchChunk(db: Executor, run: { jobId: string; attempt: number; agentId: string }, offset: number, data: Uint8Array): Promise<boolean> {
  const result = await db.execute<{ held: number }>(sql`
    with fence as (
      select 1 from ${jobs} where ${jobs.id} = ${run.jobId} and ${jobs.agentId} = ${run.agentId} and ${jobs.attempt} = ${run.attempt} for share
    ), stored as (
      insert into ${runPatchChunks} (job_id, attempt, byte_offset, data)
      select ${run.jobId}::uuid, ${run.attempt}::int, ${offset}::bigint, ${byteaValue(db, data)}
      where exists (select 1 from fence) on conflict do nothing returning 1
    )
    select (select count(*) from fence)::int as held`);
  return Number((result as unknown as { rows: { held: number }[] }).rows[0]?.held ?? 0) > 0;
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
