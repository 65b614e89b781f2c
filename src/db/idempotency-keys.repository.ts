// The SQL of idempotency keys: the answer stored for a key, storing one in the caller's transaction,
// and deleting expired ones.
import { and, eq, gt, sql, type SQL } from 'drizzle-orm';
import type { Executor } from './client.js';
import { pgErrorCode } from './pg-errors.js';
import { idempotencyKeys, type IdempotentOperation } from './schema/index.js';

/** A key as the server knows it: the client's key within one organisation and one operation. */
export interface KeyScope {
  orgId: string;
  operation: IdempotentOperation;
  key: string;
}

/** What a key answered, while it is kept. */
export interface StoredAnswer {
  fingerprint: string;
  status: number;
  response: Record<string, unknown>;
}

export const LOCK_NOT_AVAILABLE = '55P03';

function liveKey(scope: KeyScope): SQL | undefined {
  return and(
    eq(idempotencyKeys.orgId, scope.orgId),
    eq(idempotencyKeys.operation, scope.operation),
    eq(idempotencyKeys.key, scope.key),
    gt(idempotencyKeys.expiresAt, sql`now()`),
  );
}

/** The stored answer as one jsonb value (or null), for callers that fold the lookup into a query of their own. */
export function storedAnswerSql(scope: KeyScope): SQL<StoredAnswer | null> {
  return sql<StoredAnswer | null>`(select jsonb_build_object('fingerprint', ${idempotencyKeys.fingerprint}, 'status', ${idempotencyKeys.status}, 'response', ${idempotencyKeys.response}) from ${idempotencyKeys} where ${liveKey(scope)})`;
}

export async function findStoredAnswer(db: Executor, scope: KeyScope): Promise<StoredAnswer | undefined> {
  const [row] = await db
    .select({ fingerprint: idempotencyKeys.fingerprint, status: idempotencyKeys.status, response: idempotencyKeys.response })
    .from(idempotencyKeys)
    .where(liveKey(scope));
  return row;
}

export type StoreOutcome = 'stored' | 'taken' | 'busy';

/**
 * Stores the answer of `scope`'s request in the caller's transaction, or says why not: `taken`, the
 * key already has a live answer (the caller rolls back and answers with that one); `busy`, another
 * transaction holding the key did not finish within `waitMs`. The primary key decides: a transaction
 * that inserts a key another open transaction has inserted waits for it to end, so of any number of
 * concurrent requests with one key, one stores its answer. An expired row is replaced.
 */
export async function storeAnswer(
  tx: Executor,
  scope: KeyScope,
  answer: StoredAnswer & { resourceId: string },
  options: { ttlMs: number; waitMs: number },
): Promise<StoreOutcome> {
  const k = idempotencyKeys;
  const column = (c: { name: string }) => sql.identifier(c.name);
  try {
    // set_config(…, true) lasts until the end of the transaction, and the insert's source row is
    // made before its conflict check can wait: the wait is bounded without a statement of its own.
    const result = await tx.execute(sql`
      with bounded as (select set_config('lock_timeout', ${String(Math.max(1, Math.round(options.waitMs)))}, true))
      insert into ${k} (${column(k.orgId)}, ${column(k.operation)}, ${column(k.key)}, ${column(k.fingerprint)}, ${column(k.status)}, ${column(k.resourceId)}, ${column(k.response)}, ${column(k.expiresAt)})
      select ${scope.orgId}::uuid, ${scope.operation}, ${scope.key}, ${answer.fingerprint}, ${answer.status}, ${answer.resourceId}::uuid, ${JSON.stringify(answer.response)}::jsonb,
             now() + ${Math.round(options.ttlMs)} * interval '1 millisecond'
      from bounded
      on conflict (${column(k.orgId)}, ${column(k.operation)}, ${column(k.key)}) do update set
        ${column(k.fingerprint)} = excluded.${column(k.fingerprint)}, ${column(k.status)} = excluded.${column(k.status)},
        ${column(k.resourceId)} = excluded.${column(k.resourceId)}, ${column(k.response)} = excluded.${column(k.response)},
        ${column(k.createdAt)} = excluded.${column(k.createdAt)}, ${column(k.expiresAt)} = excluded.${column(k.expiresAt)}
      where ${k}.${column(k.expiresAt)} <= now()
      returning 1 as stored`);
    return (result as unknown as { rows: unknown[] }).rows.length > 0 ? 'stored' : 'taken';
  } catch (err) {
    if (pgErrorCode(err) === LOCK_NOT_AVAILABLE) return 'busy';
    throw err;
  }
}

/** Deletes up to `limit` expired keys, oldest first; returns how many it deleted. */
export async function deleteExpired(db: Executor, limit: number): Promise<number> {
  const k = idempotencyKeys;
  const expired = db
    .select({ orgId: k.orgId, operation: k.operation, key: k.key })
    .from(k)
    .where(sql`${k.expiresAt} <= now()`)
    .orderBy(k.expiresAt)
    .limit(limit);
  const deleted = await db
    .delete(k)
    .where(sql`(${k.orgId}, ${k.operation}, ${k.key}) in (${expired})`)
    .returning({ key: k.key });
  return deleted.length;
}
