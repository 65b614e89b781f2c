// `npm run check:build`, after `npm run build`: the built server as an operator runs it (plain node,
// no tsx, embedded defaults in a fresh DATA_DIR) becomes ready, serves the API, its docs and the
// job page, stops cleanly on one SIGINT, and logs no error on the way. Then again with traces on
// (OTEL_EXPORTER_OTLP_ENDPOINT), which runs the other workflow bundle the build ships: a job is
// created and cancelled, and its workflow's spans must reach an OTLP receiver. Prints how long it took to be
// ready, for information: timings are the benchmarks' business, not a check's.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';
import { freePort } from '../src/temporal/dev-server.js';
import { startOtlpReceiver, type OtlpReceiver } from '../test/support/otlp-receiver.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const READY_WITHIN_MS = 180_000;
/** The traced round's job: its workflow starts through the outbox, and its spans are exported in batches. */
const SPANS_WITHIN_MS = 60_000;

class CheckFailed extends Error {}

/** Starts the built server on a fresh DATA_DIR, runs `check` against it, stops it; returns ms to ready. */
async function withBuiltServer(extraEnv: Record<string, string>, check: (base: string, dataDir: string) => Promise<void>): Promise<number> {
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-built-'));
  const [httpPort, grpcPort, temporalPort] = [await freePort(), await freePort(), await freePort()];
  const server = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], {
    cwd: dataDir,
    env: { ...process.env, DATABASE_URL: '', TEMPORAL_ADDRESS: '', DATA_DIR: dataDir, PORT: String(httpPort), GRPC_PORT: String(grpcPort), TEMPORAL_DEV_PORT: String(temporalPort), HOST: '127.0.0.1', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  try {
    const base = `http://127.0.0.1:${httpPort}`;
    const started = performance.now();
    for (;;) {
      const ready = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
      if (server.exitCode !== null) throw new CheckFailed(`the server exited with ${server.exitCode} before it was ready`);
      if (performance.now() - started > READY_WITHIN_MS) throw new CheckFailed(`not ready within ${READY_WITHIN_MS / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const readyMs = performance.now() - started;
    await check(base, dataDir);
    server.kill('SIGINT');
    const code = await exited;
    if (code !== 0) throw new CheckFailed(`one SIGINT ended the server with ${code}, not 0`);
    const problems = output.split('\n').filter((line) => /"level":(4|5|6)\d/.test(line));
    if (problems.length) throw new CheckFailed(`it logged warnings or errors:\n${problems.join('\n')}`);
    return readyMs;
  } catch (err) {
    server.kill('SIGKILL');
    if (err instanceof Error) err.message += `\n--- server output ---\n${output}`;
    throw err;
  } finally {
    await fs.rm(dataDir, { recursive: true, force: true });
  }
}

async function servesItsRoutes(base: string): Promise<void> {
  for (const [route, status] of [['/healthz', 200], ['/docs/', 200], ['/ui/orgs/00000000-0000-4000-8000-000000000000/jobs/00000000-0000-4000-8000-000000000000', 200], ['/v1/orgs/00000000-0000-4000-8000-000000000000/jobs', 401]] as const) {
    const answer = await fetch(`${base}${route}`);
    if (answer.status !== status) throw new CheckFailed(`GET ${route} answered ${answer.status}, not ${status}`);
  }
}

/** Creates a job as an Admin of a new organisation (a dev token from the server's own key), cancels it, and waits for its workflow's spans. */
async function tracesAJob(base: string, dataDir: string, receiver: OtlpReceiver): Promise<void> {
  const config = loadConfig({ DATA_DIR: dataDir });
  if (config.auth.mode !== 'dev') throw new CheckFailed('the built server is not on dev auth');
  const keys = loadOrCreateDevKeys(config.auth.keyDir);
  const orgId = randomUUID();
  const token = await mintDevToken(keys.privateKeyPem, config.auth.issuer, { userId: 'check-build', orgs: [{ orgId, role: 'Admin' }], expiresInSeconds: 600 });
  const post = async (route: string, body: unknown): Promise<{ id: string }> => {
    const answer = await fetch(`${base}/v1/orgs/${orgId}${route}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (answer.status !== 201) throw new CheckFailed(`POST ${route} answered ${answer.status}: ${await answer.text()}`);
    return (await answer.json()) as { id: string };
  };
  const repo = await post('/repositories', { name: 'check-build', cloneUrl: 'https://git.example.test/check-build.git' });
  const job = await post('/jobs', { prompt: 'traced', repoId: repo.id, queueType: 'backlog' });
  // No agent runs it: cancelled, its workflow ends, and the workflow's own spans (made in the bundle) end with it.
  const cancel = await fetch(`${base}/v1/orgs/${orgId}/jobs/${job.id}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  if (cancel.status !== 202) throw new CheckFailed(`POST /jobs/${job.id}/cancel answered ${cancel.status}: ${await cancel.text()}`);
  const deadline = performance.now() + SPANS_WITHIN_MS;
  // The job's one trace: the request that created it is the root, the workflow's run is in it.
  const workflowSpan = () => {
    const request = receiver.spans.find((span) => span.name === 'POST /v1/orgs/:orgId/jobs');
    return request !== undefined && receiver.spans.some((span) => span.name === 'RunWorkflow:jobWorkflow' && span.traceId === request.traceId);
  };
  while (!workflowSpan()) {
    if (performance.now() > deadline) throw new CheckFailed(`no RunWorkflow:jobWorkflow span in the trace of job ${job.id}'s creation within ${SPANS_WITHIN_MS / 1000} s; spans seen: ${[...new Set(receiver.spans.map((span) => span.name))].join(', ') || 'none'}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

try {
  const readyMs = await withBuiltServer({}, servesItsRoutes);
  const receiver = await startOtlpReceiver();
  try {
    await withBuiltServer({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'agent-jobs-check-build' }, async (base, dataDir) => {
      await servesItsRoutes(base);
      await tracesAJob(base, dataDir, receiver);
    });
  } finally {
    await receiver.close();
  }
  console.log(
    `check:build: the built server was ready in ${(readyMs / 1000).toFixed(1)} s (fresh DATA_DIR), served the API, docs and job page, and stopped on one SIGINT with no warning or error; with traces on, a job's workflow (the traced bundle) exported its spans`,
  );
} catch (err) {
  console.error(`check:build FAILED: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
