// What the agent holds and how it answers the server: the job runs it owns, their log outboxes, and
// what each server message does to them. It writes only through the channel the connection hands
// it at Welcome, so it never has to know whether a stream is up, being replaced or gone.
import { JobOutcome, NoticeCode, type CancelJob, type Heartbeat, type Hello, type JobAssignment, type JobFinished, type JobRejected, type Notice, type RunningJob, type Welcome } from '../generated/agent/v1/agent.js';
import { agentLog } from './agent-log.js';
import type { AgentPayload, OutboundChannel, SessionHandler, SessionPayload } from './connection.js';
import { durationToMs, formatMs } from './durations.js';
import { AgentLease } from './lease.js';
import { JobRun, type JobRunContext, type RunResult } from './job-runner.js';
import { LogOutbox, type BatchLimits, type OutboxLimits } from './log-outbox.js';
import type { JobLogSink } from './output-capture.js';
import type { RunTracer } from './tracing.js';

export interface AgentSettings {
  agentId: string;
  name: string;
  version: string;
  labels: string[];
  capacity: number;
  /** What every run needs; the patch limit is the agent's own (the current server's). */
  runContext: Omit<JobRunContext, 'maxPatchBytes'>;
  outboxLimits?: OutboxLimits;
  /** Makes a span of each run it accepts, when the agent traces. */
  tracer?: RunTracer | undefined;
}

/** Lines per batch when Welcome states no preference. */
const DEFAULT_MAX_BATCH_LINES = 500;
/** Bytes per batch: well under gRPC's 4 MiB message limit even with 64 KiB lines. */
const MAX_BATCH_BYTES = 1024 * 1024;
/**
 * Full batches per job sent ahead of the server's ack: enough that the server always has the next
 * one while it stores this one, few enough that a fast job's outbox does not pile up in the
 * server's memory (it reads the stream as it arrives) or make the acks seconds late.
 */
const BATCHES_IN_FLIGHT = 4;
/** How long a line may wait for company before it is sent: live viewers see output this fresh. */
const FLUSH_INTERVAL_MS = 20;
/**
 * Bytes per PatchChunk (agent.proto: at most 1 MiB). Far smaller than that: a server that stops
 * reading a stream still takes in the chunk already on its way, and while it assembles one it holds
 * the network buffers it came in, so this is what each agent adds to its memory when many send at once.
 */
const PATCH_CHUNK_BYTES = 64 * 1024;
/** Patch bytes sent ahead of the server's PatchAck: they wait in its memory, as lines in flight do. */
const PATCH_BYTES_IN_FLIGHT = 2 * 1024 * 1024;
/** The patch size kept before any Welcome has named the server's limit (this server's default). */
const ASSUMED_MAX_PATCH_BYTES = 32 * 1024 * 1024;

/** How this agent batches a job's log, given the lines per batch the server asked for. */
export function batchLimits(maxLines: number): BatchLimits {
  return { maxLines, maxBytes: MAX_BATCH_BYTES, maxInFlightLines: BATCHES_IN_FLIGHT * maxLines };
}

interface HeldJob {
  readonly jobId: string;
  readonly attempt: number;
  readonly outbox: LogOutbox;
  readonly run: JobRun;
  /** Settles when the run is over. */
  readonly done: Promise<RunResult>;
  startedAt?: Date;
  /** Stream (session number) JobStarted was last written to. */
  startedSentOn?: number;
  finished?: JobFinished;
  finishedSentOn?: number;
  /** The change's patch, sent in PatchChunks as it is read, all before JobFinished; kept until its JobFinishedAck. */
  patch?: Buffer;
  /** Whether `patch` is all of it (git has finished writing it), rather than what is read so far. */
  patchWhole: boolean;
  /** Patch bytes the server has stored (PatchAck), and written to the current stream. */
  patchAcked: number;
  patchSent: number;
  /** The run was stopped to give the job back (shutdown): said with this once its log is stored. */
  givenBack?: JobRejected;
  givenBackSentOn?: number;
}

