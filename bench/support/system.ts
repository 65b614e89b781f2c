// Starts the real system for a benchmark, the way test/support/system.ts does for a test: the same
// startSystem as `npm run dev`, over loopback, on a Temporal dev server of the bench's own (in
// memory) and a fresh database: a new PostgreSQL database when DATABASE_URL is set (dropped at the
// end), an embedded PGlite in a temporary folder otherwise. stop() undoes all of it.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import type { OrgRole } from '../../src/services/access.js';
import { loadOrCreateDevKeys } from '../../src/services/auth/dev-keys.js';
import { mintDevToken } from '../../src/services/auth/dev-tokens.js';
import { startSystem, type RunningSystem } from '../../src/system.js';
import { freePort, startTemporalDevServer } from '../../src/temporal/dev-server.js';
import { workflowsPath } from '../../src/temporal/worker.js';

export interface BenchSystem {
  system: RunningSystem;
  url: string;
  driver: 'postgres' | 'pglite';
  temporalSource: string;
  /** A dev access token, signed by the system's dev key, for `userId` with `role` in each of `orgs`. */
  token(userId: string, orgs: Record<string, OrgRole>): Promise<string>;
  stop(): Promise<void>;
}

const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error: console.error, log() {} };

export async function startBenchSystem(env: Record<string, string> = {}): Promise<BenchSystem> {
  const cleanup: (() => Promise<void>)[] = [];
  const stop = async () => {
    process.off('SIGINT', interrupted).off('SIGTERM', interrupted);
    for (const step of cleanup.splice(0).reverse()) {
      await step().catch((err: unknown) => console.error('bench cleanup:', err));
    }
  };
  // Interrupted (Ctrl-C): still stop the Temporal server and drop the database before leaving.
  const interrupted = (signal: NodeJS.Signals) => {
    console.error(`${signal}: stopping what the bench started`);
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted).once('SIGTERM', interrupted);

  try {
    const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-bench-'));
    cleanup.push(() => fs.rm(scratch, { recursive: true, force: true }));

    const temporal = await startTemporalDevServer({ dataDir: scratch, port: await freePort(), cliPath: process.env.TEMPORAL_CLI_PATH });
    cleanup.push(() => temporal.stop());

    const bundle = await bundleWorkflowCode({ workflowsPath, logger: quietLogger });
    const workflowBundlePath = path.join(scratch, 'workflow-bundle.js');
    await fs.writeFile(workflowBundlePath, bundle.code);

    const adminUrl = process.env.DATABASE_URL;
    let databaseUrl: string | undefined;
    if (adminUrl) {
      const name = `bench_${randomUUID().replaceAll('-', '')}`;
      await adminQuery(adminUrl, `create database ${name}`);
      cleanup.push(() => adminQuery(adminUrl, `drop database if exists ${name} with (force)`));
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      databaseUrl = url.toString();
    }

    const config = loadConfig({
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: '0',
      GRPC_PORT: '0',
      DATA_DIR: path.join(scratch, 'data'),
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error',
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_TASK_QUEUE: `bench-jobs-${randomUUID()}`,
      TEMPORAL_WORKFLOW_BUNDLE: workflowBundlePath,
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
      ...env,
    });
    const system = await startSystem(config, pino({ level: config.logLevel }));
    cleanup.push(() => system.stop());
    if (!system.httpUrl) throw new Error('the bench system serves no HTTP API');
    if (config.auth.mode !== 'dev') throw new Error('the bench uses dev auth');
    const keys = loadOrCreateDevKeys(config.auth.keyDir);
    const issuer = config.auth.issuer;

    return {
      system,
      url: system.httpUrl,
      driver: databaseUrl ? 'postgres' : 'pglite',
      temporalSource: temporal.source,
      token: (userId, orgs) => mintDevToken(keys.privateKeyPem, issuer, { userId, orgs: Object.entries(orgs).map(([orgId, role]) => ({ orgId, role })) }),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function adminQuery(adminUrl: string, statement: string): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(statement);
  } finally {
    await admin.end();
  }
}
