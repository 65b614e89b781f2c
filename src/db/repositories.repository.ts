// The SQL of the organisation's git repositories. Deleted repositories stay as rows (their jobs and
// logs keep pointing at them) but are invisible to every read here.
import { and, desc, eq, isNull, sql, type SQL } from 'drizzle-orm';
import type { Executor } from './client.js';
import { pgErrorCode, UNIQUE_VIOLATION } from './pg-errors.js';
import { repositories, type NewRepositoryRow, type RepositoryRow } from './schema/index.js';

/** Returns undefined when a live repository of that name already exists in the organisation. */
export async function insertRepository(db: Executor, values: NewRepositoryRow): Promise<RepositoryRow | undefined> {
  try {
    const [row] = await db.insert(repositories).values(values).returning();
    return row;
  } catch (err) {
    if (pgErrorCode(err) === UNIQUE_VIOLATION) return undefined;
    throw err;
  }
}

export async function findRepository(db: Executor, orgId: string, repoId: string): Promise<RepositoryRow | undefined> {
  const [row] = await db
    .select()
    .from(repositories)
    .where(and(eq(repositories.orgId, orgId), eq(repositories.id, repoId), isNull(repositories.deletedAt)));
  return row;
}

export async function listRepositories(
  db: Executor,
  orgId: string,
  before: { createdAt: Date; id: string } | undefined,
  limit: number,
): Promise<RepositoryRow[]> {
  const conditions: SQL[] = [eq(repositories.orgId, orgId), isNull(repositories.deletedAt)];
  if (before) conditions.push(sql`(${repositories.createdAt}, ${repositories.id}) < (${before.createdAt}, ${before.id})`);
  return db
    .select()
    .from(repositories)
    .where(and(...conditions))
    .orderBy(desc(repositories.createdAt), desc(repositories.id))
    .limit(limit);
}

export async function markRepositoryDeleted(db: Executor, repoId: string): Promise<void> {
  await db.update(repositories).set({ deletedAt: sql`now()` }).where(eq(repositories.id, repoId));
}

/** A repository by id even after deletion: jobs already queued against it still run. */
export async function findRepositoryIncludingDeleted(db: Executor, repoId: string): Promise<RepositoryRow | undefined> {
  const [row] = await db.select().from(repositories).where(eq(repositories.id, repoId));
  return row;
}
