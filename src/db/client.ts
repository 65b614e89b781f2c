// Opens the database: a PostgreSQL server when DATABASE_URL is set, otherwise an embedded PGlite in
// DATA_DIR. Both expose the same Drizzle API, the same migrations and the same LISTEN/NOTIFY, so
// nothing above this file knows which one it runs on.
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import type { Config } from '../config.js';
import * as schema from './schema/index.js';

export type Schema = typeof schema;
export type Database = PgDatabase<PgQueryResultHKT, Schema>;
/** A transaction or the database itself: repositories accept either so callers can compose them. */
export type Executor = Pick<Database, 'select' | 'insert' | 'update' | 'delete' | 'execute' | 'transaction' | '$with' | 'with'>;

export type NotificationListener = (payload: string) => void;

export interface DatabaseHandle {
  readonly db: Database;
  readonly driver: 'pg' | 'pglite';
  /** Subscribes to a NOTIFY channel; resolves once the subscription is live. */
  listen(channel: string, listener: NotificationListener): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  migrate(): Promise<void>;
  /** How many migrations in src/db/migrations are not applied to this database. */
  pendingMigrations(): Promise<number>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const migrationsFolder = fileURLToPath(new URL('./migrations', import.meta.url));
/**
 * A built server ships an empty database with every migration of the build applied
 * (scripts/build-server.ts), so a first start in an empty DATA_DIR unpacks it instead of running
 * PGlite's initdb and the migrations (most of a first start's time).
 */
const pgliteTemplateFile = fileURLToPath(new URL('../../pglite-template.tar.gz', import.meta.url));
const builtServer = !import.meta.url.endsWith('.ts');

async function countPending(db: Database): Promise<number> {
  const journal = JSON.parse(await fs.readFile(`${migrationsFolder}/meta/_journal.json`, 'utf8')) as { entries: unknown[] };
  try {
    // drizzle's migrators (pg and PGlite alike) record each applied migration here.
    const result = await db.execute<{ n: number }>(sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
    const applied = Number((result as unknown as { rows: { n: number }[] }).rows[0]?.n ?? 0);
    return Math.max(0, journal.entries.length - applied);
  } catch {
    return journal.entries.length;
  }
}
// Any constant works: it only has to be the same for every replica running migrations at once.
const MIGRATION_LOCK_KEY = 4_242_001;

export async function openDatabase(config: Config['database'], log: (msg: string) => void = () => {}): Promise<DatabaseHandle> {
  const handle = config.kind === 'postgres' ? await openPostgres(config.url, config.poolSize, log) : await openPglite(config.dir, log);
  // Closed once, however often asked (a readiness check's outage drill, then the system's stop):
  // a second pg pool end or PGlite close throws, and shutdown would log it as an error.
  let closing: Promise<void> | undefined;
  const close = handle.close.bind(handle);
  return Object.assign(handle, { close: () => (closing ??= close()) });
}

/** The databases that are PGlite, for the few queries that must bind a value its own way. */
const pgliteDatabases = new WeakSet<object>();

/** Whether `db` (a database this module opened) is an embedded PGlite. */
export function isPglite(db: object): boolean {
  return pgliteDatabases.has(db);
}

/** Opens DATA_DIR's PGlite, unpacking the build's template into an empty folder when there is one. */
async function createPglite(dir: string, log: (msg: string) => void): Promise<PGlite> {
  await fs.mkdir(dir, { recursive: true });
  const template = builtServer && (await fs.readdir(dir)).length === 0 ? await fs.readFile(pgliteTemplateFile).catch(() => undefined) : undefined;
  if (!template) return PGlite.create(dir);
  try {
    return await PGlite.create(dir, { loadDataDir: new Blob([template]) });
  } catch (err) {
    // A template this PGlite cannot run (node_modules changed since the build): initdb as without one.
    log(`the build's PGlite template did not open (${(err as Error).message}); creating the database afresh`);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });
    return PGlite.create(dir);
  }
}

