// A job ends with the change it made, as the reference agent CLI makes it against real git: local
// bare repositories (file://) stand in for the remote. Commits the command made or left behind are
// pushed to a branch named for the job, the patch reaches the API byte for byte (binary and
// non-UTF-8 files too), a refused push fails the job, and rework continues the same branch.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storedPatchBytes } from '../../src/db/changes.repository.js';
import { startAgent, waitUntil, type AgentProcess } from '../support/agent-process.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob, type Org } from '../support/factories.js';
import { createBareRepository, gitIn } from '../support/git-fixture.js';
import { startTestSystem, dropTestDatabases, type TestSystem } from '../support/system.js';
import { startCuttableProxy } from '../support/tcp-proxy.js';

/** Each job's prompt is the script to run. */
const RUN_THE_PROMPT = 'eval "$JOB_PROMPT"';
const MiB = 1024 * 1024;
/** Above one gRPC message (4 MiB), so a patch between the two needs several chunks and acks. */
const MAX_PATCH_BYTES = 6 * MiB;
const AUTHOR = 'Robo Coder <robo@example.test>';
const PINNED_DIFF = ['-c', 'core.quotePath=true', 'diff', '--binary', '--full-index', '--no-color', '--no-ext-diff', '--no-textconv', '--no-relative', '--src-prefix=a/', '--dst-prefix=b/', '--find-renames', '--diff-algorithm=myers'];

type Remote = Awaited<ReturnType<typeof createBareRepository>>;

