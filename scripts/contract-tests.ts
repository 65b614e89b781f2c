// `npm run test:contract`: property-based contract tests. Starts the real system (the same startSystem
// as `npm start`) on a fresh PostgreSQL database (DATABASE_URL, required) with its embedded Temporal dev
// server, mints dev access tokens for people of two organisations (a Member and an Admin of the first, an
// Admin of the second), and runs Schemathesis (schemathesis.toml: every check, every phase, a fixed seed,
// a time budget) against openapi.yaml. Exits with Schemathesis's status.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import type { OrgRole } from '../src/services/access.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';
import { startSystem } from '../src/system.js';
import { freePort } from '../src/temporal/dev-server.js';
import { JobOutcome } from '../generated/proto/agent/v1/agent.js';
import { ProtocolClient } from '../test/support/protocol-client.js';
import { changeOf } from '../test/support/scripted-change.js';

const adminUrl = process.env.DATABASE_URL;
if (!adminUrl) {
  console.error('contract tests: set DATABASE_URL to a PostgreSQL server (they run on a fresh database of it)');
  process.exit(2);
}

const database = `contract_${randomUUID().replaceAll('-', '')}`;
async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-contract-'));
await admin(`create database ${database}`);
const databaseUrl = new URL(adminUrl);
databaseUrl.pathname = `/${database}`;

const config = loadConfig({
  ...process.env,
  NODE_ENV: 'test',
  HOST: '127.0.0.1',
  PORT: '0',
  GRPC_PORT: '0',
  DATA_DIR: dataDir,
  DATABASE_URL: databaseUrl.toString(),
  TEMPORAL_DEV_PORT: String(await freePort()),
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
});
const system = await startSystem(config, pino({ level: config.logLevel }));
let status = 1;
try {
  if (config.auth.mode !== 'dev' || !system.httpUrl) throw new Error('contract tests need dev auth and the HTTP API');
  const keys = loadOrCreateDevKeys(config.auth.keyDir);
  const issuer = config.auth.issuer;
  const [orgA, orgB] = [randomUUID(), randomUUID()];
  const token = (userId: string, orgs: Record<string, OrgRole>) =>
    mintDevToken(keys.privateKeyPem, issuer, { userId, orgs: Object.entries(orgs).map(([orgId, role]) => ({ orgId, role })), expiresInSeconds: 3600 });
  // Schemathesis tries the people in this order and keeps, per operation, the first one it admits: the
  // Member meets every Admin-only operation's 403 before the Admin is used. The two Admins are the peers
  // whose objects must stay invisible to each other (object_level_authorization).
  const people: [string, string][] = [
    ['member-a', await token('member-a', { [orgA]: 'Member' })],
    ['admin-a', await token('admin-a', { [orgA]: 'Admin' })],
    ['admin-b', await token('admin-b', { [orgB]: 'Admin' })],
  ];
  const authFile = path.join(dataDir, 'schemathesis-auth.json');
  await fs.writeFile(authFile, JSON.stringify({ auth: people.map(([name, secret]) => ({ name, fixedHeaders: [{ name: 'Authorization', value: `Bearer ${secret}` }] })) }));

  const jobWithChange = await seedJobWithChange(system.httpUrl, `127.0.0.1:${system.grpcPort}`, orgA, people[1]![1]);

  // schemathesis.toml, beside openapi.yaml, holds everything else; it names the organisation by this variable.
  const events = path.join(dataDir, 'schemathesis-events.ndjson');
  const args = ['run', 'openapi.yaml', '--url', system.httpUrl, '--auth-wfc', authFile, '--report', 'ndjson', '--report-ndjson-path', events, ...process.argv.slice(2)];
  // scripts/schemathesis_hooks.py: each valid Idempotency-Key made unique (its replay rule is tested in test/idempotency.test.ts).
  const hooks = { SCHEMATHESIS_HOOKS: 'schemathesis_hooks', PYTHONPATH: [path.join(import.meta.dirname), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) };
  status = await run('schemathesis', args, { ...process.env, ...hooks, CONTRACT_ORG_ID: orgA, CONTRACT_JOB_WITH_CHANGE: jobWithChange });
  printCheckCounts(await fs.readFile(events, 'utf8').catch(() => ''));
} finally {
  await system.stop();
  await admin(`drop database if exists ${database} with (force)`).catch(() => {});
  await fs.rm(dataDir, { recursive: true, force: true });
}
process.exit(status);

/**
 * A job of `orgId` that succeeded with a change and its patch, for the operations only such a job
 * answers with a 2xx (GET …/diff): a repository, an agent token, and a job run by a scripted agent
 * over the real gRPC stream. Returns the job's id.
 */
async function seedJobWithChange(httpUrl: string, grpcAddress: string, orgId: string, adminToken: string): Promise<string> {
  const post = async <T>(route: string, body: unknown): Promise<T> => {
    const res = await fetch(`${httpUrl}/v1/orgs/${orgId}${route}`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 201) throw new Error(`seeding: POST ${route} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as T;
  };
  const repo = await post<{ id: string }>('/repositories', { name: 'seeded-with-a-change', cloneUrl: 'https://example.test/seeded.git', defaultBranch: 'main' });
  const token = await post<{ secret: string }>('/agent-tokens', { name: 'contract-tests-seed' });
  const agent = new ProtocolClient(grpcAddress, token.secret);
  try {
    agent.hello({ capacity: 1 });
    await agent.next('welcome');
    const job = await post<{ id: string }>('/jobs', { prompt: 'Seeded: a job with a change', repoId: repo.id, queueType: 'backlog' });
    const { jobId, attempt } = await agent.next('assignment');
    agent.start(jobId, attempt);
    const patch = Buffer.from('diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-old\n+new\n');
    agent.sendPatch(jobId, attempt, 0, patch);
    await agent.next('patchAck');
    agent.finish(jobId, attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    return job.id;
  } finally {
    agent.close();
  }
}

/** Schemathesis prints cases, not checks: count each check's outcomes over every case from its event log. */
function printCheckCounts(ndjson: string): void {
  type Outcome = { name: string; status: string };
  const counts = new Map<string, Map<string, number>>();
  for (const line of ndjson.split('\n')) {
    if (!line.startsWith('{"ScenarioFinished"')) continue;
    // A scenario that errored before any request has no recorder.
    const event = JSON.parse(line) as { ScenarioFinished: { recorder?: { checks?: Record<string, Outcome[]> } | null } };
    for (const outcomes of Object.values(event.ScenarioFinished.recorder?.checks ?? {})) {
      for (const { name, status } of outcomes) {
        const byStatus = counts.get(name) ?? new Map<string, number>();
        byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
        counts.set(name, byStatus);
      }
    }
  }
  if (counts.size === 0) return;
  console.log('\nChecks run, by outcome:');
  for (const [name, byStatus] of [...counts].sort(([a], [b]) => a.localeCompare(b))) {
    console.log(`  ${name.padEnd(30)} ${[...byStatus].map(([status, n]) => `${n} ${status}`).join(', ')}`);
  }
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', env });
    child.on('error', (err) => reject(new Error(`${command}: ${err.message} (.ci/run installs it: python3 -m pip install schemathesis==4.32.5)`)));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