async function openPglite(dir: string, log: (msg: string) => void): Promise<DatabaseHandle> {
  const client = await createPglite(dir, log);
  const db = drizzlePglite(client, { schema });
  pgliteDatabases.add(db);
  return {
    db,
    driver: 'pglite',
    async listen(channel, listener) {
      const unlisten = await client.listen(channel, listener);
      return () => unlisten();
    },
    async notify(channel, payload) {
      await client.query('select pg_notify($1, $2)', [channel, payload]);
    },
    async migrate() {
      // PGlite is one connection in this process, so no other migrator can race this one.
      await migratePglite(db, { migrationsFolder });
    },
    pendingMigrations: () => countPending(db),
    async ping() {
      await client.query('select 1');
    },
    async close() {
      await client.close();
    },
  };
}

async function openPostgres(url: string, poolSize: number, log: (msg: string) => void): Promise<DatabaseHandle> {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  pool.on('error', (err) => log(`postgres pool: ${err.message}`));
  const db = drizzlePg(pool, { schema });
  const listeners = new ListenerConnection(url, log);
  return {
    db,
    driver: 'pg',
    listen: (channel, listener) => listeners.add(channel, listener),
    async notify(channel, payload) {
      await pool.query('select pg_notify($1, $2)', [channel, payload]);
    },
    async migrate() {
      // Replicas may start together: an advisory lock lets one migrate while the others wait.
      const client = await pool.connect();
      try {
        await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
        await migratePg(drizzlePg(client, { schema }), { migrationsFolder });
      } finally {
        await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
        client.release();
      }
    },
    pendingMigrations: () => countPending(db),
    async ping() {
      await db.execute(sql`select 1`);
    },
    async close() {
      await listeners.close();
      await pool.end();
    },
  };
}

/**
 * One dedicated connection carries every LISTEN of this process. If it drops, it reconnects and
 * listens again; what was notified meanwhile is lost, so subscribers must re-read state from tables
 * after `onReconnect` rather than trust notifications alone.
 */
class ListenerConnection {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private readonly channels = new Map<string, Set<NotificationListener>>();
  private closed = false;
  // pg clients run one query at a time: LISTEN/UNLISTEN calls are queued here.
  private queries: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly url: string,
    private readonly log: (msg: string) => void,
  ) {}

  async add(channel: string, listener: NotificationListener): Promise<() => Promise<void>> {
    const client = await this.connect();
    let set = this.channels.get(channel);
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
      await this.run(client, `listen ${pg.escapeIdentifier(channel)}`);
    }
    set.add(listener);
    return async () => {
      const current = this.channels.get(channel);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) {
        this.channels.delete(channel);
        if (this.client) await this.run(this.client, `unlisten ${pg.escapeIdentifier(channel)}`).catch(() => {});
      }
    };
  }

  private run(client: pg.Client, text: string): Promise<unknown> {
    const next = this.queries.then(() => client.query(text));
    this.queries = next.catch(() => {});
    return next;
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= (async () => {
      const client = new pg.Client({ connectionString: this.url });
      client.on('notification', (msg) => {
        for (const listener of this.channels.get(msg.channel) ?? []) listener(msg.payload ?? '');
      });
      client.on('error', (err) => {
        this.log(`postgres listener connection lost: ${err.message}`);
        this.dropAndReconnect(client);
      });
      client.on('end', () => this.dropAndReconnect(client));
      await client.connect();
      for (const channel of this.channels.keys()) await this.run(client, `listen ${pg.escapeIdentifier(channel)}`);
      this.client = client;
      return client;
    })().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private dropAndReconnect(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = undefined;
    if (this.closed) return;
    const retry = (delayMs: number): void => {
      setTimeout(() => {
        if (this.closed) return;
        this.connect().catch((err: Error) => {
          this.log(`postgres listener reconnect failed: ${err.message}`);
          retry(Math.min(delayMs * 2, 5000));
        });
      }, delayMs).unref();
    };
    retry(100);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }
}
