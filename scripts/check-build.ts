// `npm run check:build`, after `npm run build`: the built server as an operator runs it (plain node,
// no tsx, embedded defaults in a fresh DATA_DIR) becomes ready, serves the API, its docs and the
// job page, stops cleanly on one SIGINT, and logs no error on the way. Prints how long it took to
// be ready, for information: timings are the benchmarks' business, not a check's.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../src/temporal/dev-server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const READY_WITHIN_MS = 180_000;

const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-built-'));
const [httpPort, grpcPort, temporalPort] = [await freePort(), await freePort(), await freePort()];
const server = spawn(process.execPath, [path.join(root, 'dist/src/main.js')], {
  cwd: dataDir,
  env: { ...process.env, DATABASE_URL: '', TEMPORAL_ADDRESS: '', DATA_DIR: dataDir, PORT: String(httpPort), GRPC_PORT: String(grpcPort), TEMPORAL_DEV_PORT: String(temporalPort), HOST: '127.0.0.1' },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let output = '';
server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));

const fail = async (why: string): Promise<never> => {
  server.kill('SIGKILL');
  console.error(`check:build FAILED: ${why}\n--- server output ---\n${output}`);
  await fs.rm(dataDir, { recursive: true, force: true });
  process.exit(1);
};

const base = `http://127.0.0.1:${httpPort}`;
const started = performance.now();
for (;;) {
  const ready = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
  if (ready) break;
  if (server.exitCode !== null) await fail(`the server exited with ${server.exitCode} before it was ready`);
  if (performance.now() - started > READY_WITHIN_MS) await fail(`not ready within ${READY_WITHIN_MS / 1000} s`);
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const readyMs = performance.now() - started;

for (const [route, status] of [['/healthz', 200], ['/docs/', 200], ['/ui/orgs/00000000-0000-4000-8000-000000000000/jobs/00000000-0000-4000-8000-000000000000', 200], ['/v1/orgs/00000000-0000-4000-8000-000000000000/jobs', 401]] as const) {
  const answer = await fetch(`${base}${route}`);
  if (answer.status !== status) await fail(`GET ${route} answered ${answer.status}, not ${status}`);
}

server.kill('SIGINT');
const code = await exited;
if (code !== 0) await fail(`one SIGINT ended the server with ${code}, not 0`);
const problems = output.split('\n').filter((line) => /"level":(4|5|6)\d/.test(line));
if (problems.length) await fail(`it logged warnings or errors:\n${problems.join('\n')}`);
await fs.rm(dataDir, { recursive: true, force: true });
console.log(`check:build: the built server was ready in ${(readyMs / 1000).toFixed(1)} s (fresh DATA_DIR), served the API, docs and job page, and stopped on one SIGINT with no warning or error`);