export class Agent implements SessionHandler {
  private readonly jobs = new Map<string, HeldJob>();
  private channel: OutboundChannel | undefined;
  private batchLimits: BatchLimits = batchLimits(DEFAULT_MAX_BATCH_LINES);
  private flushTimer: NodeJS.Timeout | undefined;
  private flushImmediate: NodeJS.Immediate | undefined;
  private awaitingDrain = false;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];
  private readonly lease = new AgentLease((leaseMs) => this.leaseExpired(leaseMs));
  /** Welcome.max_patch_bytes of the current server: 0 takes no patches. */
  private maxPatchBytes = ASSUMED_MAX_PATCH_BYTES;

  constructor(private readonly settings: AgentSettings) {}

  /** The largest patch worth keeping for the server (a run asks when its patch is taken). */
  private readonly patchLimit = (): number => this.maxPatchBytes;

  // ---- what the connection asks for -------------------------------------------------------------

  hello(): Hello {
    const { agentId, name, version, labels, capacity } = this.settings;
    // Capacity 0 tells the server this agent only finishes what it holds.
    return { agentId, name, version, labels, capacity: this.shuttingDown ? 0 : capacity, runningJobs: this.runningJobs() };
  }

  heartbeat(): Heartbeat {
    // The connection numbers it.
    return { runningJobs: this.runningJobs(), seq: 0 };
  }

  answered(sentAt: number, leaseMs: number | undefined): void {
    if (leaseMs !== undefined) this.lease.renew(sentAt, leaseMs);
  }

  welcomed(welcome: Welcome, channel: OutboundChannel): void {
    this.channel = channel;
    this.awaitingDrain = false;
    this.batchLimits = batchLimits(welcome.maxLogBatchLines > 0 ? welcome.maxLogBatchLines : DEFAULT_MAX_BATCH_LINES);
    this.maxPatchBytes = welcome.maxPatchBytes;
    for (const jobId of welcome.cancelJobIds) {
      const job = this.jobs.get(jobId);
      if (job) this.drop(job, 'the server no longer gives this run to this agent (Welcome.cancel_job_ids)');
    }
    // Whatever went out on an earlier stream may have been lost with it. The server's LogAck for
    // each kept job follows shortly and skips whatever it already stored.
    for (const job of this.jobs.values()) {
      job.outbox.rewind();
      job.patchSent = job.patchAcked;
    }
    this.flushNow();
  }

  received(payload: SessionPayload, origin: OutboundChannel): void {
    switch (payload.$case) {
      case 'assignment':
        return this.assign(payload.value, origin);
      case 'cancel':
        return this.cancel(payload.value);
      case 'logAck': {
        const job = this.find(payload.value.jobId, payload.value.attempt);
        // Acks free outbox room; a paused output pipe resumes through the outbox's room waiters.
        job?.outbox.ack(payload.value.ackedSeq);
        // A job given back waits for its whole log to be stored before it says so.
        if (job?.givenBack) this.scheduleFlush(0);
        // The ack made room in flight for lines the bound held back: they leave as appended lines
        // do, a full batch at once, fewer once they have waited a moment for company. (Sending
        // whatever waits on every ack cut the median latency by ~10 ms but made twice the batches,
        // each one a statement, a notification and a frame per viewer: +50% server CPU.)
        else if (job && !job.outbox.allSent) this.scheduleFlush(job.outbox.unsentLines >= this.batchLimits.maxLines ? 0 : FLUSH_INTERVAL_MS);
        return;
      }
      case 'patchAck': {
        const job = this.find(payload.value.jobId, payload.value.attempt);
        if (!job) return;
        job.patchAcked = Math.max(job.patchAcked, payload.value.storedBytes);
        job.patchSent = Math.max(job.patchSent, job.patchAcked);
        this.scheduleFlush(0);
        return;
      }
      case 'finishedAck': {
        const job = this.find(payload.value.jobId, payload.value.attempt);
        if (job?.finished) return this.forget(job);
        agentLog.warn('JobFinishedAck for a run that has not finished here; ignored', { jobId: payload.value.jobId, attempt: payload.value.attempt });
        return;
      }
      case 'notice':
        return this.notice(payload.value);
      case 'drop': {
        const job = this.find(payload.value.jobId, payload.value.attempt);
        if (job) this.drop(job, `the server took the run back: ${payload.value.reason}`);
        return;
      }
    }
  }

  disconnected(): void {
    this.channel = undefined;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
  }

  // ---- what main asks for ----------------------------------------------------------------------

  get heldJobCount(): number {
    return this.jobs.size;
  }

  /**
   * Stops taking jobs (later Hellos say capacity 0, later assignments are rejected) and stops every
   * running job with its cancel grace, to give it back rather than finish it: once its remaining log
   * lines are stored, each is reported with a JobRejected, and the server runs the job again
   * elsewhere. CANCELLED is for a CancelJob only: a restarting agent must not end users' jobs.
   * Runs that had already finished are still reported as finished. Resolves when every run has ended.
   */
  async shutDown(reason: string): Promise<void> {
    this.shuttingDown = true;
    for (const job of this.jobs.values()) {
      if (!job.finished && !job.givenBack) job.run.giveBack(reason, job.run.cancelGraceMs);
    }
    await Promise.all([...this.jobs.values()].map((job) => job.done));
  }

  /** Kills every run at once, without grace or report: the agent is going down hard. */
  abandonAll(): void {
    this.shuttingDown = true;
    this.lease.stop();
    for (const job of this.jobs.values()) job.run.abandon();
  }

  /**
   * Resolves true once every run's end has reached the server (acknowledged, for a JobFinished;
   * written to the stream, for a JobRejected, which has no ack), false after timeoutMs.
   */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.jobs.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /**
   * The server has not answered for the whole lease: it may give these jobs to another agent once
   * the runs' grace is over too, so every run still going is stopped now, as a give-back (SIGTERM,
   * grace, SIGKILL). Finished runs are kept: their outcome still counts if the server takes it.
   */
  private leaseExpired(leaseMs: number): void {
    const why = `lease expired: no answer from the server for ${formatMs(leaseMs)}`;
    for (const job of this.jobs.values()) {
      if (job.finished || job.givenBack) continue;
      agentLog.warn('stopping a run: its lease expired', { jobId: job.jobId, attempt: job.attempt, lease: formatMs(leaseMs) });
      job.run.giveBack(why, job.run.cancelGraceMs);
    }
  }

  // ---- server messages -------------------------------------------------------------------------

  private assign(assignment: JobAssignment, origin: OutboundChannel): void {
    const { jobId, attempt } = assignment;
    const existing = this.jobs.get(jobId);
    if (existing?.attempt === attempt) {
      // A repeat of an assignment already taken: say yes again, run it once.
      origin.write({ $case: 'accepted', value: { jobId, attempt } });
      return;
    }
    if (this.shuttingDown) return this.reject(origin, assignment, 'the agent is shutting down');
    // The server's answers stopped long enough for the runs to be void: take no new one until they resume.
    if (!this.lease.valid) return this.reject(origin, assignment, 'the agent\'s lease has expired');
    // A newer attempt of a job held at an older one: the server has moved on from the old run.
    if (existing) this.drop(existing, `superseded by attempt ${attempt}`);
    const running = this.activeJobCount();
    if (running >= this.settings.capacity) return this.reject(origin, assignment, `at capacity: running ${running} of ${this.settings.capacity} jobs`);

    // Accept before any slow preparation: the server's start timeout is running.
    origin.write({ $case: 'accepted', value: { jobId, attempt } });
    const outbox = new LogOutbox(jobId, attempt, this.settings.outboxLimits);
    const sink: JobLogSink = {
      append: (stream, text) => {
        outbox.append(stream, text);
        this.scheduleFlush(outbox.unsentLines >= this.batchLimits.maxLines ? 0 : FLUSH_INTERVAL_MS);
      },
      get isFull() {
        return outbox.isFull;
      },
      whenRoom: () => outbox.whenRoom(),
    };
    const run = new JobRun(assignment, { ...this.settings.runContext, maxPatchBytes: this.patchLimit }, sink, {
      started: (startedAt) => {
        job.startedAt = startedAt;
        this.scheduleFlush(0);
      },
      patchRead: (bytesSoFar, whole) => {
        if (job.finished || job.givenBack) return;
        job.patch = bytesSoFar;
        job.patchWhole = whole;
        // A chunk's worth more, or the end: partial chunks would only cost the server statements.
        if (whole || !bytesSoFar || bytesSoFar.byteLength - job.patchSent >= PATCH_CHUNK_BYTES) this.scheduleFlush(0);
      },
    });
    agentLog.info('job accepted', { jobId, attempt, repository: assignment.repository?.name, running: running + 1, capacity: this.settings.capacity });
    const endSpan = this.settings.tracer?.startRun(assignment);
    const job: HeldJob = { jobId, attempt, outbox, run, done: run.start(), patchAcked: 0, patchSent: 0, patchWhole: false };
    this.jobs.set(jobId, job);
    void job.done.then((result) => {
      endSpan?.(result);
      this.runEnded(job, result);
    });
  }

  private reject(origin: OutboundChannel, assignment: JobAssignment, reason: string): void {
    agentLog.info('job rejected', { jobId: assignment.jobId, attempt: assignment.attempt, reason });
    origin.write({ $case: 'rejected', value: { jobId: assignment.jobId, attempt: assignment.attempt, reason } });
  }

  private cancel(cancel: CancelJob): void {
    const job = this.find(cancel.jobId, cancel.attempt);
    // Repeats, cancels for runs not held, and runs that ended (or are being given back) first are all no-ops.
    if (!job || job.finished || job.givenBack) return;
    const graceMs = durationToMs(cancel.grace) ?? job.run.cancelGraceMs;
    agentLog.info('cancelling job', { jobId: job.jobId, attempt: job.attempt, reason: cancel.reason, graceMs });
    job.run.cancel(cancel.reason || 'cancelled by the server', graceMs);
  }

  private notice(notice: Notice): void {
    const fields = { code: NoticeCode[notice.code] ?? String(notice.code), jobId: notice.jobId || undefined, attempt: notice.attempt || undefined, detail: notice.detail };
    switch (notice.code) {
      case NoticeCode.NOTICE_CODE_UNKNOWN_JOB: {
        const job = this.jobs.get(notice.jobId);
        if (job && (notice.attempt === 0 || notice.attempt === job.attempt)) this.drop(job, `the server does not know this run: ${notice.detail}`);
        else agentLog.info('server notice about a run no longer held', fields);
        return;
      }
      case NoticeCode.NOTICE_CODE_LOG_SEQ_GAP: {
        const job = this.jobs.get(notice.jobId);
        if (!job || (notice.attempt !== 0 && notice.attempt !== job.attempt)) return;
        // The server's LogAck (sent before the notice) says where it stands: resend from there.
        agentLog.warn('server saw a gap in a job log; resending from its last ack', { ...fields, ackedSeq: job.outbox.ackedSeq });
        job.outbox.rewind();
        this.scheduleFlush(0);
        return;
      }
      case NoticeCode.NOTICE_CODE_PATCH_GAP: {
        const job = this.jobs.get(notice.jobId);
        if (!job || (notice.attempt !== 0 && notice.attempt !== job.attempt)) return;
        // The server's PatchAck (sent before the notice) says where it stands: resend from there.
        agentLog.warn('server is missing part of a patch; resending from its last ack', { ...fields, storedBytes: job.patchAcked });
        job.patchSent = job.patchAcked;
        this.scheduleFlush(0);
        return;
      }
      default:
        agentLog.warn('server ignored a message', fields);
    }
  }

  // ---- sending ---------------------------------------------------------------------------------

  private scheduleFlush(delayMs: number): void {
    if (!this.channel) return;
    if (delayMs === 0) {
      this.flushImmediate ??= setImmediate(() => this.flushNow());
      return;
    }
    this.flushTimer ??= setTimeout(() => this.flushNow(), delayMs);
  }

  /**
   * Writes what each job owes the server, in the protocol's order: JobStarted, then its log lines
   * in sequence, then JobFinished once every line has gone out, or JobRejected (a job given back)
   * once every line has been acknowledged, since the server stores no lines after it. Stops when the
   * stream's buffer is full and carries on at 'drain', so a slow link never buffers more than the
   * outboxes hold.
   */
  private flushNow(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    const channel = this.channel;
    if (!channel || this.awaitingDrain) return;
    const session = channel.sessionNumber;
    for (const job of this.jobs.values()) {
      // JobStarted has no ack: send it again on a new stream while the run goes on, in case the
      // old stream lost it (the server treats a repeat for a running job as one).
      if (job.startedAt && (job.startedSentOn === undefined || (job.startedSentOn !== session && !job.finished && !job.givenBack))) {
        job.startedSentOn = session;
        if (!this.write(channel, { $case: 'started', value: { jobId: job.jobId, attempt: job.attempt, startedAt: job.startedAt } })) return;
      }
      for (let batch = job.outbox.nextBatch(this.batchLimits); batch; batch = job.outbox.nextBatch(this.batchLimits)) {
        if (!this.write(channel, { $case: 'logBatch', value: batch })) return;
      }
      // The patch goes as it is read (while the push runs) in whole chunks, the last one once git has
      // written it all, a bounded amount ahead of the acks, and all of it before the JobFinished
      // that names its size.
      const patch = this.sendablePatch(job);
      while (
        patch &&
        job.patchSent < patch.byteLength &&
        job.patchSent - job.patchAcked < PATCH_BYTES_IN_FLIGHT &&
        (job.patchWhole || patch.byteLength - job.patchSent >= PATCH_CHUNK_BYTES)
      ) {
        const offset = job.patchSent;
        const data = patch.subarray(offset, offset + PATCH_CHUNK_BYTES);
        job.patchSent = offset + data.byteLength;
        if (!this.write(channel, { $case: 'patchChunk', value: { jobId: job.jobId, attempt: job.attempt, offset, data } })) return;
      }
      if (job.finished && job.outbox.allSent && (!patch || job.patchSent >= patch.byteLength) && job.finishedSentOn !== session) {
        job.finishedSentOn = session;
        if (!this.write(channel, { $case: 'finished', value: job.finished })) return;
      }
      if (job.givenBack && job.outbox.ackedSeq === job.outbox.lastSeq && job.givenBackSentOn !== session) {
        job.givenBackSentOn = session;
        // No ack comes for a JobRejected: once written, the run is the server's to requeue. Should
        // this stream end first, the next Hello still lists the job and it is said again there.
        if (!this.write(channel, { $case: 'rejected', value: job.givenBack }, () => this.handedBack(job))) return;
      }
    }
  }

  /** The job's patch if this server takes it (Welcome.max_patch_bytes); a larger one is reported by size only. */
  private sendablePatch(job: HeldJob): Buffer | undefined {
    return job.patch && job.patch.byteLength <= this.maxPatchBytes ? job.patch : undefined;
  }

  private write(channel: OutboundChannel, payload: AgentPayload, onWritten?: () => void): boolean {
    if (channel.write(payload, onWritten)) return true;
    this.awaitingDrain = true;
    channel.onceDrained(() => {
      if (this.channel !== channel) return;
      this.awaitingDrain = false;
      this.flushNow();
    });
    return false;
  }

  // ---- bookkeeping -----------------------------------------------------------------------------

  private runEnded(job: HeldJob, result: RunResult): void {
    if (this.jobs.get(job.jobId) !== job) return; // dropped while it ran: nothing more is said about it
    // A patch sent ahead of the result belongs to no change unless the result has it: stop sending it.
    job.patch = result.patch;
    job.patchWhole = true;
    if (result.givenBack !== undefined) {
      job.givenBack = { jobId: job.jobId, attempt: job.attempt, reason: result.givenBack };
      agentLog.info('job stopped; giving it back once its log is stored', { jobId: job.jobId, attempt: job.attempt, reason: result.givenBack, lines: job.outbox.lastSeq });
      this.scheduleFlush(0);
      return;
    }
    job.finished = {
      jobId: job.jobId,
      attempt: job.attempt,
      outcome: result.outcome,
      exitCode: result.exitCode,
      failureReason: result.failureReason,
      finishedAt: result.finishedAt,
      lastSeq: job.outbox.lastSeq,
      change: result.change,
    };
    agentLog.info('job finished', { jobId: job.jobId, attempt: job.attempt, outcome: JobOutcome[result.outcome], exitCode: result.exitCode, reason: result.failureReason || undefined, lines: job.outbox.lastSeq });
    this.scheduleFlush(0);
  }

  /** The server has recorded the run's end: nothing about it is needed any more. */
  private forget(job: HeldJob): void {
    this.jobs.delete(job.jobId);
    job.outbox.close();
    agentLog.info('job acknowledged', { jobId: job.jobId, attempt: job.attempt });
    this.notifyIfIdle();
  }

  /** The JobRejected for a job given back has left for the server: the job is no longer ours. */
  private handedBack(job: HeldJob): void {
    if (this.jobs.get(job.jobId) !== job) return;
    this.jobs.delete(job.jobId);
    job.outbox.close();
    agentLog.info('job given back', { jobId: job.jobId, attempt: job.attempt, reason: job.givenBack?.reason });
    this.notifyIfIdle();
  }

  /** The run is no longer ours: kill it without grace, discard its log, say nothing more about it. */
  private drop(job: HeldJob, why: string): void {
    this.jobs.delete(job.jobId);
    job.run.abandon();
    job.outbox.close();
    agentLog.warn('dropping job', { jobId: job.jobId, attempt: job.attempt, why });
    this.notifyIfIdle();
  }

  private find(jobId: string, attempt: number): HeldJob | undefined {
    const job = this.jobs.get(jobId);
    // A message about another attempt of a job is about a run this agent does not hold.
    return job?.attempt === attempt ? job : undefined;
  }

  private activeJobCount(): number {
    let active = 0;
    for (const job of this.jobs.values()) if (!job.finished && !job.givenBack) active++;
    return active;
  }

  private runningJobs(): RunningJob[] {
    return [...this.jobs.values()].map((job) => ({ jobId: job.jobId, attempt: job.attempt, lastSeq: job.outbox.lastSeq }));
  }

  private notifyIfIdle(): void {
    if (this.jobs.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }
}
