// `npm run demo` (with `npm run dev` running): a first job that works without the internet. Makes a
// git repository on this machine (a bare "remote" in DATA_DIR/demo), registers it, creates an agent
// token, starts the reference agent with a command that edits the repository, submits a job and
// prints the page that shows it live, its change included. The agent keeps running, taking more jobs,
// until Ctrl-C.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const config = loadConfig(process.env);
if (config.auth.mode !== 'dev') {
  console.error('demo: PROPELAUTH_AUTH_URL is set; the demo mints dev tokens, so run it against a server on dev auth');
  process.exit(2);
}
const api = process.env.DEMO_API ?? `http://127.0.0.1:${config.httpPort}`;
const grpc = process.env.DEMO_GRPC ?? `127.0.0.1:${config.grpcPort}`;

const ready = await fetch(`${api}/readyz`).then((r) => r.ok, () => false);
if (!ready) {
  console.error(`demo: no server ready at ${api}; start it first with \`npm run dev\` (in another terminal), then run \`npm run demo\` again`);
  process.exit(1);
}

// The repository: a bare one stands in for the hosted remote, seeded with one commit.
const demoDir = path.join(config.dataDir, 'demo');
const remote = path.join(demoDir, `repo-${Date.now()}.git`);
const seed = path.join(demoDir, 'seed');
const identity = { GIT_AUTHOR_NAME: 'demo', GIT_AUTHOR_EMAIL: 'demo@localhost', GIT_COMMITTER_NAME: 'demo', GIT_COMMITTER_EMAIL: 'demo@localhost' };
const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env: { ...process.env, ...identity }, stdio: 'ignore' });
await fs.mkdir(demoDir, { recursive: true });
await fs.rm(seed, { recursive: true, force: true });
git(demoDir, 'init', '--quiet', '--bare', '--initial-branch=main', remote);
git(demoDir, 'init', '--quiet', '--initial-branch=main', seed);
await fs.writeFile(path.join(seed, 'README.md'), '# Demo repository\n\nA repository on this machine, for agent-jobs to work on.\n');
git(seed, 'add', '.');
git(seed, 'commit', '--quiet', '-m', 'Start the demo repository');
git(seed, 'push', '--quiet', remote, 'main');
await fs.rm(seed, { recursive: true, force: true });

// An organisation of its own, and a token for its admin that lasts the day.
const orgId = randomUUID();
const keys = loadOrCreateDevKeys(config.auth.keyDir);
const token = await mintDevToken(keys.privateKeyPem, config.auth.issuer, { userId: 'demo', email: 'demo@localhost', orgs: [{ orgId, role: 'Admin' }], expiresInSeconds: 24 * 3600 });

async function post<T>(route: string, body: unknown): Promise<T> {
  const answer = await fetch(`${api}/v1/orgs/${orgId}${route}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (answer.status !== 201) throw new Error(`POST ${route} answered ${answer.status}: ${await answer.text()}`);
  return (await answer.json()) as T;
}

const repository = await post<{ id: string }>('/repositories', { name: 'demo', cloneUrl: `file://${remote}`, defaultBranch: 'main' });
const agentToken = await post<{ secret: string }>('/agent-tokens', { name: 'demo agent' });

// The "coding tool": a shell command that writes the prompt into the repository and a summary for the
// job page. A real setup runs a coding agent's CLI here instead.
const command = [
  'printf "%s\\n" "$JOB_PROMPT" >> NOTES.md',
  'printf \'{"summary":"Wrote the request into `NOTES.md` (%s)."}\' "$JOB_QUEUE" > "$JOB_RESULT_FILE"',
  'echo "noted: $JOB_PROMPT"',
].join('; ');
const agent = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'agents/typescript/src/main.ts'), '--server', grpc, '--exec', command, '--name', 'demo', '--state-dir', path.join(demoDir, 'agent')], {
  env: { ...process.env, AGENT_TOKEN: agentToken.secret },
  stdio: ['ignore', 'inherit', 'inherit'],
});

const job = await post<{ id: string }>('/jobs', { prompt: 'Add a line to NOTES.md saying hello from the demo.', repoId: repository.id, queueType: 'backlog' });
console.log(`
Demo ready (organisation ${orgId}).
  Watch the job:      ${api}/ui/orgs/${orgId}/jobs/${job.id}#token=${token}
  The API, as admin:  export ORG=${orgId} TOKEN=${token}
                      curl -s ${api}/v1/orgs/$ORG/jobs/${job.id} -H "authorization: Bearer $TOKEN"
  The remote:         git --git-dir ${remote} log --all --oneline
The agent below takes this job and any other of the organisation's. Once the job has succeeded, its page
offers a Rework form: the rework continues the same branch. Ctrl-C stops the agent (the server keeps running).
`);

const stop = (signal: NodeJS.Signals) => agent.kill(signal);
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
agent.once('exit', (code) => process.exit(code ?? 0));
