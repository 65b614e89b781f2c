// The agent.v1 protocol as an agent sees it, spoken by a scripted client over real gRPC: the job's
// whole life through the gateway, and every kind of protocol mistake answered without harm.
import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { JobOutcome, LogStream, NoticeCode } from '../generated/proto/agent/v1/agent.js';
import { createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { reworkableJob } from './support/scripted-change.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('agent protocol on %s', (driver) => {
  const t = useTestSystem({ driver, env: { AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '4s', DISPATCH_SWEEP_INTERVAL: '1s' } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  async function orgWithAgentToken() {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId, { cloneUrl: 'https://git.example.test/acme/app.git' });
    const { data } = await org.admin.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: 'ci-runner' } });
    return { ...org, repo, agentToken: data!.secret, tokenId: data!.token.id };
  }

  function agent(token: string | undefined, agentId?: string): ProtocolClient {
    const client = new ProtocolClient(t.grpcAddress, token, agentId);
    clients.push(client);
    return client;
  }

  async function until(condition: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * A second session on the system's PostgreSQL database, holding a job's row lock as another writer
   * would for a moment (PostgreSQL only: PGlite serves one connection).
   */
  async function withRowLocker(use: (locker: { query: pg.Client['query']; lock(jobId: string): Promise<void>; release(): Promise<void>; waiters(n: number): Promise<void> }) => Promise<void>): Promise<void> {
    const config = t.system.config.database;
    if (config.kind !== 'postgres') throw new Error('PostgreSQL only');
    const client = new pg.Client({ connectionString: config.url });
    await client.connect();
    try {
      await use({
        query: client.query.bind(client) as pg.Client['query'],
        async lock(jobId) {
          await client.query('begin');
          await client.query('select id from jobs where id = $1 for update', [jobId]);
        },
        async release() {
          await client.query('commit');
        },
        /** Until `n` sessions wait on a lock (on the held row, as nothing else locks here). */
        waiters: (n) => until(async () => (await client.query(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)).rowCount! >= n),
      });
    } finally {
      await client.end();
    }
  }

  /** An agent past its Hello and the server's Welcome. */
  async function connectedAgent(token: string, hello: Parameters<ProtocolClient['hello']>[0] = {}): Promise<ProtocolClient> {
    const client = agent(token);
    client.hello(hello);
    await client.next('welcome');
    return client;
  }

  it('runs a job through its whole life: assignment, start, logs, success', async () => {
    const org = await orgWithAgentToken();
    const a = agent(org.agentToken);
    a.hello({ labels: ['linux'], capacity: 1 });
    const welcome = await a.next('welcome');
    expect(welcome.heartbeatInterval?.seconds).toBe(1);

    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, prompt: 'Make the build green', cancelGraceSeconds: 7 });
    const assignment = await a.next('assignment');
    expect(assignment).toMatchObject({ jobId: job.id, attempt: 1, prompt: 'Make the build green', repository: { id: org.repo.id, cloneUrl: 'https://git.example.test/acme/app.git', defaultBranch: 'main' } });
    expect(assignment.cancelGrace).toEqual({ seconds: 7, nanos: 0 });

    a.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');

    const at = new Date();
    a.send({
      $case: 'logBatch',
      value: {
        jobId: job.id,
        attempt: 1,
        firstSeq: 1,
        lines: [
          { at, stream: LogStream.LOG_STREAM_STDOUT, text: 'cloning' },
          { at, stream: LogStream.LOG_STREAM_STDERR, text: 'warning: shallow' },
          { at, stream: LogStream.LOG_STREAM_SYSTEM, text: 'exit 0' },
        ],
      },
    });
    expect(await a.next('logAck')).toEqual({ jobId: job.id, attempt: 1, ackedSeq: 3 });
    a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 3 });
    expect(await a.next('finishedAck')).toEqual({ jobId: job.id, attempt: 1 });

    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done).toMatchObject({ exitCode: 0, attempt: 1, failureReason: null });
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'succeeded']);
    const logs = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    expect(logs.data?.items.map((l) => [l.seq, l.stream, l.text])).toEqual([
      [1, 'stdout', 'cloning'],
      [2, 'stderr', 'warning: shallow'],
      [3, 'system', 'exit 0'],
    ]);
  });

  /** Lines `from`..`to` of attempt 1 as one batch. */
  function lines(jobId: string, from: number, to: number) {
    const at = new Date();
    return { $case: 'logBatch' as const, value: { jobId, attempt: 1, firstSeq: from, lines: Array.from({ length: to - from + 1 }, (_, i) => ({ at, stream: LogStream.LOG_STREAM_STDOUT, text: `line ${from + i}` })) } };
  }

  async function startedJob(org: Awaited<ReturnType<typeof orgWithAgentToken>>) {
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    a.start(job.id, 1);
    return { a, job };
  }

  it('records a run\'s end only once every line up to its last_seq is stored: a JobFinished ahead of its lines is answered as a gap and acknowledged when they arrive', async () => {
    const org = await orgWithAgentToken();
    const { a, job } = await startedJob(org);
    a.send(lines(job.id, 1, 5));
    expect(await a.next('logAck')).toMatchObject({ ackedSeq: 5 });
    a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 8 });
    expect(await a.next('logAck')).toMatchObject({ jobId: job.id, attempt: 1, ackedSeq: 5 });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_LOG_SEQ_GAP, jobId: job.id, attempt: 1 });
    // Not recorded yet: the job runs on until its lines are in.
    expect((await waitForJob(org.member, org.orgId, job.id, () => true)).status).toBe('running');

    a.send(lines(job.id, 6, 8));
    expect(await a.next('logAck')).toMatchObject({ ackedSeq: 8 });
    expect(await a.next('finishedAck')).toEqual({ jobId: job.id, attempt: 1 });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    expect(data!.items.map((l) => l.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('answers log lines after a run\'s JobFinished with OUT_OF_ORDER and stores none, while a resend of its lines is acknowledged', async () => {
    const org = await orgWithAgentToken();
    const { a, job } = await startedJob(org);
    a.send(lines(job.id, 1, 3));
    await a.next('logAck');
    a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 3 });
    await a.next('finishedAck');
    a.send(lines(job.id, 4, 4));
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_OUT_OF_ORDER, jobId: job.id, attempt: 1 });
    a.send(lines(job.id, 1, 3));
    expect(await a.next('logAck')).toMatchObject({ ackedSeq: 3 });
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    expect(data!.items.map((l) => l.text)).toEqual(['line 1', 'line 2', 'line 3']);
  });

  it('answers JobStarted before JobAccepted with OUT_OF_ORDER, and the job does not start', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    a.send({ $case: 'started', value: { jobId: job.id, attempt: 1, startedAt: new Date() } });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_OUT_OF_ORDER, jobId: job.id, attempt: 1 });
    expect((await waitForJob(org.member, org.orgId, job.id, () => true)).status).toBe('assigned');
    // In order, it starts.
    a.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');
  });

  it('answers an empty LogBatch with INVALID_MESSAGE', async () => {
    const org = await orgWithAgentToken();
    const { a, job } = await startedJob(org);
    a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [] } });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_INVALID_MESSAGE, jobId: job.id, attempt: 1 });
  });

  it('records a job that finishes before its execute step started waiting, with its exit code', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_FAILED, { exitCode: 2 });
    await a.next('finishedAck');
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'failed');
    expect(done).toMatchObject({ exitCode: 2, failureReason: 'exited with code 2' });
  });

  it('refuses a stream without a valid token with UNAUTHENTICATED', async () => {
    for (const token of [undefined, 'ajt_not-a-real-token']) {
      const a = agent(token);
      a.hello();
      const ended = await a.closed();
      expect(ended).not.toBe('ok');
      expect(ended !== 'ok' && ended.code).toBe(status.UNAUTHENTICATED);
    }
  });

  it('ends a stream whose first message is not Hello with INVALID_ARGUMENT', async () => {
    const org = await orgWithAgentToken();
    const a = agent(org.agentToken);
    a.send({ $case: 'heartbeat', value: { seq: 1, runningJobs: [] } });
    const ended = await a.closed();
    expect(ended !== 'ok' && ended.code).toBe(status.INVALID_ARGUMENT);
  });

  it('answers reports about jobs the agent does not hold with a notice, and stores nothing', async () => {
    const mine = await orgWithAgentToken();
    const theirs = await orgWithAgentToken();
    const theirJob = await createJob(theirs.member, theirs.orgId, { repoId: theirs.repo.id });

    const a = await connectedAgent(mine.agentToken);
    a.send({ $case: 'logBatch', value: { jobId: theirJob.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: 'injected' }] } });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB, jobId: theirJob.id });
    a.finish(theirJob.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB });
    a.send({ $case: 'started', value: { jobId: 'not-a-uuid', attempt: 1, startedAt: new Date() } });
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_UNKNOWN_JOB });

    const job = await theirs.member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: theirs.orgId, jobId: theirJob.id } } });
    expect(job.data).toMatchObject({ status: 'queued', agentId: null });
    const logs = await theirs.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: theirs.orgId, jobId: theirJob.id }, query: {} } });
    expect(logs.data?.items).toEqual([]);
  });

  it('answers a log batch that would leave a gap with the stored position and a notice', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    const line = { at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: 'x' };
    a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [line, line] } });
    expect((await a.next('logAck')).ackedSeq).toBe(2);
    a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 5, lines: [line] } });
    expect((await a.next('logAck')).ackedSeq).toBe(2);
    expect(await a.next('notice')).toMatchObject({ code: NoticeCode.NOTICE_CODE_LOG_SEQ_GAP, jobId: job.id });
    // A resent batch overlapping what is stored is stored once.
    a.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 2, lines: [line, line] } });
    expect((await a.next('logAck')).ackedSeq).toBe(3);
    const logs = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: {} } });
    expect(logs.data?.items.map((l) => l.seq)).toEqual([1, 2, 3]);
  });

  it('stores batches sent back to back without waiting for acks, every line once and in order', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    const at = new Date();
    const batch = (firstSeq: number, size: number) => ({
      jobId: job.id,
      attempt: 1,
      firstSeq,
      lines: Array.from({ length: size }, (_, i) => ({ at, stream: LogStream.LOG_STREAM_STDOUT, text: `line ${firstSeq + i}` })),
    });
    // The server may store batches that queue up behind each other as one, with one ack for them.
    for (let first = 1; first <= 1000; first += 25) a.send({ $case: 'logBatch', value: batch(first, 25) });
    // A resend of lines already sent, in the middle of the flow, changes nothing.
    a.send({ $case: 'logBatch', value: batch(1, 50) });
    for (let first = 1001; first <= 1500; first += 250) a.send({ $case: 'logBatch', value: batch(first, 250) });
    let acked = 0;
    while (acked < 1500) {
      const ack = await a.next('logAck');
      expect(ack.ackedSeq).toBeGreaterThanOrEqual(acked);
      acked = ack.ackedSeq;
    }
    expect(acked).toBe(1500);
    const seqs: number[] = [];
    for (let after = 0; seqs.length < 1500; after = seqs.at(-1)!) {
      const page = await org.member.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId: job.id }, query: { after, limit: 1000 } } });
      expect(page.data?.items.length).toBeGreaterThan(0);
      for (const line of page.data!.items) {
        expect(line.text).toBe(`line ${line.seq}`);
        seqs.push(line.seq);
      }
    }
    expect(seqs).toEqual(Array.from({ length: 1500 }, (_, i) => i + 1));
  });

  it('ends the streams of a revoked token', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    await org.admin.POST('/v1/orgs/{orgId}/agent-tokens/{tokenId}/revoke', { params: { path: { orgId: org.orgId, tokenId: org.tokenId } } });
    const ended = await a.closed();
    expect(ended !== 'ok' && ended.code).toBe(status.UNAUTHENTICATED);
    const again = agent(org.agentToken);
    again.hello();
    const refused = await again.closed();
    expect(refused !== 'ok' && refused.code).toBe(status.UNAUTHENTICATED);
  });

  it('delivers a cancel to the agent running the job and records the job cancelled when it stops', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');
    a.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');

    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } }, body: { reason: 'not needed' } });
    const cancel = await a.next('cancel');
    expect(cancel).toMatchObject({ jobId: job.id, attempt: 1, reason: 'not needed' });
    a.finish(job.id, 1, JobOutcome.JOB_OUTCOME_CANCELLED, { exitCode: 143, failureReason: 'terminated' });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'cancelled');
    expect(done.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'cancel_requested', 'cancelled']);
  });

  it('dispatches rework before older backlog jobs, and only jobs whose labels the agent has', async () => {
    const org = await orgWithAgentToken();
    const parent = { id: await reworkableJob(t, org, org.repo.id) };

    const gpuJob = await createJob(org.member, org.orgId, { repoId: org.repo.id, labels: ['gpu'] });
    const backlog = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    const rework = await createJob(org.member, org.orgId, { repoId: org.repo.id, queueType: 'rework', parentJobId: parent.id });

    const a = await connectedAgent(org.agentToken, { capacity: 1, labels: ['linux'] });
    expect((await a.next('assignment')).jobId).toBe(rework.id);
    a.finish(rework.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    expect((await a.next('assignment')).jobId).toBe(backlog.id);

    const gpu = await connectedAgent(org.agentToken, { capacity: 1, labels: ['gpu', 'linux'] });
    expect((await gpu.next('assignment')).jobId).toBe(gpuJob.id);
  });

  // A queued job's row is locked for a moment whenever something writes it: its workflow recording
  // its claim step, a cancel. A claim must wait for that moment, not skip the job and hand out the
  // one behind it. (PostgreSQL only: PGlite serves one connection, so nothing else holds a lock.)
  it.runIf(driver === 'postgres')('keeps the dispatch order while the first job in line is locked for a moment', async () => {
    const org = await orgWithAgentToken();
    const parent = { id: await reworkableJob(t, org, org.repo.id) };
    const backlog = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    const rework = await createJob(org.member, org.orgId, { repoId: org.repo.id, queueType: 'rework', parentJobId: parent.id });

    await withRowLocker(async (locker) => {
      // Both workflows wait in their claim step first, so the only one left to wait on the lock is a claim.
      await until(async () => (await locker.query<{ n: number }>(`select count(*)::int as n from jobs where id = any($1) and claim_task_token is not null`, [[backlog.id, rework.id]])).rows[0]!.n === 2);
      await locker.lock(rework.id);

      const a = await connectedAgent(org.agentToken, { capacity: 1 });
      const first = a.next('assignment').then((m) => m.jobId);
      // A claim that skipped the locked row has handed out the backlog job by now.
      expect(await Promise.race([first, locker.waiters(1).then(() => 'waiting on the lock')])).toBe('waiting on the lock');
      await locker.release();
      expect(await first).toBe(rework.id);
    });
  });

  // Two changes to one job that both wait on its row: the second must number its event after the
  // first's, though it began before the first committed. (PostgreSQL only, as above.)
  it.runIf(driver === 'postgres')('numbers a job\'s events in order, without repeats, when changes to it race', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    await a.next('assignment');

    await withRowLocker(async (locker) => {
      // The workflow waits in its execute step, so the cancel leaves the job running until the agent stops.
      await until(async () => (await locker.query(`select 1 from jobs where id = $1 and execute_task_token is not null`, [job.id])).rowCount === 1);
      await locker.lock(job.id);
      // Queued on the row in this order: a cancel (over REST), then the agent's Started.
      const cancelled = org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: job.id } } });
      await locker.waiters(1);
      a.start(job.id, 1);
      await locker.waiters(2);
      await locker.release();
      expect((await cancelled).response.status).toBe(202);
    });

    const seen = await waitForJob(org.member, org.orgId, job.id, (j) => j.events.some((e) => e.type === 'started'));
    expect(seen.events.slice(0, 4).map((e) => [e.seq, e.type])).toEqual([
      [1, 'created'],
      [2, 'assigned'],
      [3, 'cancel_requested'],
      [4, 'started'],
    ]);
  });

  it('requeues a job the agent declines before starting it as a new run that does not count, and offers it to another agent first', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, maxAttempts: 1 });
    expect(await a.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    // Another agent with room is connected when the job comes back.
    const b = await connectedAgent(org.agentToken);
    a.send({ $case: 'rejected', value: { jobId: job.id, attempt: 1, reason: 'disk full' } });

    // It goes to the other agent, as run 2: a (job, attempt) pair names one run. A decline is not
    // a failure, so maxAttempts 1 does not end the job.
    expect(await b.next('assignment', 30_000)).toMatchObject({ jobId: job.id, attempt: 2 });
    b.start(job.id, 2);
    b.finish(job.id, 2, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0 });
    const done = await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    expect(done.events.map((e) => [e.type, e.attempt, e.agentId])).toEqual([
      ['created', 0, null],
      ['assigned', 1, a.agentId],
      ['requeued', 1, null],
      ['assigned', 2, b.agentId],
      ['started', 2, b.agentId],
      ['succeeded', 2, b.agentId],
    ]);
    expect(done.events[2]?.detail).toBe('given back by the agent: disk full');
  });

  it('offers a declined job to the same agent again, as a new run, when no other agent takes it', async () => {
    const org = await orgWithAgentToken();
    const a = await connectedAgent(org.agentToken);
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id });
    expect(await a.next('assignment')).toMatchObject({ jobId: job.id, attempt: 1 });
    a.send({ $case: 'rejected', value: { jobId: job.id, attempt: 1, reason: 'at capacity' } });
    // Not at once: the announcement of its requeue passes this agent by; the next sweep does not.
    expect(await a.next('assignment', 30_000)).toMatchObject({ jobId: job.id, attempt: 2 });
  });

  it('requeues the job of an agent that goes silent, and runs it again as attempt 2 elsewhere', async () => {
    const org = await orgWithAgentToken();
    const first = await connectedAgent(org.agentToken);
    // The job goes to another agent once the first has surely stopped it: lease, then this grace.
    const job = await createJob(org.member, org.orgId, { repoId: org.repo.id, cancelGraceSeconds: 1 });
    await first.next('assignment');
    first.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');
    first.close(); // the agent dies: no more heartbeats

    const second = await connectedAgent(org.agentToken);
    const retry = await second.next('assignment', 30_000);
    expect(retry).toMatchObject({ jobId: job.id, attempt: 2 });
    const requeued = await waitForJob(org.member, org.orgId, job.id, (j) => j.attempt === 2);
    expect(requeued.events.map((e) => e.type)).toEqual(['created', 'assigned', 'started', 'requeued', 'assigned']);
  });
});
