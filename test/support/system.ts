// Starts the real system for a test over loopback: the same startSystem as `npm run dev`, on a
// fresh PostgreSQL database (or a fresh PGlite folder), with the run's Temporal dev server and a
// task queue of its own, and hands back SDK clients whose every response is checked against openapi.yaml.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, inject } from 'vitest';
import { createAgentJobsClient, type AgentJobsClient } from '../../generated/sdk/index.js';
import { loadConfig } from '../../src/config.js';
import type { OrgRole } from '../../src/services/access.js';
import { loadOrCreateDevKeys } from '../../src/services/auth/dev-keys.js';
import { mintDevToken, type DevTokenClaims } from '../../src/services/auth/dev-tokens.js';
import { startSystem, type RunningSystem } from '../../src/system.js';
import { contractCheckedFetch } from './contract.js';

export type Driver = 'postgres' | 'pglite';

/** PostgreSQL whenever a server is configured (always in CI), and PGlite, the embedded default. */
export const drivers: Driver[] = inject('databaseUrl') ? ['postgres', 'pglite'] : ['pglite'];

export interface TestSystem {
  system: RunningSystem;
  url: string;
  /** host:port of the gRPC endpoint agents connect to. */
  grpcAddress: string;
  dataDir: string;
  /** A dev access token for `userId` with `role` in each of `orgIds`. */
  token(claims: { userId?: string; orgs: Record<string, OrgRole>; expiresInSeconds?: number }): Promise<string>;
  /** An SDK client with that token (or none), checked against the contract. */
  client(token?: string): AgentJobsClient;
  /** A raw fetch against the system, for requests the SDK cannot make (malformed JSON, huge bodies). */
  fetch(pathname: string, init?: RequestInit): Promise<Response>;
  /** The system's log lines at info and above, parsed, when started with `captureLog`. */
  logLines: LogLine[];
  stop(): Promise<void>;
}

/** One line of the server's JSON log (pino): its level (30 info, 40 warn, 50 error) and message. */
export type LogLine = { level: number; msg: string } & Record<string, unknown>;

export interface TestSystemOptions {
  driver: Driver;
  /** Extra environment, as an operator would set it. */
  env?: Record<string, string>;
  /** Reuse a data folder (restart tests); a fresh one otherwise. */
  dataDir?: string;
  /** Reuse a database (restart tests on PostgreSQL); a fresh one otherwise. */
  databaseUrl?: string;
  /** Share a task queue between replicas of one deployment; a fresh one otherwise. */
  taskQueue?: string;
  /** Run the embedded Temporal dev server on this port (as `npm run dev` does) instead of the run's shared one. */
  embeddedTemporalPort?: number;
  /** Use this Temporal server (a time-skipping test server, say, known once it started) instead of the run's shared one. */
  temporalAddress?: string | (() => string);
  /** Keep the system's log lines (info and above) in `logLines` instead of printing them. */
  captureLog?: boolean;
}

const dropDatabases: string[] = [];

export async function createTestDatabase(): Promise<string> {
  const adminUrl = inject('databaseUrl');
  const name = `test_${randomUUID().replaceAll('-', '')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  dropDatabases.push(name);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropTestDatabases(): Promise<void> {
  const adminUrl = inject('databaseUrl');
  if (!adminUrl) return;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const name of dropDatabases.splice(0)) await admin.query(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

export async function startTestSystem(options: TestSystemOptions): Promise<TestSystem> {
  const dataDir = options.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-system-')));
  const databaseUrl = options.driver === 'postgres' ? (options.databaseUrl ?? (await createTestDatabase())) : undefined;
  const config = loadConfig({
    NODE_ENV: 'test',
    HOST: '127.0.0.1',
    PORT: '0',
    GRPC_PORT: '0',
    METRICS_PORT: '0',
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'error',
    // Tests stop systems with agents still connected: a short drain (a test that needs more sets it).
    GATEWAY_DRAIN_TIMEOUT: '1s',
    ...(options.embeddedTemporalPort
      ? { TEMPORAL_DEV_PORT: String(options.embeddedTemporalPort) }
      : { TEMPORAL_ADDRESS: (typeof options.temporalAddress === 'function' ? options.temporalAddress() : options.temporalAddress) ?? inject('temporalAddress'), TEMPORAL_TASK_QUEUE: options.taskQueue ?? `jobs-${randomUUID()}` }),
    TEMPORAL_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    ...(databaseUrl ? { DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: '5' } : {}),
    ...options.env,
  });
  const logLines: LogLine[] = [];
  const logger = options.captureLog
    ? pino({ level: 'info' }, { write: (line: string) => void logLines.push(JSON.parse(line) as LogLine) })
    : pino({ level: config.logLevel });
  const system = await startSystem(config, logger);
  // Split roles serve only part of the system: a gateway has no HTTP API, an API replica no gRPC.
  const url = system.httpUrl ?? 'http://no-http-api.invalid';
  if (config.auth.mode !== 'dev') throw new Error('test systems use dev auth');
  const keys = loadOrCreateDevKeys(config.auth.keyDir);
  const issuer = config.auth.issuer;

  return {
    system,
    url,
    grpcAddress: `127.0.0.1:${system.grpcPort}`,
    dataDir,
    token({ userId = `user-${randomUUID().slice(0, 8)}`, orgs, expiresInSeconds }) {
      const claims: DevTokenClaims = { userId, orgs: Object.entries(orgs).map(([orgId, role]) => ({ orgId, role })) };
      if (expiresInSeconds !== undefined) claims.expiresInSeconds = expiresInSeconds;
      return mintDevToken(keys.privateKeyPem, issuer, claims);
    },
    client(token) {
      return createAgentJobsClient({ baseUrl: url, fetch: contractCheckedFetch, ...(token ? { token } : {}) });
    },
    fetch(pathname, init) {
      return contractCheckedFetch(`${url}${pathname}`, init);
    },
    logLines,
    async stop() {
      await system.stop();
      if (!options.dataDir) await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The system of the enclosing describe block: started before its tests, stopped (and the file's test
 * databases dropped) after them. The object returned stands for the started system.
 */
export function useTestSystem(options: TestSystemOptions): TestSystem {
  let current: TestSystem | undefined;
  beforeAll(async () => {
    current = await startTestSystem(options);
  });
  afterAll(async () => {
    await current?.stop();
    await dropTestDatabases();
  });
  return new Proxy({} as TestSystem, {
    get(_target, property) {
      if (!current) throw new Error('the test system is used before beforeAll started it');
      return Reflect.get(current, property);
    },
  });
}
