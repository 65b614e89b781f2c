// The reference agent CLI as an operator runs it, against the real system over loopback: every line
// of a job's output reaches the store and every live viewer in order, also across a stream the network cuts mid-job, and
// a clone that fails says why. (Cancellation, shutdown, revocation and restarts: faults.test.ts.)
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, waitUntil, type AgentProcess } from '../support/agent-process.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob, type Job } from '../support/factories.js';
import { createGitRepository } from '../support/git-fixture.js';
import { LogStreamViewer, seqProblems } from '../support/log-stream-client.js';
import { drivers, dropTestDatabases, startTestSystem, type TestSystem } from '../support/system.js';
import { startCuttableProxy, type CuttableProxy } from '../support/tcp-proxy.js';

/** Each job's prompt is the script to run, so one agent can play every scenario. */
const RUN_THE_PROMPT = 'eval "$JOB_PROMPT"';

function agentFor(server: string, token: string): Promise<AgentProcess> {
  return startAgent({ server, token, exec: RUN_THE_PROMPT, capacity: 4, name: 'cli-test' });
}

describe.each(drivers)('reference agent CLI on %s', (driver) => {
  let t: TestSystem;
  let repository: Awaited<ReturnType<typeof createGitRepository>>;
  let cloneUrl: string;
  let org: Awaited<ReturnType<typeof createOrg>>;
  let agent: AgentProcess | undefined;
  const holdDirs: string[] = [];

  beforeAll(async () => {
    t = await startTestSystem({ driver, env: { AGENT_HEARTBEAT_INTERVAL: '1s', DISPATCH_SWEEP_INTERVAL: '1s' } });
    repository = await createGitRepository({ 'README.md': 'hello from the repository\n' });
    cloneUrl = repository.cloneUrl;
    org = await createOrg(t);
    const token = await createAgentToken(org.admin, org.orgId);
    agent = await agentFor(t.grpcAddress, token.secret);
  });

  afterAll(async () => {
    await agent?.dispose();
    for (const dir of holdDirs) await fs.rm(dir, { recursive: true, force: true });
    await t?.stop();
    await dropTestDatabases();
    await repository?.remove();
  });

  async function logOf(jobId: string, owner = org, limit = 1000): Promise<{ seq: number; stream: string; text: string }[]> {
    const { data } = await owner.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: owner.orgId, jobId }, query: { limit } } });
    return (data?.items ?? []).map(({ seq, stream, text }) => ({ seq, stream, text }));
  }

  it('clones the repository, runs the job there with its environment, and stores every line of output', async () => {
    const repo = await createRepository(org.admin, org.orgId, { cloneUrl });
    const script = ['cat README.md', 'echo "job $JOB_ID attempt $JOB_ATTEMPT on $REPO_BRANCH"', 'echo "token seen: ${AGENT_TOKEN:-none}"', 'echo to-stderr >&2', 'seq 1 300', 'printf "no newline at the end"'].join('; ');
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: script });

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded' || j.status === 'failed', 30_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    const log = await logOf(job.id);
    expect(log.map((line) => line.seq)).toEqual(log.map((_, index) => index + 1));
    // stdout and stderr are two pipes: order holds within each, not between them.
    const stdout = log.filter((line) => line.stream === 'stdout').map((line) => line.text);
    expect(stdout).toEqual(['hello from the repository', `job ${job.id} attempt 1 on main`, 'token seen: none', ...Array.from({ length: 300 }, (_, index) => String(index + 1)), 'no newline at the end']);
    expect(log.filter((line) => line.stream === 'stderr').map((line) => line.text)).toEqual(['to-stderr']);
    expect(log.filter((line) => line.stream === 'system').map((line) => line.text)).toContain('exited with code 0');
  });

  /**
   * Runs `script` as a job on an agent whose stream goes through a proxy the test can cut, in an
   * organisation of its own, so that this agent is the only one its job can go to.
   */
  /** A file a job's script waits for (`waitInScript`), so that a step of the test happens mid-job on any machine. */
  async function holdFile(): Promise<{ waitInScript: string; release(): Promise<void> }> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-hold-'));
    holdDirs.push(dir);
    const file = path.join(dir, 'release');
    return { waitInScript: `while [ ! -e '${file}' ]; do sleep 0.05; done`, release: () => fs.writeFile(file, '') };
  }

  async function behindCuttableProxy(script: string, scenario: (run: { isolated: typeof org; job: Job; proxy: CuttableProxy; agent: AgentProcess }) => Promise<void>) {
    const proxy = await startCuttableProxy(t.grpcAddress);
    const isolated = await createOrg(t);
    const token = await createAgentToken(isolated.admin, isolated.orgId);
    const behindProxy = await agentFor(proxy.address, token.secret);
    try {
      await waitUntil(() => behindProxy.output().includes('connected'), 'the agent behind the proxy never connected');
      const repo = await createRepository(isolated.admin, isolated.orgId, { cloneUrl });
      const job = await createJob(isolated.member, isolated.orgId, { repoId: repo.id, prompt: script });
      await scenario({ isolated, job, proxy, agent: behindProxy });
    } finally {
      await behindProxy.dispose();
      await proxy.close();
    }
  }

  it('loses no log line when the network drops the stream mid-job: the agent reconnects and resends', async () => {
    const hold = await holdFile();
    const script = `for i in $(seq 1 40); do echo "line $i"; done; ${hold.waitInScript}; for i in $(seq 41 80); do echo "line $i"; sleep 0.01; done`;
    await behindCuttableProxy(script, async ({ isolated, job, proxy, agent: behindProxy }) => {
      // Cut mid-job: its first lines are stored, and the rest waits for the cut however slow the machine.
      await waitUntil(async () => (await logOf(job.id, isolated)).some((line) => line.text === 'line 5'), 'the job\'s first lines never reached the store');
      expect(proxy.cut()).toBeGreaterThan(0);
      await hold.release();

      const done = await waitForJob(isolated.member, isolated.orgId, job.id, (j) => j.status === 'succeeded' || j.status === 'failed', 60_000);
      expect(done).toMatchObject({ status: 'succeeded', attempt: 1 });
      await waitUntil(() => /stream ended[\s\S]*connected stream=2/.test(behindProxy.output()), 'the agent never said it reconnected');
      const log = await logOf(job.id, isolated);
      expect(log.map((line) => line.seq)).toEqual(log.map((_, index) => index + 1));
      expect(log.filter((line) => line.stream === 'stdout').map((line) => line.text)).toEqual(Array.from({ length: 80 }, (_, index) => `line ${index + 1}`));
    });
  });

  it('shows a viewer every line once, in order, while the agent prints fast and its stream is cut mid-job', async () => {
    // Lines 1001-2000 are printed as the viewer sees 1000; the rest waits for the cut however slow the machine.
    const hold = await holdFile();
    const script = `for i in $(seq 0 39); do [ $i -eq 20 ] && ${hold.waitInScript}; seq $((i * 100 + 1)) $((i * 100 + 100)); sleep 0.03; done`;
    await behindCuttableProxy(script, async ({ isolated, job, proxy }) => {
      const viewer = new LogStreamViewer(t.url, isolated.orgId, job.id, { token: isolated.tokens.member });
      await viewer.until((v) => v.lines.some((line) => line.text === '1000'));
      // The agent's stream drops with batches in flight; it reconnects and resends what was not acknowledged.
      expect(proxy.cut()).toBeGreaterThan(0);
      await hold.release();

      expect((await viewer.closed).code).toBe(1000);
      expect(viewer.end).toMatchObject({ status: 'succeeded', exitCode: 0 });
      expect(seqProblems(viewer.lines, 1, viewer.end!.lastSeq)).toEqual([]);
      expect(viewer.lines.filter((line) => line.stream === 'stdout').map((line) => line.text)).toEqual(Array.from({ length: 4000 }, (_, index) => String(index + 1)));
      const stored = await logOf(job.id, isolated, viewer.end!.lastSeq);
      expect(viewer.lines.map(({ seq, stream, text }) => ({ seq, stream, text }))).toEqual(stored);
    });
  });

  it('fails the job with git\'s reason when the clone fails', async () => {
    const repo = await createRepository(org.admin, org.orgId, { cloneUrl, defaultBranch: 'no-such-branch' });
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'echo never runs' });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed' || j.status === 'succeeded', 30_000);
    expect(done.status).toBe('failed');
    expect(done.failureReason).toMatch(/clone failed: .*no-such-branch/);
    expect((await logOf(job.id)).every((line) => line.stream === 'system')).toBe(true);
  });
});