// One driver: what is stored of a change is the server's, tested on both in run-changes.test.ts.
describe('changes made by the reference agent CLI', () => {
  let t: TestSystem;
  const remotes: Remote[] = [];
  const agents: AgentProcess[] = [];

  beforeAll(async () => {
    t = await startTestSystem({ driver: 'pglite', env: { AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '5s', DISPATCH_SWEEP_INTERVAL: '1s', MAX_PATCH_BYTES: String(MAX_PATCH_BYTES) } });
  });

  afterAll(async () => {
    for (const agent of agents) await agent.dispose();
    await t?.stop();
    await dropTestDatabases();
    for (const remote of remotes) await remote.remove();
  });

  /** An organisation with one agent (through `server`, the system's own by default) and one repository on a fresh bare remote. */
  async function setup(options: { env?: Record<string, string>; refusePushes?: string; holdPushesUntil?: string; server?: string; files?: Record<string, string | Buffer> } = {}) {
    const remote = await createBareRepository(options.files ?? { 'README.md': 'hello\n' }, {
      ...(options.refusePushes === undefined ? {} : { refusePushes: options.refusePushes }),
      ...(options.holdPushesUntil === undefined ? {} : { holdPushesUntil: options.holdPushesUntil }),
    });
    remotes.push(remote);
    const org = await createOrg(t);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = await startAgent({ server: options.server ?? t.grpcAddress, token: token.secret, exec: RUN_THE_PROMPT, name: 'changes', env: { AGENT_GIT_AUTHOR: AUTHOR, ...options.env } });
    agents.push(agent);
    const repo = await createRepository(org.admin, org.orgId, { cloneUrl: remote.cloneUrl });
    return { remote, org, repo, agent };
  }

  async function run(org: Org, repoId: string, script: string, rework?: string) {
    const job = await createJob(org.member, org.orgId, { repoId, prompt: script, ...(rework ? { queueType: 'rework' as const, parentJobId: rework } : {}) });
    return waitForJob(org.member, org.orgId, job.id, (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.status), 60_000);
  }

  async function download(org: Org, jobId: string): Promise<{ status: number; body: Buffer }> {
    const response = await t.fetch(`/v1/orgs/${org.orgId}/jobs/${jobId}/diff`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
    return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
  }

  async function logOf(org: Org, jobId: string): Promise<string[]> {
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId }, query: { limit: 1000 } } });
    return (data?.items ?? []).map((line) => line.text);
  }

  const branchHead = (remote: Remote, branch: string) => gitIn(remote.dir, 'rev-parse', `refs/heads/${branch}`).toString().trim();
  const hasBranch = (remote: Remote, branch: string) => gitIn(remote.dir, 'branch', '--list', branch).toString().trim() !== '';
  const gitPatch = (remote: Remote, base: string, head: string) => gitIn(remote.dir, ...PINNED_DIFF, base, head);

  it('pushes what the command committed to a branch named for the job, with the summary and link from its result file, and serves git\'s patch byte for byte', async () => {
    const { remote, org, repo } = await setup();
    const script = [
      'echo "dark mode" > toggle.txt && git add toggle.txt && git commit -q -m "Add the toggle"',
      'printf \'{"summary":"Added **the toggle**.","pullRequestUrl":"https://git.example.test/acme/app/pull/7"}\' > "$JOB_RESULT_FILE"',
    ].join('\n');
    const done = await run(org, repo.id, script);
    expect(done.status).toBe('succeeded');
    const change = done.change!;
    const branch = `agent-jobs/${done.id}`;
    expect(change).toMatchObject({ attempt: 1, changed: true, branch, pushed: true, commitCount: 1, diffStat: { filesChanged: 1, insertions: 1, deletions: 0 }, summary: 'Added **the toggle**.', pullRequestUrl: 'https://git.example.test/acme/app/pull/7' });
    expect(change.baseCommit).toBe(branchHead(remote, 'main'));
    expect(branchHead(remote, branch)).toBe(change.headCommit);
    expect(change.commits).toEqual([{ sha: change.headCommit, subject: 'Add the toggle' }]);
    const diff = await download(org, done.id);
    expect(diff.status).toBe(200);
    expect(diff.body.equals(gitPatch(remote, change.baseCommit, change.headCommit))).toBe(true);
    expect(change.patch).toEqual({ bytes: diff.body.byteLength, available: true });
  });

  it('commits what the command left uncommitted, as the configured author, with a message from the job', async () => {
    const { remote, org, repo } = await setup();
    const done = await run(org, repo.id, 'printf "more\\n" >> README.md; mkdir -p docs; echo "new" > docs/notes.md');
    expect(done.status).toBe('succeeded');
    const change = done.change!;
    expect(change).toMatchObject({ changed: true, commitCount: 1, diffStat: { filesChanged: 2, insertions: 2, deletions: 0 } });
    const [author, subject, body] = gitIn(remote.dir, 'log', '-1', '--format=%an <%ae>%x00%s%x00%b', change.headCommit).toString().split('\0');
    expect(author).toBe(AUTHOR);
    expect(subject).toBe('printf "more\\n" >> README.md; mkdir -p docs; echo "new" > docs/notes.md');
    expect(body?.trim()).toBe(`Job: ${done.id}`);
    expect((await logOf(org, done.id))).toContain('committed what the command left uncommitted');
  });

  it('reports a run that changed nothing as no change: no branch pushed, an empty diff', async () => {
    const { remote, org, repo } = await setup();
    const done = await run(org, repo.id, 'cat README.md');
    expect(done.status).toBe('succeeded');
    expect(done.change).toMatchObject({ changed: false, branch: null, pushed: false, commits: [], commitCount: 0, patch: { bytes: 0, available: true } });
    expect(done.change?.headCommit).toBe(branchHead(remote, 'main'));
    expect(hasBranch(remote, `agent-jobs/${done.id}`)).toBe(false);
    expect(await download(org, done.id)).toMatchObject({ status: 200, body: Buffer.alloc(0) });
  });

  it('fails the job with git\'s reason when the remote refuses the push, keeps git\'s words in the log, and never serves the patch it sent meanwhile', async () => {
    const release = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-hold-')), 'release');
    const { org, repo } = await setup({ refusePushes: 'pushes are frozen for the release', holdPushesUntil: release });
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'echo change > file.txt' });
    // The agent sends the patch while its push runs (agent.proto, PatchChunk): it is stored before the remote answers.
    await expect.poll(() => storedPatchBytes(t.system.database.db, job.id, 1), { timeout: 60_000 }).toBeGreaterThan(0);
    await fs.writeFile(release, '');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.status), 60_000);
    expect(done.status).toBe('failed');
    expect(done.failureReason).toMatch(/^push failed: /);
    expect(done.change).toBeNull();
    expect((await logOf(org, done.id)).some((line) => line.includes('pushes are frozen for the release'))).toBe(true);
    expect((await download(org, done.id)).status).toBe(404);
  });

  it('carries binary and non-UTF-8 files in the patch, and the downloaded patch applies to the base to give the head\'s tree', async () => {
    const { remote, org, repo } = await setup({ files: { 'README.md': 'hello\n', 'logo.bin': Buffer.from([0, 1, 2, 255, 254]) } });
    const script = "printf 'caf\\351 cr\\350me\\n' > latin1.txt; head -c 20000 /dev/urandom > blob.bin; printf '\\377\\000' >> logo.bin";
    const done = await run(org, repo.id, script);
    expect(done.status).toBe('succeeded');
    const change = done.change!;
    const diff = await download(org, done.id);
    expect(diff.body.equals(gitPatch(remote, change.baseCommit, change.headCommit))).toBe(true);
    expect(diff.body.includes(Buffer.from('GIT binary patch'))).toBe(true);
    expect(diff.body.includes(Buffer.from('caf\xe9 cr\xe8me', 'latin1'))).toBe(true);
    expect(change.diffStat).toEqual({ filesChanged: 3, insertions: 1, deletions: 0 });

    const checkout = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-apply-'));
    try {
      gitIn(checkout, 'clone', '--quiet', remote.cloneUrl, '.');
      gitIn(checkout, 'checkout', '--quiet', change.baseCommit);
      execFileSync('git', ['apply', '--index', '-'], { cwd: checkout, input: diff.body });
      expect(gitIn(checkout, 'write-tree').toString().trim()).toBe(gitIn(remote.dir, 'rev-parse', `${change.headCommit}^{tree}`).toString().trim());
    } finally {
      await fs.rm(checkout, { recursive: true, force: true });
    }
  });

  it('records a change whose patch is over the server\'s limit without its patch: the branch holds it, the download says so', async () => {
    const { remote, org, repo } = await setup();
    const done = await run(org, repo.id, 'head -c 7000000 /dev/urandom | base64 > big.txt');
    expect(done.status).toBe('succeeded');
    const change = done.change!;
    expect(change.patch.available).toBe(false);
    expect(change.patch.bytes).toBe(gitPatch(remote, change.baseCommit, change.headCommit).byteLength);
    expect(branchHead(remote, change.branch!)).toBe(change.headCommit);
    expect((await download(org, done.id)).status).toBe(409);
  });

  it('delivers a patch larger than one gRPC message whole when the link is cut as the run ends (mid-patch, or just before or after it)', async () => {
    const proxy = await startCuttableProxy(t.grpcAddress);
    try {
      const { remote, org, repo, agent } = await setup({ server: proxy.address });
      await waitUntil(() => agent.output().includes('connected'), 'the agent never connected');
      const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'head -c 3500000 /dev/urandom | base64 > big.txt' });
      // The run has ended and its patch is on its way (or about to be): cut the link under it.
      await waitUntil(() => agent.output().includes(' job finished '), 'the job never finished on the agent', 60_000);
      expect(proxy.cut()).toBeGreaterThan(0);
      const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded' || j.status === 'failed', 60_000);
      expect(done.status).toBe('succeeded');
      const patch = gitPatch(remote, done.change!.baseCommit, done.change!.headCommit);
      expect(patch.byteLength).toBeGreaterThan(4 * MiB);
      expect((await download(org, job.id)).body.equals(patch)).toBe(true);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('keeps the branch local with --no-push and still reports the change and its patch', async () => {
    const { remote, org, repo } = await setup({ env: { AGENT_NO_PUSH: '1' } });
    const done = await run(org, repo.id, 'echo local > local.txt');
    expect(done.status).toBe('succeeded');
    expect(done.change).toMatchObject({ changed: true, pushed: false, branch: `agent-jobs/${done.id}` });
    expect(hasBranch(remote, `agent-jobs/${done.id}`)).toBe(false);
    const diff = await download(org, done.id);
    expect(diff.body.toString()).toContain('+local');
  });

  it('continues a change twice with rework: new commits on the same branch, each diff against the revision before it', async () => {
    const { remote, org, repo } = await setup();
    const first = await run(org, repo.id, 'echo one > story.txt');
    expect(first.status).toBe('succeeded');
    const branch = first.change!.branch!;

    const feedback = 'echo "parent $JOB_PARENT_ID on $JOB_PARENT_BRANCH at $JOB_PARENT_HEAD"; echo two >> story.txt';
    const second = await run(org, repo.id, feedback, first.id);
    expect(second.status).toBe('succeeded');
    expect(second.change).toMatchObject({ branch, pushed: true, baseCommit: first.change!.headCommit, commitCount: 1, diffStat: { filesChanged: 1, insertions: 1, deletions: 0 } });
    expect(await logOf(org, second.id)).toContain(`parent ${first.id} on ${branch} at ${first.change!.headCommit}`);
    // The commit's subject: the feedback's first line, marked as a rework, cut at 72 characters.
    const [subject] = gitIn(remote.dir, 'log', '-1', '--format=%s', second.change!.headCommit).toString().split('\n');
    expect(subject).toBe(`Rework: ${feedback}`.slice(0, 72));

    const third = await run(org, repo.id, 'echo three >> story.txt', second.id);
    expect(third.status).toBe('succeeded');
    expect(third.change).toMatchObject({ branch, baseCommit: second.change!.headCommit, commitCount: 1 });
    expect(branchHead(remote, branch)).toBe(third.change!.headCommit);
    expect(gitIn(remote.dir, 'show', `${branch}:story.txt`).toString()).toBe('one\ntwo\nthree\n');
    // Each revision's patch is its own: applied in turn on the first's base they give the branch.
    for (const job of [first, second, third]) {
      expect((await download(org, job.id)).body.equals(gitPatch(remote, job.change!.baseCommit, job.change!.headCommit))).toBe(true);
    }
    const refused = await org.member.POST('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } }, body: { prompt: 'again', queueType: 'rework', repoId: repo.id, parentJobId: first.id } });
    expect(refused.response.status).toBe(400);
    expect(refused.error?.errors?.[0]?.message).toBe(`job ${second.id} (succeeded) continues it; rework that one instead`);
  });

  it('retries a rework whose agent was lost after its push: the next attempt replaces that push rather than failing on a branch it moved itself', async () => {
    const { remote, org, repo, agent } = await setup();
    const first = await run(org, repo.id, 'echo one > story.txt');
    const branch = first.change!.branch!;
    // The remote holds the rework's first push once its refs are updated, until the test has killed that agent.
    const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-lost-push-'));
    const pushed = path.join(scratch, 'pushed');
    const release = path.join(scratch, 'release');
    const hook = path.join(remote.dir, 'hooks', 'post-receive');
    await fs.writeFile(hook, `#!/bin/sh\nif [ ! -e '${pushed}' ]; then touch '${pushed}'; while [ ! -e '${release}' ]; do sleep 0.1; done; fi\n`);
    await fs.chmod(hook, 0o755);
    try {
      // A short cancel grace: the server requeues a silent agent's job after its lease + that grace + a margin.
      const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'echo "attempt $JOB_ATTEMPT" >> story.txt', queueType: 'rework', parentJobId: first.id, cancelGraceSeconds: 1 });
      await waitUntil(() => fs.access(pushed).then(() => true, () => false), 'the rework never pushed', 60_000);
      const lostHead = branchHead(remote, branch);
      agent.kill('SIGKILL');
      await agent.exited;
      await fs.writeFile(release, '');

      await startAgent({ server: t.grpcAddress, token: (await createAgentToken(org.admin, org.orgId)).secret, exec: RUN_THE_PROMPT, name: 'changes-2', env: { AGENT_GIT_AUTHOR: AUTHOR } }).then((a) => agents.push(a));
      const done = await waitForJob(org.member, org.orgId, job.id, (j) => ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.status), 90_000);
      expect(done).toMatchObject({ status: 'succeeded', attempt: 2 });
      expect(done.change).toMatchObject({ branch, pushed: true, baseCommit: first.change!.headCommit, commitCount: 1 });
      expect(branchHead(remote, branch)).toBe(done.change!.headCommit);
      expect(gitIn(remote.dir, 'show', `${branch}:story.txt`).toString()).toBe('one\nattempt 2\n');
      expect(gitIn(remote.dir, 'rev-parse', `refs/agent-jobs/${job.id}`).toString().trim()).toBe(done.change!.headCommit);
      expect(gitIn(remote.dir, 'rev-list', branch).toString().split('\n')).not.toContain(lostHead);
      expect(await logOf(org, job.id)).toContain(`${branch} is at ${lostHead}, pushed by an earlier attempt of this job: starting again from ${first.change!.headCommit}, and replacing that push`);
      expect((await download(org, job.id)).body.equals(gitPatch(remote, first.change!.headCommit, done.change!.headCommit))).toBe(true);
    } finally {
      await fs.writeFile(release, '').catch(() => undefined);
      await fs.rm(hook, { force: true });
      await fs.rm(scratch, { recursive: true, force: true });
    }
  }, 180_000);

  it('fails a rework without touching the branch when someone moved it since the parent', async () => {
    const { remote, org, repo } = await setup();
    const first = await run(org, repo.id, 'echo one > story.txt');
    const branch = first.change!.branch!;
    const elsewhere = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-human-'));
    try {
      gitIn(elsewhere, 'clone', '--quiet', '--branch', branch, remote.cloneUrl, '.');
      await fs.writeFile(path.join(elsewhere, 'human.txt'), 'a person pushed this\n');
      gitIn(elsewhere, 'add', '.');
      gitIn(elsewhere, 'commit', '--quiet', '-m', 'A human change');
      gitIn(elsewhere, 'push', '--quiet', 'origin', branch);
    } finally {
      await fs.rm(elsewhere, { recursive: true, force: true });
    }
    const moved = branchHead(remote, branch);
    const rework = await run(org, repo.id, 'echo two >> story.txt', first.id);
    expect(rework.status).toBe('failed');
    expect(rework.failureReason).toBe(`branch moved: ${branch} is at ${moved}, the job revises ${first.change!.headCommit}`);
    expect(branchHead(remote, branch)).toBe(moved);
  });
});
