// The patch storage baseline: the same bytes the agents send (the same jobs, the same 1 MiB chunks
// at the same offsets) inserted into run_patch_chunks by a plain process, one INSERT a chunk,
// parameters bound, and nothing else (no lookup of the job, no stored-bytes read, no fence). Each
// connection takes whole jobs and stores their chunks in order, as a gateway session stores one
// agent's. The rows go under an attempt no run has, and are deleted afterwards.
import { randomBytes } from 'node:crypto';
import type { SqlConnection } from './log-baseline.js';
import type { Spread } from './patch-clients.js';

export interface PatchBaselineSpec {
  jobIds: string[];
  /** An attempt none of the jobs has run, so the rows are apart from the agents'. */
  attempt: number;
  bytesPerJob: number;
  chunkBytes: number;
}

export interface PatchBaselineResult {
  chunks: number;
  bytes: number;
  seconds: number;
  /** Each INSERT, ms. */
  statement: Spread;
}

/** Random base64 text, as the agents' patches are (what the database makes of it is the same). */
export function baselinePatch(bytes: number): Buffer {
  return Buffer.from(randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64').slice(0, bytes), 'latin1');
}

export async function insertPatchBaseline(connections: SqlConnection[], spec: PatchBaselineSpec): Promise<PatchBaselineResult> {
  const patch = baselinePatch(spec.bytesPerJob);
  const statementMs: number[] = [];
  const jobs = [...spec.jobIds];
  const started = performance.now();
  await Promise.all(
    connections.map(async (connection) => {
      for (let jobId = jobs.shift(); jobId !== undefined; jobId = jobs.shift()) {
        for (let offset = 0; offset < patch.byteLength; offset += spec.chunkBytes) {
          const data = patch.subarray(offset, offset + spec.chunkBytes);
          const t0 = performance.now();
          await connection.query('insert into run_patch_chunks (job_id, attempt, byte_offset, data) values ($1::uuid, $2::int, $3::bigint, $4::bytea)', [jobId, spec.attempt, offset, data]);
          statementMs.push(performance.now() - t0);
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sorted = statementMs.sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { chunks: sorted.length, bytes: spec.jobIds.length * spec.bytesPerJob, seconds, statement: { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN } };
}
