// A job ends with the change it made: what agent.proto promises about RunChange and PatchChunk, and
// what openapi.yaml promises readers (JobChange on the job, the diff download, the end frame), with a
// scripted agent over real gRPC. What real agents make of real repositories: agent-cli/changes.test.ts.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome, NoticeCode, type RunChange } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob, type Org } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { changeOf, commitId } from './support/scripted-change.js';
import { drivers, useTestSystem, type TestSystem } from './support/system.js';

const MiB = 1024 * 1024;
/** The server's limit in these tests: above one gRPC message (4 MiB), small enough to go past. */
const MAX_PATCH_BYTES = 6 * MiB;

/** Bytes no text decoder would take for UTF-8: a patch is carried and served as bytes. */
function binaryPatch(size: number): Buffer {
  const patch = randomBytes(size);
  patch.set([0xff, 0xfe, 0x00, 0xc3, 0x28], 0);
  return patch;
}

describe.each(drivers)('run changes on %s', (driver) => {
  const t = useTestSystem({ driver, env: { MAX_PATCH_BYTES: String(MAX_PATCH_BYTES) } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  async function agentOf(org: Org, agentId?: string): Promise<{ agent: ProtocolClient; token: string }> {
    const token = (await createAgentToken(org.admin, org.orgId)).secret;
    const agent = new ProtocolClient(t.grpcAddress, token, agentId);
    clients.push(agent);
    return { agent, token };
  }

  /** A job started on a scripted agent of a fresh organisation. */
  async function startedRun() {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const { agent, token } = await agentOf(org);
    agent.hello({ capacity: 1 });
    const welcome = await agent.next('welcome');
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'Add a dark mode toggle' });
    await agent.next('assignment');
    agent.start(job.id, 1);
    return { org, repo, agent, token, job, welcome };
  }

  async function download(org: Org, jobId: string, on: TestSystem = t): Promise<{ status: number; type: string | null; disposition: string | null; body: Buffer }> {
    const response = await on.fetch(`/v1/orgs/${org.orgId}/jobs/${jobId}/diff`, { headers: { authorization: `Bearer ${org.tokens.member}` } });
    return { status: response.status, type: response.headers.get('content-type'), disposition: response.headers.get('content-disposition'), body: Buffer.from(await response.arrayBuffer()) };
  }

  async function sendPatch(agent: ProtocolClient, jobId: string, patch: Buffer, from = 0, chunk = MiB): Promise<void> {
    for (let offset = from; offset < patch.byteLength; offset += chunk) {
      agent.sendPatch(jobId, 1, offset, patch.subarray(offset, offset + chunk));
      expect(await agent.next('patchAck')).toEqual({ jobId, attempt: 1, storedBytes: Math.min(offset + chunk, patch.byteLength) });
    }
  }

  it('names in Welcome the largest patch it stores', async () => {
    const { welcome } = await startedRun();
    expect(welcome.maxPatchBytes).toBe(MAX_PATCH_BYTES);
  });

  it('keeps a patch larger than one gRPC message byte for byte, and shows the change on the job, in the list and in the end frame', async () => {
    const { org, agent, job } = await startedRun();
    const patch = binaryPatch(5 * MiB + 17);
    await sendPatch(agent, job.id, patch);
    const change = changeOf({ branch: `agent-jobs/${job.id}`, summary: 'Added `DarkModeToggle`.', pullRequestUrl: 'https://git.example.test/acme/app/pull/7' }, patch);
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change });
    await agent.next('finishedAck');

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    const expected = {
      attempt: 1,
      changed: true,
      branch: `agent-jobs/${job.id}`,
      pushed: true,
      baseCommit: change.baseCommit,
      headCommit: change.headCommit,
      commits: [{ sha: change.headCommit, subject: 'Do the thing' }],
      commitCount: 1,
      diffStat: { filesChanged: 1, insertions: 2, deletions: 1 },
      summary: 'Added `DarkModeToggle`.',
      pullRequestUrl: 'https://git.example.test/acme/app/pull/7',
      patch: { bytes: patch.byteLength, available: true },
    };
    expect(done.change).toEqual(expected);
    const list = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId } } });
    expect(list.data?.items.find((j) => j.id === job.id)?.change).toEqual(expected);

    const diff = await download(org, job.id);
    expect(diff).toMatchObject({ status: 200, type: 'text/x-diff', disposition: `attachment; filename="job-${job.id}.diff"` });
    expect(diff.body.equals(patch)).toBe(true);

    const viewer = new LogStreamViewer(t.url, org.orgId, job.id, { token: org.tokens.member });
    await viewer.closed;
    expect(viewer.end?.change).toEqual(expected);
  });

  it('records the outcome only once the whole patch is stored: an early JobFinished gets PatchAck and PATCH_GAP, and its ack follows the last chunk', async () => {
    const { org, agent, job } = await startedRun();
    const patch = binaryPatch(3 * MiB);
    await sendPatch(agent, job.id, patch.subarray(0, MiB));
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    expect(await agent.next('patchAck')).toEqual({ jobId: job.id, attempt: 1, storedBytes: MiB });
    expect(await agent.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_PATCH_GAP, jobId: job.id, attempt: 1 });
    expect((await waitForJob(org.member, org.orgId, job.id, () => true)).status).toBe('running');

    await sendPatch(agent, job.id, patch, MiB);
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('answers a chunk past the stored bytes with PatchAck and PATCH_GAP, and stores bytes sent twice once', async () => {
    const { org, agent, job } = await startedRun();
    const patch = binaryPatch(300_000);
    agent.sendPatch(job.id, 1, 0, patch.subarray(0, 100_000));
    expect((await agent.next('patchAck')).storedBytes).toBe(100_000);
    agent.sendPatch(job.id, 1, 200_000, patch.subarray(200_000));
    expect((await agent.next('patchAck')).storedBytes).toBe(100_000);
    expect(await agent.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_PATCH_GAP, jobId: job.id, attempt: 1 });
    // A resend from before the stored end: the overlap is skipped, the rest stored.
    agent.sendPatch(job.id, 1, 50_000, patch.subarray(50_000, 250_000));
    expect((await agent.next('patchAck')).storedBytes).toBe(250_000);
    agent.sendPatch(job.id, 1, 0, patch.subarray(0, 10));
    expect((await agent.next('patchAck')).storedBytes).toBe(250_000);
    agent.sendPatch(job.id, 1, 250_000, patch.subarray(250_000));
    expect((await agent.next('patchAck')).storedBytes).toBe(300_000);
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('stores small chunks sent back to back without waiting for acks, a resend among them, whole and once, acking each in order', async () => {
    // Chunks that arrive while an earlier one is being stored are stored together (agent-session.ts):
    // however they group, every chunk gets its ack, the acks never go back, and no byte is lost or doubled.
    const { org, agent, job } = await startedRun();
    const patch = binaryPatch(2 * MiB + 123);
    const chunk = 64 * 1024;
    const sends: { offset: number; end: number }[] = [];
    for (let offset = 0; offset < patch.byteLength; offset += chunk) sends.push({ offset, end: Math.min(offset + chunk, patch.byteLength) });
    // An agent that reconnected mid-burst resends from a point inside a chunk it had sent.
    sends.splice(20, 0, { offset: 10 * chunk + 1000, end: 12 * chunk });
    for (const { offset, end } of sends) agent.sendPatch(job.id, 1, offset, patch.subarray(offset, end));
    const acks: number[] = [];
    for (let i = 0; i < sends.length; i++) acks.push((await agent.next('patchAck')).storedBytes);
    expect(acks).toEqual([...acks].sort((a, b) => a - b));
    expect(acks.at(-1)).toBe(patch.byteLength);

    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('answers patch bytes for a run the agent does not hold (another agent\'s, another organisation\'s, an attempt that is not current) with UNKNOWN_JOB, and stores none', async () => {
    const { org, agent, job } = await startedRun();
    const { agent: other } = await agentOf(org);
    other.hello({ capacity: 1 });
    await other.next('welcome');
    const stranger = await startedRun();
    const patch = binaryPatch(1000);
    const foreign = binaryPatch(1000);
    for (const [sender, jobId, attempt] of [[other, job.id, 1], [stranger.agent, job.id, 1], [agent, job.id, 2], [agent, stranger.job.id, 1]] as const) {
      sender.sendPatch(jobId, attempt, 0, foreign);
      expect(await sender.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB, jobId, attempt });
    }
    // Had a refused chunk been kept, the holder's own would be taken for a resend and the diff would be the foreign bytes.
    agent.sendPatch(job.id, 1, 0, patch);
    expect(await agent.next('patchAck')).toEqual({ jobId: job.id, attempt: 1, storedBytes: patch.byteLength });
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('resumes a patch after a dropped stream from what it stored, and serves it whole', async () => {
    const { org, agent, token, job } = await startedRun();
    const patch = binaryPatch(5 * MiB);
    await sendPatch(agent, job.id, patch.subarray(0, 2 * MiB));
    agent.close();

    const again = new ProtocolClient(t.grpcAddress, token, agent.agentId);
    clients.push(again);
    again.hello({ capacity: 1, runningJobs: [{ jobId: job.id, attempt: 1, lastSeq: 0 }] });
    await again.next('welcome');
    // An agent unsure what arrived sends its JobFinished: the answer says where the patch stands.
    again.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    const stored = (await again.next('patchAck')).storedBytes;
    expect(stored).toBe(2 * MiB);
    expect((await again.next('notice')).code).toBe(NoticeCode.NOTICE_CODE_PATCH_GAP);
    await sendPatch(again, job.id, patch, stored);
    await again.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('refuses patch bytes past max_patch_bytes, and records a larger patch\'s change without it: the download says so', async () => {
    const { org, agent, job } = await startedRun();
    agent.sendPatch(job.id, 1, MAX_PATCH_BYTES - 10, Buffer.alloc(11));
    expect(await agent.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_INVALID_MESSAGE, jobId: job.id, attempt: 1 });
    // The agent sends none of a patch over the limit, and names its size.
    const change = changeOf({ patchSize: MAX_PATCH_BYTES + 1 });
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done.change?.patch).toEqual({ bytes: MAX_PATCH_BYTES + 1, available: false });
    const diff = await download(org, job.id);
    expect(diff.status).toBe(409);
    expect(JSON.parse(diff.body.toString())).toMatchObject({ code: 'conflict', detail: expect.stringContaining('branch agent-jobs/scripted holds it') });
  });

  it('answers patch bytes after the run\'s outcome with OUT_OF_ORDER and keeps the patch as it was', async () => {
    const { org, agent, job } = await startedRun();
    const patch = binaryPatch(1000);
    await sendPatch(agent, job.id, patch);
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    agent.sendPatch(job.id, 1, 1000, Buffer.from('more'));
    expect(await agent.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_OUT_OF_ORDER, jobId: job.id });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect((await download(org, job.id)).body.equals(patch)).toBe(true);
  });

  it('shows a run that changed nothing as a change with changed: false and an empty diff', async () => {
    const { org, agent, job } = await startedRun();
    const base = commitId('untouched');
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({ branch: '', baseCommit: base, headCommit: base, commits: [], commitCount: 0, diffStat: { filesChanged: 0, insertions: 0, deletions: 0 }, summary: 'Nothing to do.' }) });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done.change).toMatchObject({ changed: false, branch: null, pushed: false, baseCommit: base, headCommit: base, commits: [], commitCount: 0, summary: 'Nothing to do.', patch: { bytes: 0, available: true } });
    expect(await download(org, job.id)).toMatchObject({ status: 200, body: Buffer.alloc(0) });
  });

  it('keeps the first 65,536 characters of a summary and no pull-request link that is not an http(s) URL', async () => {
    const { org, agent, job } = await startedRun();
    const summary = `${'é'.repeat(65_535)}😀 and more`;
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({ summary, pullRequestUrl: 'javascript:alert(1)' }) });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    // The cut falls inside the emoji (two UTF-16 units): it is cut before it, never in half.
    expect(done.change?.summary).toBe('é'.repeat(65_535));
    expect(done.change?.pullRequestUrl).toBeNull();
  });

  it('fails a run whose change no reader could use, saying why', async () => {
    const { org, agent, job } = await startedRun();
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeOf({ headCommit: 'not-a-commit', commits: [{ sha: commitId('one'), subject: 'One' }] }) });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed');
    expect(done.failureReason).toBe('the agent reported a change the server cannot take: head_commit is not a full commit id');
    expect(done.change).toBeNull();
  });

  it('ignores a change reported with a failure: a failed job has none, and no diff', async () => {
    const { org, agent, job } = await startedRun();
    agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_FAILED, { exitCode: 2, change: changeOf() as RunChange });
    await agent.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed');
    expect(done.change).toBeNull();
    const diff = await download(org, job.id);
    expect(diff.status).toBe(404);
    expect(JSON.parse(diff.body.toString())).toMatchObject({ code: 'not_found', detail: `The change of job ${job.id} (it is failed) was not found` });
  });

  it('answers the diff of a running job with 404: it has no change yet', async () => {
    const { org, job } = await startedRun();
    const diff = await download(org, job.id);
    expect(diff.status).toBe(404);
    expect(JSON.parse(diff.body.toString())).toMatchObject({ code: 'not_found' });
  });
});
