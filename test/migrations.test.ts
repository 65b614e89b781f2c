// Stored data survives an upgrade: each migration that rewrites rows is applied to data written under
// the schema before it, on PGlite (the same PostgreSQL the embedded default runs).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import { afterEach, describe, expect, it } from 'vitest';

const migrations = path.join(import.meta.dirname, '..', 'src', 'db', 'migrations');

/** A copy of the migrations folder that stops after the migration tagged `last`. */
async function migrationsUpTo(last: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-migrations-'));
  await fs.cp(migrations, dir, { recursive: true });
  const journalPath = path.join(dir, 'meta', '_journal.json');
  const journal = JSON.parse(await fs.readFile(journalPath, 'utf8')) as { entries: { tag: string }[] };
  const end = journal.entries.findIndex((e) => e.tag === last);
  if (end < 0) throw new Error(`no migration ${last}`);
  journal.entries = journal.entries.slice(0, end + 1);
  await fs.writeFile(journalPath, JSON.stringify(journal));
  return dir;
}

describe('upgrading a database with data in it', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('numbers the run of every log line stored before lines carried it, from the lines where the server ended each run', async () => {
    const before = await migrationsUpTo('0005_index_live_jobs_by_assignment');
    const client = await PGlite.create();
    cleanups.push(() => client.close(), () => fs.rm(before, { recursive: true, force: true }));
    const db = drizzle(client);
    await migrate(db, { migrationsFolder: before });

    const org = '00000000-0000-4000-8000-000000000001';
    await client.query(`insert into repositories (id, org_id, name, clone_url, default_branch, created_by) values ('00000000-0000-4000-8000-000000000002', $1, 'web', 'https://git.example.test/web.git', 'main', 'u')`, [org]);
    const jobIds = ['00000000-0000-4000-8000-00000000000a', '00000000-0000-4000-8000-00000000000b'];
    for (const id of jobIds) {
      await client.query(`insert into jobs (id, org_id, repo_id, prompt, queue_type, created_by, attempt, timeouts) values ($1, $2, '00000000-0000-4000-8000-000000000002', 'p', 'backlog', 'u', 3, '{}')`, [id, org]);
    }
    const lines: [string, number, string, string][] = [
      // A job of three runs: the first lost, the second declined, the third still going.
      [jobIds[0]!, 1, 'stdout', 'cloning'],
      [jobIds[0]!, 2, 'stdout', 'attempt 1 ended without a result: said by the agent'],
      [jobIds[0]!, 3, 'system', 'attempt 1 ended without a result: agent went silent; the job goes back to the queue'],
      [jobIds[0]!, 4, 'system', 'attempt 2 was not started: at capacity; the job goes back to the queue'],
      [jobIds[0]!, 5, 'stdout', 'cloning again'],
      [jobIds[0]!, 6, 'stderr', 'done'],
      // A job of one run.
      [jobIds[1]!, 1, 'stdout', 'only run'],
    ];
    for (const [jobId, seq, stream, text] of lines) {
      await client.query(`insert into log_lines (job_id, seq, at, stream, text) values ($1, $2, now(), $3, $4)`, [jobId, seq, stream, text]);
    }

    await migrate(db, { migrationsFolder: migrations });
    const { rows } = await client.query<{ job_id: string; seq: number; attempt: number }>('select job_id, seq::int as seq, attempt from log_lines order by job_id, seq');
    expect(rows.map((r) => [r.job_id, r.seq, r.attempt])).toEqual([
      [jobIds[0], 1, 1],
      // An agent's line that looks like the server's is still the agent's: only system lines end runs.
      [jobIds[0], 2, 1],
      [jobIds[0], 3, 1],
      [jobIds[0], 4, 2],
      [jobIds[0], 5, 3],
      [jobIds[0], 6, 3],
      [jobIds[1], 1, 1],
    ]);
  });
});
