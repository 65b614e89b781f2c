// The ingest baseline: the same rows the agents print (same jobs, seqs and text sizes), inserted by a
// plain process with multi-row INSERTs of the agents' batch size, parameters bound, and nothing else
// (no lookup of the job, no last-seq read, no ON CONFLICT). Each connection takes whole jobs and
// sends their batches in order, as a gateway session stores one agent's batches.
import { lineText, type BaselineRows, type Percentiles } from './log-clients.js';

/** One database connection: a pg Client, or PGlite itself. */
export interface SqlConnection {
  query(text: string, values: unknown[]): Promise<unknown>;
}

export interface BaselineResult {
  lines: number;
  seconds: number;
  /** Each INSERT statement, ms. */
  statement: Percentiles;
}

export function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

export async function insertBaselineRows(connections: SqlConnection[], rows: BaselineRows): Promise<BaselineResult> {
  const statementMs: number[] = [];
  const jobs = [...rows.jobIds];
  const started = performance.now();
  await Promise.all(
    connections.map(async (connection) => {
      for (let jobId = jobs.shift(); jobId !== undefined; jobId = jobs.shift()) {
        for (let first = 1; first <= rows.linesPerJob; first += rows.batch) {
          const size = Math.min(rows.batch, rows.linesPerJob - first + 1);
          const at = new Date();
          const values: unknown[] = [];
          const tuples: string[] = [];
          for (let i = 0; i < size; i++) {
            const p = i * 6;
            tuples.push(`($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5}, $${p + 6})`);
            values.push(jobId, first + i, 1, at, 'stdout', lineText(first + i, rows.textBytes));
          }
          const t0 = performance.now();
          await connection.query(`insert into log_lines (job_id, seq, attempt, at, stream, text) values ${tuples.join(', ')}`, values);
          statementMs.push(performance.now() - t0);
        }
      }
    }),
  );
  return { lines: rows.jobIds.length * rows.linesPerJob, seconds: (performance.now() - started) / 1000, statement: percentiles(statementMs) };
}
