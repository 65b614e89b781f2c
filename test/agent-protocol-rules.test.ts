// The rules agent.proto states that the job's-life suites (gateway-protocol, agent-leases,
// gateway-drain, job-deadlines) do not reach on their way: how a stream opens and ends, what an agent
// gets back after reconnecting, capacity, what an assignment carries, and the answers to messages an
// agent gets wrong. Each test names the rule it holds the server to; a scripted client speaks the
// protocol over real gRPC, and checks on every message that the server keeps its side
// (ProtocolClient.violations).
import { status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome, JobQueue, LogStream, NoticeCode } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { changeOf } from './support/scripted-change.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('agent.proto rules on %s', (driver) => {
  const t = useTestSystem({
    driver,
    env: { AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '3s', DISPATCH_SWEEP_INTERVAL: '1s', JOB_START_TIMEOUT: '7m', JOB_RUN_TIMEOUT: '3h' },
  });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  async function org() {
    const o = await createOrg(t);
    const repo = await createRepository(o.admin, o.orgId);
    const token = await createAgentToken(o.admin, o.orgId);
    return { ...o, repo, token: token.secret };
  }

  function agent(token: string | undefined, agentId?: string): ProtocolClient {
    const client = new ProtocolClient(t.grpcAddress, token, agentId);
    clients.push(client);
    return client;
  }

  async function welcomed(token: string, hello: Parameters<ProtocolClient['hello']>[0] = {}, agentId?: string): Promise<ProtocolClient> {
    const client = agent(token, agentId);
    client.hello(hello);
    await client.next('welcome');
    return client;
  }

  /** A fresh organisation whose one agent has been assigned a job and started its run 1. */
  async function startedRun(): Promise<{ o: Awaited<ReturnType<typeof org>>; a: ProtocolClient; job: Awaited<ReturnType<typeof createJob>> }> {
    const o = await org();
    const a = await welcomed(o.token);
    const job = await createJob(o.member, o.orgId, { repoId: o.repo.id });
    await a.next('assignment');
    a.start(job.id, 1);
    return { o, a, job };
  }

  function ended(result: ServiceError | 'ok'): { code: number | undefined; details: string } {
    return result === 'ok' ? { code: status.OK, details: '' } : { code: result.code, details: result.details };
  }

  describe('opening and ending a stream', () => {
    it('refuses a malformed authorization header with UNAUTHENTICATED', async () => {
      const o = await org();
      for (const header of [o.token, `Bearer`, `Basic ${o.token}`, `Bearer ${o.token}x`]) {
        const client = new ProtocolClient(t.grpcAddress, undefined, undefined, header);
        clients.push(client);
        client.hello();
        expect(ended(await client.closed()).code, header).toBe(status.UNAUTHENTICATED);
      }
    });

    it('ends the stream with INVALID_ARGUMENT when Hello comes a second time', async () => {
      const o = await org();
      const a = await welcomed(o.token);
      a.hello();
      expect(ended(await a.closed()).code).toBe(status.INVALID_ARGUMENT);
    });

    it('ends the stream with INVALID_ARGUMENT when Hello.agent_id is not a uuid', async () => {
      const o = await org();
      const a = agent(o.token, 'my-laptop');
      a.hello();
      const result = ended(await a.closed());
      expect(result.code).toBe(status.INVALID_ARGUMENT);
      expect(result.details).toMatch(/uuid/i);
    });

    it('ends the stream with DEADLINE_EXCEEDED when no Hello comes', async () => {
      const o = await org();
      const a = agent(o.token);
      // The Hello timeout is 10 s.
      expect(ended(await a.closed(30_000)).code).toBe(status.DEADLINE_EXCEEDED);
    });

    it('ends the stream with DEADLINE_EXCEEDED when the agent says nothing for Welcome.lease_duration', async () => {
      const o = await org();
      const a = await welcomed(o.token, { heartbeatMs: 0 });
      expect(ended(await a.closed(30_000)).code).toBe(status.DEADLINE_EXCEEDED);
    });

    it('ends the older stream with ABORTED when a newer one opens with the same agent_id, and keeps the newer', async () => {
      const o = await org();
      const first = await welcomed(o.token);
      // Silent but for the heartbeat below, so the ack that comes is that one's, however slow the takeover.
      const second = await welcomed(o.token, { heartbeatMs: 0 }, first.agentId);
      expect(ended(await first.closed()).code).toBe(status.ABORTED);
      const seq = second.heartbeat();
      expect(await second.next('heartbeatAck')).toEqual({ seq });
    });

    it('ends the stream with RESOURCE_EXHAUSTED for a message over 4 MiB', async () => {
      const { o, a, job } = await startedRun();
      a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: 'x'.repeat(5 * 1024 * 1024) }] } });
      expect(ended(await a.closed()).code).toBe(status.RESOURCE_EXHAUSTED);
    });

    it('answers a message with no payload with INVALID_MESSAGE and keeps the stream', async () => {
      const o = await org();
      const a = await welcomed(o.token, { heartbeatMs: 0 });
      a.send(undefined);
      expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_INVALID_MESSAGE });
      const seq = a.heartbeat();
      expect(await a.next('heartbeatAck')).toEqual({ seq });
    });
  });

  describe('reconnecting', () => {
    it('answers a Hello listing held runs with one LogAck per kept run, saying where its log resumes', async () => {
      const o = await org();
      const first = await welcomed(o.token, { capacity: 2 });
      const jobs = [await createJob(o.member, o.orgId, { repoId: o.repo.id }), await createJob(o.member, o.orgId, { repoId: o.repo.id })];
      for (let i = 0; i < 2; i++) {
        const assignment = await first.next('assignment');
        first.start(assignment.jobId, 1);
      }
      const at = new Date();
      first.send({ $case: 'logBatch', value: { jobId: jobs[0]!.id, attempt: 1, firstSeq: 1, lines: [1, 2, 3].map((n) => ({ at, stream: LogStream.LOG_STREAM_STDOUT, text: `line ${n}` })) } });
      expect(await first.next('logAck')).toMatchObject({ jobId: jobs[0]!.id, ackedSeq: 3 });
      first.close();

      const again = agent(o.token, first.agentId);
      again.hello({ capacity: 2, runningJobs: [{ jobId: jobs[0]!.id, attempt: 1, lastSeq: 5 }, { jobId: jobs[1]!.id, attempt: 1, lastSeq: 0 }] });
      const welcome = await again.next('welcome');
      expect(welcome.cancelJobIds).toEqual([]);
      const acks = [await again.next('logAck'), await again.next('logAck')];
      expect(acks.sort((x, y) => x.jobId.localeCompare(y.jobId))).toEqual(
        [
          { jobId: jobs[0]!.id, attempt: 1, ackedSeq: 3 },
          { jobId: jobs[1]!.id, attempt: 1, ackedSeq: 0 },
        ].sort((x, y) => x.jobId.localeCompare(y.jobId)),
      );
      expect(again.received('logAck')).toEqual([]);
    });

    it('lists in Welcome.cancel_job_ids a run from Hello that is no longer the agent\'s, and sends it no LogAck', async () => {
      const { o, a, job } = await startedRun();
      a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
      await a.next('finishedAck');
      await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'succeeded');
      a.close();

      // A restarted agent that lost track of the ack lists the finished run, and a run it never had.
      const other = await createJob(o.member, o.orgId, { repoId: o.repo.id });
      const again = agent(o.token, a.agentId);
      again.hello({ capacity: 0, runningJobs: [{ jobId: job.id, attempt: 1, lastSeq: 0 }, { jobId: other.id, attempt: 1, lastSeq: 0 }] });
      const welcome = await again.next('welcome');
      expect([...welcome.cancelJobIds].sort()).toEqual([job.id, other.id].sort());
      const seq = again.heartbeat();
      await again.next('heartbeatAck');
      expect(seq).toBeGreaterThan(0);
      expect(again.received('logAck')).toEqual([]);
    });

    it('sends CancelJob after the LogAck for a held run that was cancelled while the agent was away', async () => {
      const { o, a, job } = await startedRun();
      await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'running');
      a.close();
      await o.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: o.orgId, jobId: job.id } }, body: { reason: 'not needed' } });

      const again = agent(o.token, a.agentId);
      again.hello({ runningJobs: [{ jobId: job.id, attempt: 1, lastSeq: 0 }] });
      await again.next('welcome');
      expect(await again.next('logAck')).toMatchObject({ jobId: job.id, attempt: 1 });
      expect(await again.next('cancel', 30_000)).toMatchObject({ jobId: job.id, attempt: 1 });
      again.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { failureReason: 'not needed' });
      await again.next('finishedAck');
      expect((await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'cancelled')).failureReason).toBe('not needed');
    });

    it('requeues at once, counting the attempt, a run the agent held but leaves out of its Hello', async () => {
      const { o, a, job } = await startedRun();
      await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'running');
      a.close();

      // Restarted without its state: it holds nothing, so the run is lost and runs again elsewhere.
      const again = agent(o.token, a.agentId);
      again.hello({ capacity: 0 });
      await again.next('welcome');
      const requeued = await waitForJob(o.member, o.orgId, job.id, (j) => j.events.some((e) => e.type === 'requeued'));
      expect(requeued.status).toBe('queued');
      const other = await welcomed(o.token);
      expect(await other.next('assignment')).toMatchObject({ jobId: job.id, attempt: 2 });
    });
  });

  describe('capacity', () => {
    it('never has more runs assigned to an agent than Hello.capacity, and fills a slot as soon as a run ends', async () => {
      const o = await org();
      const a = await welcomed(o.token, { capacity: 2 });
      const jobs = [];
      for (let i = 0; i < 4; i++) jobs.push(await createJob(o.member, o.orgId, { repoId: o.repo.id }));
      const first = [await a.next('assignment'), await a.next('assignment')];
      for (const assignment of first) a.start(assignment.jobId, 1);
      // Two more jobs wait; a heartbeat round trip and a dispatch sweep later, still only two.
      await waitForJob(o.member, o.orgId, first[1]!.jobId, (j) => j.status === 'running');
      a.heartbeat();
      await a.next('heartbeatAck');
      expect(a.received('assignment')).toEqual([]);

      a.finish(first[0]!.jobId, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
      await a.next('finishedAck');
      const third = await a.next('assignment');
      expect(jobs.map((j) => j.id)).toContain(third.jobId);
      // The ProtocolClient's check fails the test on any assignment beyond the capacity.
    });

    it('assigns nothing to an agent with capacity 0, and lets it finish what it holds', async () => {
      const { o, a, job } = await startedRun();
      a.close();

      const draining = agent(o.token, a.agentId);
      draining.hello({ capacity: 0, runningJobs: [{ jobId: job.id, attempt: 1, lastSeq: 0 }] });
      await draining.next('welcome');
      const waiting = await createJob(o.member, o.orgId, { repoId: o.repo.id });
      draining.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
      await draining.next('finishedAck');
      draining.heartbeat();
      await draining.next('heartbeatAck');
      expect(draining.received('assignment')).toEqual([]);
      expect((await waitForJob(o.member, o.orgId, waiting.id, () => true)).status).toBe('queued');
      await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'succeeded');
    });
  });

  describe('JobAssignment', () => {
    it('carries the job\'s queue, the job it revises, its labels and its deadlines', async () => {
      const o = await org();
      const a = await welcomed(o.token, { labels: ['linux', 'gpu'] });
      const parent = await createJob(o.member, o.orgId, { repoId: o.repo.id, labels: ['linux'] });
      const first = await a.next('assignment');
      expect(first).toMatchObject({ jobId: parent.id, queue: JobQueue.JOB_QUEUE_BACKLOG, revisesJobId: '', labels: ['linux'], revises: undefined });
      expect(first.startTimeout).toEqual({ seconds: 7 * 60, nanos: 0 });
      expect(first.runTimeout).toEqual({ seconds: 3 * 3600, nanos: 0 });
      a.start(parent.id, 1);
      const change = changeOf({ branch: 'agent-jobs/parent', summary: 'Added the **toggle**.' });
      a.finish(parent.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change });
      await a.next('finishedAck');
      await waitForJob(o.member, o.orgId, parent.id, (j) => j.status === 'succeeded');

      const rework = await createJob(o.member, o.orgId, { repoId: o.repo.id, queueType: 'rework', parentJobId: parent.id, labels: ['gpu'] });
      expect(await a.next('assignment')).toMatchObject({
        jobId: rework.id,
        attempt: 1,
        queue: JobQueue.JOB_QUEUE_REWORK,
        revisesJobId: parent.id,
        labels: ['gpu'],
        revises: { branch: 'agent-jobs/parent', headCommit: change.headCommit, summary: 'Added the **toggle**.' },
      });
    });
  });

  describe('answers to an agent\'s mistakes', () => {
    it('acknowledges a repeated JobFinished again and changes nothing', async () => {
      const { o, a, job } = await startedRun();
      a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_FAILED, { exitCode: 3, failureReason: 'tests failed' });
      await a.next('finishedAck');
      const done = await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'failed');
      // The agent did not see the ack (say) and reports again, differently: the first report stands.
      a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
      expect(await a.next('finishedAck')).toEqual({ jobId: job.id, attempt: 1 });
      const after = await waitForJob(o.member, o.orgId, job.id, () => true);
      expect(after).toMatchObject({ status: 'failed', exitCode: 3, failureReason: 'tests failed' });
      expect(after.events).toEqual(done.events);
    });

    it('records a JobFinished with JOB_OUTCOME_UNSPECIFIED as a failure', async () => {
      const { o, a, job } = await startedRun();
      a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_UNSPECIFIED);
      await a.next('finishedAck');
      expect(await waitForJob(o.member, o.orgId, job.id, (j) => j.status !== 'running')).toMatchObject({ status: 'failed', exitCode: null, failureReason: 'failed' });
    });

    it('stores a line with LOG_STREAM_UNSPECIFIED as a system line', async () => {
      const { o, a, job } = await startedRun();
      a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: LogStream.LOG_STREAM_UNSPECIFIED, text: 'no stream said' }] } });
      await a.next('logAck');
      const { data } = await o.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: o.orgId, jobId: job.id }, query: {} } });
      expect(data!.items.map((l) => [l.stream, l.text])).toEqual([['system', 'no stream said']]);
    });

    it('stores a NUL the command printed as U+FFFD, and acknowledges the batch', async () => {
      const { o, a, job } = await startedRun();
      const at = new Date();
      a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at, stream: LogStream.LOG_STREAM_STDOUT, text: 'a\0b' }, { at, stream: LogStream.LOG_STREAM_STDOUT, text: 'after' }] } });
      expect(await a.next('logAck')).toEqual({ jobId: job.id, attempt: 1, ackedSeq: 2 });
      const { data } = await o.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: o.orgId, jobId: job.id }, query: {} } });
      expect(data!.items.map((l) => l.text)).toEqual(['a\uFFFDb', 'after']);
    });

    it('answers every kind of message about a job the agent does not hold with UNKNOWN_JOB', async () => {
      const o = await org();
      const a = await welcomed(o.token);
      const stranger = await createJob(o.member, o.orgId, { repoId: o.repo.id, labels: ['nobody-has-this'] });
      const jobId = stranger.id;
      const at = new Date();
      const mistakes = [
        { $case: 'started' as const, value: { jobId, attempt: 1, startedAt: at } },
        { $case: 'logBatch' as const, value: { jobId, attempt: 1, firstSeq: 1, lines: [{ at, stream: LogStream.LOG_STREAM_STDOUT, text: 'x' }] } },
        { $case: 'finished' as const, value: { jobId, attempt: 1, outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED, exitCode: 0, failureReason: '', finishedAt: at, lastSeq: 0, change: undefined } },
      ];
      for (const mistake of mistakes) {
        a.send(mistake);
        expect(await a.next('notice'), mistake.$case).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB, jobId });
      }
      expect((await waitForJob(o.member, o.orgId, jobId, () => true)).status).toBe('queued');
    });
  });

  describe('CancelJob', () => {
    it('keeps the outcome of a run that ended by itself before the cancel reached it', async () => {
      const { o, a, job } = await startedRun();
      await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'running');
      await o.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: o.orgId, jobId: job.id } }, body: { reason: 'too late' } });
      expect(await a.next('cancel')).toMatchObject({ jobId: job.id, attempt: 1 });
      // The command had already exited 0: the agent reports the outcome it reached (agent.proto, CancelJob).
      a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
      await a.next('finishedAck');
      const done = await waitForJob(o.member, o.orgId, job.id, (j) => j.finishedAt !== null);
      expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
      expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'cancel_requested', 'succeeded']);
    });
  });

  describe('the attempt limit', () => {
    it('ends a job failed once its agents have given back maxAttempts started runs', async () => {
      const o = await org();
      // Two agents, so each given-back run goes to the other (agent.proto, JobRejected).
      const agents = [await welcomed(o.token), await welcomed(o.token)];
      const job = await createJob(o.member, o.orgId, { repoId: o.repo.id, maxAttempts: 2 });
      for (const attempt of [1, 2]) {
        const holder = await assignedRun(agents, job.id, attempt);
        holder.start(job.id, attempt);
        await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'running' && j.attempt === attempt);
        // Started, then given back (shutting down): the run counts.
        holder.send({ $case: 'rejected', value: { jobId: job.id, attempt, reason: 'shutting down' } });
        await waitForJob(o.member, o.orgId, job.id, (j) => j.status !== 'running');
      }
      const done = await waitForJob(o.member, o.orgId, job.id, (j) => j.status === 'failed', 30_000);
      expect(done.attempt).toBe(2);
      expect(done.failureReason).toMatch(/2 attempts/);
    });

    /** The agent that was assigned this run of the job (the server chooses which). */
    async function assignedRun(agents: ProtocolClient[], jobId: string, attempt: number): Promise<ProtocolClient> {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const holder = agents.find((a) => a.received('assignment').some((m) => m.jobId === jobId && m.attempt === attempt));
        if (holder) return holder;
        if (Date.now() > deadline) throw new Error(`run ${attempt} of job ${jobId} was assigned to no agent`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });
});
