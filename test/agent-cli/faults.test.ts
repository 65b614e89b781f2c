// End to end with the reference agent as a real process: it clones the job's repository, runs the
// command, streams its output and reports how it ended; and the job survives the faults users meet
// (cancel, an agent stopped or killed mid-job, a revoked token, a server restart). Log streaming
// across a dropped connection and clone failures: runs.test.ts.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/temporal/dev-server.js';
import { processAlive, startAgent, waitUntil, type AgentProcess } from '../support/agent-process.js';
import { createJob, createOrg, createRepository, waitForJob } from '../support/factories.js';
import { createGitRepository } from '../support/git-fixture.js';
import { createTestDatabase, drivers, dropTestDatabases, startTestSystem, type TestSystem } from '../support/system.js';
import { startCuttableProxy } from '../support/tcp-proxy.js';

// Agent processes are heavy for two cores: one driver is enough here (PostgreSQL when there is one).
const driver = drivers[0]!;
const FAST = { AGENT_HEARTBEAT_INTERVAL: '500ms', AGENT_SILENCE_TIMEOUT: '3s', DISPATCH_SWEEP_INTERVAL: '1s', JOB_CANCEL_GRACE: '2s' };

describe(`the reference agent on ${driver}`, () => {
  let t: TestSystem;
  let repo: Awaited<ReturnType<typeof createGitRepository>>;
  const agents: AgentProcess[] = [];
  let scratch: string;

  beforeAll(async () => {
    t = await startTestSystem({ driver, env: FAST });
    repo = await createGitRepository({ 'README.md': '# hello from the fixture\n' });
    scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-e2e-'));
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.dispose();
  });
  afterAll(async () => {
    await t?.stop();
    await repo?.remove();
    await fs.rm(scratch, { recursive: true, force: true });
    await dropTestDatabases();
  });

  async function setup(system: TestSystem = t) {
    const org = await createOrg(system);
    const repository = await createRepository(org.admin, org.orgId, { cloneUrl: repo.cloneUrl });
    const { data } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: 'e2e' } });
    return { ...org, repository, agentToken: data!.secret, tokenId: data!.token.id };
  }

  async function agent(token: string, exec: string, options: { server?: string; labels?: string[]; capacity?: number } = {}) {
    const a = await startAgent({ server: options.server ?? t.grpcAddress, token, exec, ...(options.labels ? { labels: options.labels } : {}), ...(options.capacity ? { capacity: options.capacity } : {}) });
    agents.push(a);
    return a;
  }

  async function logText(org: Awaited<ReturnType<typeof setup>>, jobId: string, system: TestSystem = t) {
    const response = await system.fetch(`/v1/orgs/${org.orgId}/jobs/${jobId}/logs/download`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
    return response.text();
  }

  it('clones the repository, runs the command with the job in its environment and streams its output', async () => {
    const org = await setup();
    await agent(org.agentToken, 'echo "prompt=$JOB_PROMPT attempt=$JOB_ATTEMPT"; cat "$REPO_DIR/README.md"; echo "to stderr" >&2');
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id, prompt: 'say hello' });

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 30_000);
    expect(done).toMatchObject({ exitCode: 0, attempt: 1 });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'succeeded']);

    const { data: page } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    const lines = page!.items;
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i + 1));
    expect(lines).toContainEqual(expect.objectContaining({ stream: 'stdout', text: 'prompt=say hello attempt=1' }));
    expect(lines).toContainEqual(expect.objectContaining({ stream: 'stdout', text: '# hello from the fixture' }));
    expect(lines).toContainEqual(expect.objectContaining({ stream: 'stderr', text: 'to stderr' }));
    expect(page!.jobFinished).toBe(true);
  });

  it('records a failing command as failed with its exit code', async () => {
    const org = await setup();
    await agent(org.agentToken, 'echo about to fail; exit 3');
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed', 30_000);
    expect(done.exitCode).toBe(3);
    expect(await logText(org, job.id)).toContain('about to fail');
  });

  it('cancels a running job: the command and its children are gone and the job ends cancelled', async () => {
    const org = await setup();
    const pidFile = path.join(scratch, `pids-${org.orgId}`);
    // The shell and a child of its own: both must die.
    await agent(org.agentToken, `sleep 300 & echo "$$ $!" > ${pidFile}; echo running; wait`);
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);
    const pids = await waitForFile(pidFile);

    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } }, body: { reason: 'no longer needed' } });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled', 30_000);
    expect(done.failureReason).toBe('no longer needed');
    for (const pid of pids) await waitUntil(() => !processAlive(pid), `process ${pid} still alive after the cancel`);
  });

  it('force-cancels a command that ignores SIGTERM once the grace period is over', async () => {
    const org = await setup();
    const pidFile = path.join(scratch, `stubborn-${org.orgId}`);
    await agent(org.agentToken, `trap "" TERM; echo "$$" > ${pidFile}; while true; do sleep 0.2; done`);
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id, cancelGraceSeconds: 1 });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);
    const [pid] = await waitForFile(pidFile);
    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } } });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled', 30_000);
    await waitUntil(() => !processAlive(pid!), `process ${pid} survived SIGKILL`);
  });

  it('requeues the job of an agent killed mid-job and runs it again on a second agent as attempt 2', async () => {
    const org = await setup();
    const first = await agent(org.agentToken, 'if [ "$JOB_ATTEMPT" = 1 ]; then echo first; sleep 300; else echo "second attempt"; fi');
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);
    first.kill('SIGKILL');
    await first.exited;

    await agent(org.agentToken, 'if [ "$JOB_ATTEMPT" = 1 ]; then echo first; sleep 300; else echo "second attempt"; fi');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 45_000);
    expect(done.attempt).toBe(2);
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'requeued', 'assigned', 'started', 'succeeded']);
    const text = await logText(org, job.id);
    expect(text).toContain('second attempt');
  });

  it('gives a running job back when the agent is stopped: the command is gone, the agent exits 0 and the job runs again as attempt 2', async () => {
    const org = await setup();
    const pidFile = path.join(scratch, `shutdown-${org.orgId}`);
    // The first attempt sleeps with a child of its own; both must be gone once the agent has exited.
    const exec = `if [ "$JOB_ATTEMPT" = 1 ]; then sleep 300 & echo "$$ $!" > ${pidFile}; echo first; wait; else echo "second attempt"; fi`;
    const stopped = await agent(org.agentToken, exec);
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);
    const pids = await waitForFile(pidFile);

    stopped.kill('SIGTERM');
    expect(await stopped.exited).toBe(0);
    for (const pid of pids) await waitUntil(() => !processAlive(pid), `process ${pid} outlived the agent`);
    // Given back, not cancelled: the job is queued again, for another agent.
    const requeued = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'queued', 30_000);
    expect(requeued.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'requeued']);
    expect(requeued.events.at(-1)?.detail).toContain('the agent is shutting down');

    await agent(org.agentToken, exec);
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 45_000);
    expect(done.attempt).toBe(2);
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'requeued', 'assigned', 'started', 'succeeded']);
    // The first attempt's last lines, written after the signal, were stored before it was given back.
    const text = await logText(org, job.id);
    expect(text).toContain('first');
    expect(text).toContain('the job goes back to the server');
    expect(text).toContain('second attempt');
  });

  it('gives a running job back on one Ctrl-C in the terminal of `npm run agent`, which signals the whole process group', async () => {
    const org = await setup();
    const stateDir = await fs.mkdtemp(path.join(scratch, 'ctrl-c-'));
    // As a terminal runs it: npm, its shell and tsx in front of the agent, all in one process group.
    const npm = spawn('npm', ['run', '-s', 'agent', '--', '--server', t.grpcAddress, '--exec', 'sleep 300', '--state-dir', stateDir, '--heartbeat', '500ms'], {
      cwd: path.resolve(import.meta.dirname, '../..'),
      env: { ...process.env, AGENT_TOKEN: org.agentToken },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
    try {
      const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
      await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 60_000);

      process.kill(-npm.pid!, 'SIGINT');
      // Given back (the graceful path), not killed: a killed run would stay its until the lease ran out.
      const requeued = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'queued', 30_000);
      expect(requeued.events.at(-1)?.type).toBe('requeued');
      expect(requeued.events.at(-1)?.detail).toContain('the agent is shutting down');
      await exited;
      expect(output).toContain('stopping: no new jobs');
      expect(output).not.toContain('second signal');
    } finally {
      if (npm.exitCode === null && npm.signalCode === null) process.kill(-npm.pid!, 'SIGKILL');
    }
  });

  it('never runs a job twice at once: an agent whose link is cut for longer than its lease stops the run itself before the job goes to another agent', async () => {
    const org = await setup();
    const records = path.join(scratch, `records-${org.orgId}`);
    // Each run records its start and its end by this machine's clock, so overlap is seen from outside the system.
    const exec = [
      `echo "start $JOB_ATTEMPT $(date +%s%N)" >> ${records}`,
      `trap 'echo "end $JOB_ATTEMPT $(date +%s%N)" >> ${records}; exit 143' TERM`,
      `if [ "$JOB_ATTEMPT" = 1 ]; then echo first; while true; do sleep 0.1; done; fi`,
      `echo second; echo "end $JOB_ATTEMPT $(date +%s%N)" >> ${records}`,
    ].join('\n');
    const link = await startCuttableProxy(t.grpcAddress);
    try {
      const cutOff = await agent(org.agentToken, exec, { server: link.address });
      const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
      await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);
      await waitForFile(records);

      // The link goes down and stays down; both ends live on. Another agent is ready to take work.
      link.partition();
      await agent(org.agentToken, exec);
      const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 60_000);
      expect(done.attempt).toBe(2);
      expect(cutOff.output()).toContain('lease expired');

      const events = (await fs.readFile(records, 'utf8')).trim().split('\n').map((line) => line.split(' '));
      const at = (kind: string, attempt: string) => BigInt(events.find(([k, a]) => k === kind && a === attempt)?.[2] ?? '-1');
      expect(at('end', '1')).toBeGreaterThan(0n);
      // Attempt 1 had stopped before attempt 2 began.
      expect(at('end', '1')).toBeLessThan(at('start', '2'));
      expect(await logText(org, job.id)).toContain('attempt 1 ended without a result');
    } finally {
      link.heal();
      await link.close();
    }
  });

  it('stops with a clear message when pointed at the HTTP port instead of the gRPC one', async () => {
    const org = await setup();
    const wrong = await agent(org.agentToken, 'true', { server: new URL(t.url).host });
    expect(await wrong.exited).toBe(1);
    expect(wrong.output()).toMatch(/does not speak gRPC/);
  });

  it('stops an agent whose token is revoked, and its job runs again elsewhere', async () => {
    const org = await setup();
    const revoked = await agent(org.agentToken, 'sleep 300');
    const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);

    await org.admin.POST('/v1/orgs/{orgId}/agent-tokens/{tokenId}/revoke', { params: { path: { orgId: org.orgId, tokenId: org.tokenId } } });
    expect(await revoked.exited).toBe(1);
    expect(revoked.output()).toMatch(/revoked/i);

    const { data: fresh } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: 'replacement' } });
    await agent(fresh!.secret, 'echo replacement');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded', 45_000);
    expect(done.attempt).toBe(2);
  });

  /** A server that can be stopped and started again on the same data, with these settings. */
  async function restartable(env: Record<string, string>) {
    const databaseUrl = driver === 'postgres' ? await createTestDatabase() : undefined;
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-restart-'));
    const grpcPort = String(await freePort());
    const taskQueue = `jobs-restart-${Date.now()}`;
    const start = () => startTestSystem({ driver, dataDir, taskQueue, ...(databaseUrl ? { databaseUrl } : {}), env: { ...env, GRPC_PORT: grpcPort } });
    return { start, grpcAddress: `127.0.0.1:${grpcPort}`, remove: () => fs.rm(dataDir, { recursive: true, force: true }) };
  }

  it('finishes a job across a server restart within the lease: the agent reconnects and reports the same attempt to the new process', async () => {
    // A lease far longer than any restart: the run is the agent's throughout.
    const deployment = await restartable({ ...FAST, AGENT_SILENCE_TIMEOUT: '60s' });
    let server = await deployment.start();
    try {
      const org = await setup(server);
      const gate = path.join(scratch, `gate-${org.orgId}`);
      // The command waits for the test to open the gate, so the restart happens mid-job.
      await agent(org.agentToken, `echo before; while [ ! -f ${gate} ]; do sleep 0.1; done; echo after`, { server: deployment.grpcAddress });
      const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
      await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);

      await server.stop();
      server = await deployment.start();
      await fs.writeFile(gate, '');

      const member = server.client(org.tokens.member);
      const done = await waitForJob(member, org.orgId, job.id, (j) => j.status === 'succeeded', 45_000);
      expect(done.attempt).toBe(1);
      expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'succeeded']);
      const text = await logText(org, job.id, server);
      expect(text).toContain('before');
      expect(text).toContain('after');
    } finally {
      for (const a of agents.splice(0)) await a.dispose();
      await server.stop();
      await deployment.remove();
    }
  });

  it('keeps a run that finished while the server was down for longer than the lease: reported when the server is back, it is the outcome', async () => {
    // Lease 6s, grace 1s, margin 0.5s: the job could go to another agent 7.5s after the agent was
    // last heard; the server stays down longer than that, so only the restarted gateway's grace
    // (the silence counts from its start) keeps the finished run.
    const deployment = await restartable({ ...FAST, AGENT_SILENCE_TIMEOUT: '6s', JOB_CANCEL_GRACE: '1s' });
    let server = await deployment.start();
    try {
      const org = await setup(server);
      const gate = path.join(scratch, `finish-gate-${org.orgId}`);
      const finished = path.join(scratch, `finished-${org.orgId}`);
      await agent(org.agentToken, `echo before; while [ ! -f ${gate} ]; do sleep 0.1; done; echo after; touch ${finished}`, { server: deployment.grpcAddress });
      const job = await createJob(org.member, org.orgId, { repoId: org.repository.id });
      await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running', 30_000);

      await server.stop();
      const stoppedAt = Date.now();
      // The command ends while no server runs; the server stays away well past lease + grace + margin.
      await fs.writeFile(gate, '');
      await waitForFile(finished, { empty: true });
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
      server = await deployment.start();

      const member = server.client(org.tokens.member);
      const done = await waitForJob(member, org.orgId, job.id, (j) => j.status === 'succeeded' || j.status === 'failed' || j.attempt > 1, 45_000);
      expect(done).toMatchObject({ status: 'succeeded', attempt: 1, exitCode: 0 });
      expect(await logText(org, job.id, server)).toContain('after');
    } finally {
      for (const a of agents.splice(0)) await a.dispose();
      await server.stop();
      await deployment.remove();
    }
  });
});

async function waitForFile(file: string, options: { empty?: boolean } = {}): Promise<number[]> {
  let content = '';
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const exists = await fs.stat(file).then(() => true, () => false);
    content = await fs.readFile(file, 'utf8').catch(() => '');
    if (content.trim()) return content.trim().split(/\s+/).map(Number);
    if (options.empty && exists) return [];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${file} was never written`);
}
