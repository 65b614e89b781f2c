// The SQL of the organisation's git repositories. Deleted repositories stay as rows (their jobs and
// logs keep pointing at them) but are invisible to every read here.
import { and, asc, eq, isNull, sql, type SQL } from 'drizzle-orm';
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

/**
 * Locks the live repository row until the transaction ends: `update` to delete it, `share` to add a
 * job to it. Either waits for the other, so a delete never misses a job submitted at the same moment.
 */
export async function lockRepository(tx: Executor, orgId: string, repoId: string, strength: 'update' | 'share'): Promise<RepositoryRow | undefined> {
  const [row] = await tx
    .select()
    .from(repositories)
    .where(and(eq(repositories.orgId, orgId), eq(repositories.id, repoId), isNull(repositories.deletedAt)))
    .for(strength);
  return row;
}

/** Live repositories by name: unique among them, so the id only makes the keyset total. */
export async function listRepositories(db: Executor, orgId: string, after: { name: string; id: string } | undefined, limit: number): Promise<RepositoryRow[]> {
  const conditions: SQL[] = [eq(repositories.orgId, orgId), isNull(repositories.deletedAt)];
  if (after) conditions.push(sql`(${repositories.name}, ${repositories.id}) > (${after.name}, ${after.id})`);
  return db
    .select()
    .from(repositories)
    .where(and(...conditions))
    .orderBy(asc(repositories.name), asc(repositories.id))
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
