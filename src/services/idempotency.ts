// Idempotent submission (the IETF draft "The Idempotency-Key HTTP Header Field"): a request that
// carries a key is done once per organisation, operation and key; a retry with the same request is
// answered with what the first one created, the same key with another request is refused. A key's
// answer is stored in the transaction that creates the resource, so only a request that succeeded
// leaves one: a refused request (invalid, not found, over quota) can be corrected and sent again
// with the same key. Answers are kept for `ttlMs`, then swept.
import { createHash } from 'node:crypto';
import type { Database, Executor } from '../db/client.js';
import * as keysRepo from '../db/idempotency-keys.repository.js';
import type { KeyScope, StoredAnswer } from '../db/idempotency-keys.repository.js';
import { AlreadyExistsError, IdempotencyKeyInUseError, IdempotencyKeyReusedError } from '../errors.js';

export type { KeyScope, StoredAnswer } from '../db/idempotency-keys.repository.js';

/** A request that carries a key: where the key counts, and what the request asked for. */
export interface KeyedRequest {
  scope: KeyScope;
  fingerprint: string;
}

/** What a submission answers: what it created, or what the first request with its key created. */
export interface Submitted<T> {
  resource: T;
  replayed: boolean;
}

/** Stores the answer of the request in the transaction that created `resource`. */
export type RememberAnswer<T> = (tx: Executor, resource: T) => Promise<void>;

export interface IdempotencyOptions {
  /** How long a key's answer is kept. */
  ttlMs: number;
  /** How long a retry waits for the first request with its key to finish before it is a 409. */
  waitMs: number;
  sweepIntervalMs: number;
  sweepBatch: number;
}

/** Thrown inside the creating transaction when the key got its answer meanwhile: rolls it back. */
class KeyAnsweredMeanwhile extends Error {}

/** JSON with object keys sorted and undefined left out, so equal requests hash equally. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([name, field]) => `${JSON.stringify(name)}:${canonicalJson(field)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The request a key stands for: the operation's input, whatever order its fields came in. */
export function fingerprint(input: object): string {
  return createHash('sha256').update(canonicalJson(input)).digest('hex');
}

/** A resource as JSON (dates as RFC 3339 strings), to be stored as a key's answer. */
export function snapshot(resource: object): Record<string, unknown> {
  return JSON.parse(JSON.stringify(resource)) as Record<string, unknown>;
}

/** Turns the named fields of a stored snapshot back into dates. */
export function revive<T>(json: Record<string, unknown>, dates: readonly (keyof T & string)[]): T {
  const out: Record<string, unknown> = { ...json };
  for (const name of dates) {
    const value = out[name];
    if (typeof value === 'string') out[name] = new Date(value);
  }
  return out as T;
}

export class IdempotencyKeys {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly options: IdempotencyOptions,
    private readonly log: (msg: string, err?: unknown) => void = () => {},
  ) {}

  /**
   * Creates the resource once per key. `earlier` is the key's stored answer when the caller looked it
   * up in a query of its own (null: it has none); otherwise it is looked up here. `create` calls
   * `remember` in its transaction with what it created.
   */
  async once<T extends { id: string }>(
    request: KeyedRequest | undefined,
    decode: (json: Record<string, unknown>) => T,
    create: (remember: RememberAnswer<T>) => Promise<T>,
    earlier?: StoredAnswer | null,
  ): Promise<Submitted<T>> {
    if (!request) return { resource: await create(async () => {}), replayed: false };
    const stored = earlier === undefined ? await keysRepo.findStoredAnswer(this.db, request.scope) : (earlier ?? undefined);
    if (stored) return this.replay(stored, request, decode);
    try {
      const resource = await create((tx, created) => this.remember(tx, request, created));
      return { resource, replayed: false };
    } catch (err) {
      // A request with the same key committed first: its answer is this one's. A unique name it took
      // (a repository's) is the same story seen from another index.
      if (!(err instanceof KeyAnsweredMeanwhile || err instanceof AlreadyExistsError)) throw err;
      const answer = await keysRepo.findStoredAnswer(this.db, request.scope);
      if (answer) return this.replay(answer, request, decode);
      if (err instanceof KeyAnsweredMeanwhile) throw new IdempotencyKeyInUseError({ cause: err });
      throw err;
    }
  }

  private replay<T>(stored: StoredAnswer, request: KeyedRequest, decode: (json: Record<string, unknown>) => T): Submitted<T> {
    if (stored.fingerprint !== request.fingerprint) throw new IdempotencyKeyReusedError();
    return { resource: decode(stored.response), replayed: true };
  }

  private async remember<T extends { id: string }>(tx: Executor, request: KeyedRequest, created: T): Promise<void> {
    const outcome = await keysRepo.storeAnswer(
      tx,
      request.scope,
      { fingerprint: request.fingerprint, status: 201, response: snapshot(created), resourceId: created.id },
      this.options,
    );
    if (outcome === 'taken') throw new KeyAnsweredMeanwhile();
    if (outcome === 'busy') throw new IdempotencyKeyInUseError();
  }

  /** Deletes every expired key, a batch at a time; returns how many. */
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const deleted = await keysRepo.deleteExpired(this.db, this.options.sweepBatch);
      total += deleted;
      if (deleted < this.options.sweepBatch) return total;
    }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.log('sweeping expired idempotency keys failed', err));
    }, this.options.sweepIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
