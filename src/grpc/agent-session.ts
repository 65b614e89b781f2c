// One agent's Connect stream: authenticates, opens with Hello/Welcome, carries the assignments the
// dispatcher hands it, and turns each report into a call on the gateway service (and each change to
// the agent's slots into a call on its AgentSlots). Messages are handled one at a time, in the order
// they arrive, as the protocol promises.
import { Metadata, status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { JobOutcome, JobQueue, LogStream, NoticeCode, type AgentMessage, type LogBatch, type PatchChunk, type RunChange, type ServerMessage } from '../../generated/proto/agent/v1/agent.js';
import { AppError, ConflictError } from '../errors.js';
import { LogIncompleteError, LogSequenceGapError, PatchGapError, type AgentCredentials, type AgentGatewayService, type AgentSessionRef, type Assignment, type FinishedInput, type RunRef } from '../services/agent-gateway.service.js';
import type { AgentSlots, Dispatcher } from '../services/dispatcher.js';
import type { LogStream as StoredStream } from '../db/schema/index.js';
import type { ReportedChange } from '../domain/change.js';
import type { JobOutcome as ReportedEnd } from '../domain/job.js';
import { durationOf } from './durations.js';
import type { InboundBudget } from './inbound-budget.js';
import { readGateOf, type ReadGate } from './read-gate.js';

export type AgentStream = ServerDuplexStream<AgentMessage, ServerMessage>;

export interface SessionSettings {
  replica: string;
  heartbeatIntervalMs: number;
  /**
   * The agent's lease (Welcome.lease_duration): it stops its runs when the server has not answered
   * it for this long. Also how long a stream may carry nothing before the server ends it.
   */
  leaseMs: number;
  /** What the server adds to the lease and a run's grace before giving a silent agent's job away. */
  leaseMarginMs: number;
  helloTimeoutMs: number;
  maxLogBatchLines: number;
}

export interface SessionHooks {
  /** Called once the Hello is accepted; the registry ends any older stream of the same agent. */
  opened(session: AgentSession): void;
  closed(session: AgentSession): void;
  /** Bytes read and not stored across the process's streams: every stream pauses past it. */
  inbound: InboundBudget;
}

class StreamEnded extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Bytes of log text read from a stream and not yet stored: past this the server stops reading the
 * stream (HTTP/2 flow control then holds the agent's writes) until storing catches up, so an agent
 * sending faster than the database stores cannot grow the server's memory.
 */
export const MAX_UNSTORED_LOG_BYTES = 8 * 1024 * 1024;

/** Batches stored as one (see receive) hold at most this many of Welcome's max_log_batch_lines… */
const MERGED_BATCHES = 4;
/** …and at most this much text: what one gRPC message may carry by default. */
const MERGED_TEXT = 4 * 1024 * 1024;
/** PatchChunks stored as one (see receive) add up to at most this much: agent.proto's largest chunk. */
const MERGED_PATCH_BYTES = 1024 * 1024;

/**
 * PatchChunks of one run, each starting where the one before ends, stored in one statement (see
 * receive). The chunks stay as they arrived, one row each: nothing is copied to join them.
 */
interface PatchRun {
  jobId: string;
  attempt: number;
  offset: number;
  pieces: Uint8Array[];
  bytes: number;
}

/** What the session handles: a message as it arrived, or chunks that arrived one after another. */
type Inbound = AgentMessage['payload'] | { $case: 'patchRun'; value: PatchRun };

// The proto stores lines of an unspecified (or unknown, newer) stream as system lines.
const streams: Record<LogStream, StoredStream> = {
  [LogStream.LOG_STREAM_UNSPECIFIED]: 'system',
  [LogStream.LOG_STREAM_STDOUT]: 'stdout',
  [LogStream.LOG_STREAM_STDERR]: 'stderr',
  [LogStream.LOG_STREAM_SYSTEM]: 'system',
  [LogStream.UNRECOGNIZED]: 'system',
};

export class AgentSession {
  ref: AgentSessionRef | undefined;
  private credentials: AgentCredentials | undefined;
  /** The agent's slots, from its Welcome on. */
  slots: AgentSlots | undefined;
  /** JobFinished messages waiting for their last lines or patch bytes (job id → the report). */
  private readonly unfinished = new Map<string, FinishedInput>();
  /** Stop requests sent on this stream (`job:attempt:grace`): a heartbeat repeats only one the agent was not sent. */
  private readonly stopsSent = new Set<string>();
  private queue: Promise<void> = Promise.resolve();
  /** The LogBatch at the end of the queue, not yet being stored: later lines of its run join it. */
  private waitingBatch: { batch: LogBatch; text: number } | undefined;
  /** The PatchRun at the end of the queue, not yet being stored: the run's next chunks join it. */
  private waitingPatch: PatchRun | undefined;
  private closed = false;
  /** Log text read and not yet stored (see MAX_UNSTORED_LOG_BYTES); the stream is paused above it. */
  private unstoredBytes = 0;
  private paused = false;
  /** Lets grpc-js read the next message only once this one is taken in and the stream is not paused (see read-gate.ts). */
  private readonly gate: ReadGate | undefined;
  private readonly whenClosed: (() => void)[] = [];
  private silence: NodeJS.Timeout | undefined;

  constructor(
    private readonly call: AgentStream,
    private readonly service: AgentGatewayService,
    private readonly dispatcher: Dispatcher,
    private readonly settings: SessionSettings,
    private readonly hooks: SessionHooks,
    private readonly log: Logger,
  ) {
    this.gate = readGateOf(call.metadata);
  }

  get agentId(): string | undefined {
    return this.ref?.agentId;
  }

  async start(): Promise<void> {
    this.armSilence(this.settings.helloTimeoutMs, 'no Hello within the allowed time');
    // Authenticate before anything else is read: a bad token learns nothing about the protocol.
    this.enqueue(async () => {
      this.credentials = await this.service.authenticate(bearer(this.call.metadata));
    });
    this.call.on('data', (message: AgentMessage) => {
      this.receive(message);
      // The next message is read once this one is taken in, unless it made the stream pause.
      if (!this.paused) this.gate?.grant();
    });
    // The agent closed its side: handle what it sent before (a last JobRejected, say), then end ours.
    this.call.on('end', () =>
      this.enqueue(async () => {
        this.close();
        this.call.end();
      }),
    );
    this.call.on('error', () => this.close());
    this.call.on('cancelled', () => this.close());
  }

  sendCancel(jobId: string, attempt: number, reason: string, graceMs: number): void {
    this.stopsSent.add(`${jobId}:${attempt}:${graceMs}`);
    this.send({ $case: 'cancel', value: { jobId, attempt, reason, grace: durationOf(graceMs) } });
  }

  /** The run is no longer the agent's: it drops it, and its slot is free now. */
  sendDrop(jobId: string, attempt: number, reason: string): void {
    if (!this.slots?.holds({ jobId, attempt })) return;
    this.send({ $case: 'drop', value: { jobId, attempt, reason } });
    this.slots.released({ jobId, attempt });
  }

  /**
   * Server going away: tells the agent to open a new stream (elsewhere), assigns nothing more here,
   * and keeps this stream working (logs, reports, acks) until the agent closes it, so the agent moves
   * without a gap; the gateway ends it if its drain budget runs out first. Resolves once it has ended.
   */
  goAway(reason: string, reconnectAfterMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.slots?.drain();
    this.send({ $case: 'goAway', value: { reason, reconnectAfter: durationOf(reconnectAfterMs) } });
    const ended = new Promise<void>((resolve) => this.whenClosed.push(resolve));
    // Not yet welcomed: nothing to move, so no reason to wait.
    if (!this.ref) this.end(status.UNAVAILABLE, `server going away: ${reason}`);
    return ended;
  }

  end(code: status, message: string): void {
    if (this.closed) return;
    this.log.info({ agentId: this.agentId, code: status[code], message }, 'ending agent stream');
    this.call.emit('error', { code, details: message, metadata: new Metadata() });
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.hooks.inbound.forget(this.resumeIfRoom);
    for (const resolve of this.whenClosed.splice(0)) resolve();
    clearTimeout(this.silence);
    if (this.slots) this.dispatcher.close(this.slots);
    this.hooks.closed(this);
    const ref = this.ref;
    if (ref) this.service.disconnect(ref).catch((err: unknown) => this.log.warn({ err }, 'could not mark agent disconnected'));
  }

  /**
   * Queues a message for handling in arrival order. A LogBatch that carries on where a batch of the
   * same run still waiting at the end of the queue stops is added to that one: when storing falls
   * behind an agent (a slow or busy database), the next insert takes everything that arrived
   * meanwhile, in one statement and one ack, instead of paying a statement and a round trip per
   * batch, so a run's log keeps up rather than queueing. PatchChunks that carry on one another are
   * gathered the same way, and stored in one statement as the rows they are. Nothing is reordered:
   * only the last queued message is ever extended.
   */
  private receive(message: AgentMessage): void {
    // Heard, whatever the message and however long it waits behind others: the stream is alive.
    if (this.ref) this.armSilence(this.settings.leaseMs, `no message for ${this.settings.leaseMs} ms`);
    const payload = message.payload;
    if (payload?.$case === 'patchChunk') {
      this.waitingBatch = undefined;
      return this.receivePatch(payload.value);
    }
    this.waitingPatch = undefined;
    if (payload?.$case !== 'logBatch') {
      this.waitingBatch = undefined;
      this.enqueue(() => this.handle(payload));
      return;
    }
    const batch = payload.value;
    this.holdBack(textLength(batch));
    const waiting = this.waitingBatch;
    if (
      waiting &&
      waiting.batch.jobId === batch.jobId &&
      waiting.batch.attempt === batch.attempt &&
      batch.firstSeq === waiting.batch.firstSeq + waiting.batch.lines.length &&
      waiting.batch.lines.length + batch.lines.length <= this.settings.maxLogBatchLines * MERGED_BATCHES &&
      waiting.text + textLength(batch) <= MERGED_TEXT
    ) {
      waiting.batch.lines.push(...batch.lines);
      waiting.text += textLength(batch);
      return;
    }
    const entry = { batch: { ...batch, lines: [...batch.lines] }, text: textLength(batch) };
    this.waitingBatch = entry;
    this.enqueue(async () => {
      if (this.waitingBatch === entry) this.waitingBatch = undefined;
      try {
        await this.handle({ $case: 'logBatch', value: entry.batch });
      } finally {
        this.release(entry.text);
      }
    });
  }

  /**
   * Queues a PatchChunk, or adds it to the run's chunks still waiting at the end of the queue when
   * it starts where they end. Patch bytes wait in memory like log text, and count against the same
   * bound. A chunk the server will refuse (empty, or past the patch limit) is queued on its own, so
   * its refusal is its own and the chunks before it are stored.
   */
  private receivePatch(chunk: PatchChunk): void {
    const bytes = chunk.data.byteLength;
    this.holdBack(bytes);
    const waiting = this.waitingPatch;
    const joinable = bytes > 0 && chunk.offset + bytes <= this.service.maxPatchBytes;
    if (
      joinable &&
      waiting &&
      waiting.jobId === chunk.jobId &&
      waiting.attempt === chunk.attempt &&
      chunk.offset === waiting.offset + waiting.bytes &&
      waiting.bytes + bytes <= MERGED_PATCH_BYTES
    ) {
      waiting.pieces.push(chunk.data);
      waiting.bytes += bytes;
      return;
    }
    const entry: PatchRun = { jobId: chunk.jobId, attempt: chunk.attempt, offset: chunk.offset, pieces: [chunk.data], bytes };
    this.waitingPatch = joinable ? entry : undefined;
    this.enqueue(async () => {
      if (this.waitingPatch === entry) this.waitingPatch = undefined;
      try {
        await this.handle({ $case: 'patchRun', value: entry });
      } finally {
        this.release(entry.bytes);
      }
    });
  }

  /**
   * Counts bytes (log text, patch bytes) read and not stored, and stops reading the stream when it
   * has too many, or the process as a whole has (see InboundBudget).
   */
  private holdBack(bytes: number): void {
    this.unstoredBytes += bytes;
    this.hooks.inbound.take(bytes);
    if (!this.paused && (this.unstoredBytes > MAX_UNSTORED_LOG_BYTES || this.hooks.inbound.exhausted)) {
      this.paused = true;
      this.call.pause();
    }
  }

  private release(bytes: number): void {
    this.unstoredBytes -= bytes;
    this.hooks.inbound.give(bytes);
    this.resumeIfRoom();
  }

  /** Reads the stream again once both its own bytes and the process's are down to half their bound. */
  private readonly resumeIfRoom = (): void => {
    if (!this.paused || this.closed || this.unstoredBytes > MAX_UNSTORED_LOG_BYTES / 2) return;
    if (this.hooks.inbound.exhausted) {
      this.hooks.inbound.whenRoom(this.resumeIfRoom);
      return;
    }
    this.paused = false;
    this.call.resume();
    this.gate?.grant();
  };

  private enqueue(work: () => Promise<void>): void {
    this.queue = this.queue.then(work).catch((err: unknown) => {
      if (err instanceof StreamEnded) return this.end(err.code, err.message);
      if (err instanceof AppError && err.statusCode < 500) return this.end(err.grpcStatus, err.message);
      this.log.error({ err, agentId: this.agentId }, 'agent message failed');
      // The agent resends what was not acknowledged, so a fresh stream is the safe way on.
      this.end(status.UNAVAILABLE, 'the server could not process a message; reconnect and resend');
    });
  }

  private send(payload: ServerMessage['payload']): void {
    if (this.closed) return;
    this.call.write({ payload });
  }

  private notice(code: NoticeCode, jobId: string, attempt: number, detail: string): void {
    this.send({ $case: 'notice', value: { code, jobId, attempt, detail } });
  }

  private armSilence(ms: number, reason: string): void {
    clearTimeout(this.silence);
    this.silence = setTimeout(() => this.end(status.DEADLINE_EXCEEDED, reason), ms);
    this.silence.unref();
  }

  private async handle(payload: Inbound): Promise<void> {
    if (this.closed) return;
    if (!this.ref) {
      if (payload?.$case !== 'hello') throw new StreamEnded(status.INVALID_ARGUMENT, 'the first message must be Hello');
      return this.hello(payload.value);
    }
    if (!payload) return this.notice(NoticeCode.NOTICE_CODE_INVALID_MESSAGE, '', 0, 'a message with no payload');
    const ref = this.ref;
    try {
      switch (payload.$case) {
        case 'hello':
          throw new StreamEnded(status.INVALID_ARGUMENT, 'Hello may only be the first message');
        case 'accepted':
          this.slots?.accepted({ jobId: payload.value.jobId, attempt: payload.value.attempt });
          return;
        case 'rejected': {
          const run = { jobId: payload.value.jobId, attempt: payload.value.attempt };
          try {
            await this.service.rejected(ref, run.jobId, run.attempt, payload.value.reason);
          } finally {
            this.slots?.declinedRun(run);
          }
          return;
        }
        case 'started':
          if (this.slots?.awaitsAnswer({ jobId: payload.value.jobId, attempt: payload.value.attempt })) {
            return this.notice(NoticeCode.NOTICE_CODE_OUT_OF_ORDER, payload.value.jobId, payload.value.attempt, 'JobStarted before JobAccepted: accept the assignment first');
          }
          return await this.service.started(ref, payload.value.jobId, payload.value.attempt, payload.value.startedAt ?? new Date());
        case 'heartbeat':
          return await this.heartbeat(ref, payload.value.seq, payload.value.runningJobs);
        case 'logBatch': {
          const batch = payload.value;
          const waiting = this.unfinished.get(batch.jobId);
          if (waiting?.attempt === batch.attempt && batch.firstSeq + batch.lines.length - 1 > waiting.lastSeq) {
            throw new ConflictError(`Job ${batch.jobId} attempt ${batch.attempt} has finished: no log lines after its last_seq (${waiting.lastSeq})`);
          }
          const ackedSeq = await this.service.storeLogs(ref, {
            jobId: batch.jobId,
            attempt: batch.attempt,
            firstSeq: batch.firstSeq,
            lines: batch.lines.map((line) => ({ at: line.at ?? new Date(), stream: streams[line.stream], text: line.text })),
          });
          this.send({ $case: 'logAck', value: { jobId: batch.jobId, attempt: batch.attempt, ackedSeq } });
          // The lines a JobFinished was waiting for are in: its outcome can be recorded now.
          if (waiting?.attempt === batch.attempt && ackedSeq >= waiting.lastSeq) await this.finish(ref, waiting);
          return;
        }
        case 'patchRun': {
          const chunk = payload.value;
          const storedBytes = await this.service.storePatch(ref, chunk);
          // Each chunk is answered (agent.proto, PatchChunk), those stored together alike.
          for (let i = 0; i < chunk.pieces.length; i++) this.send({ $case: 'patchAck', value: { jobId: chunk.jobId, attempt: chunk.attempt, storedBytes } });
          // The bytes a JobFinished was waiting for are in: its outcome can be recorded now.
          const waiting = this.unfinished.get(chunk.jobId);
          if (waiting?.attempt === chunk.attempt && waiting.change && storedBytes >= waiting.change.patchSize) await this.finish(ref, waiting);
          return;
        }
        case 'finished':
          return await this.finish(ref, {
            jobId: payload.value.jobId,
            attempt: payload.value.attempt,
            outcome: toOutcome(payload.value),
            lastSeq: payload.value.lastSeq,
            change: payload.value.change ? toChange(payload.value.change) : undefined,
          });
      }
    } catch (err) {
      // Chunks stored together are refused together, and each gets the answer it would have alone.
      for (let i = payload.$case === 'patchRun' ? payload.value.pieces.length : 1; i > 0; i--) this.answerRefusal(payload, err);
    }
  }

  /** Answers a message the server did not take with what agent.proto says of it; throws what ends the stream. */
  private answerRefusal(payload: NonNullable<Inbound>, err: unknown): void {
    if (err instanceof LogSequenceGapError) {
      this.send({ $case: 'logAck', value: { jobId: err.jobId, attempt: 'attempt' in payload.value ? payload.value.attempt : 0, ackedSeq: err.ackedSeq } });
      return this.notice(NoticeCode.NOTICE_CODE_LOG_SEQ_GAP, err.jobId, 'attempt' in payload.value ? payload.value.attempt : 0, err.message);
    }
    if (err instanceof PatchGapError) {
      this.send({ $case: 'patchAck', value: { jobId: err.jobId, attempt: err.attempt, storedBytes: err.storedBytes } });
      return this.notice(NoticeCode.NOTICE_CODE_PATCH_GAP, err.jobId, err.attempt, err.message);
    }
    if (err instanceof AppError && err.statusCode < 500) {
      const jobId = 'jobId' in payload.value ? payload.value.jobId : '';
      const attempt = 'attempt' in payload.value ? payload.value.attempt : 0;
      const code = err.code === 'not_found' ? NoticeCode.NOTICE_CODE_UNKNOWN_JOB : err.code === 'conflict' ? NoticeCode.NOTICE_CODE_OUT_OF_ORDER : NoticeCode.NOTICE_CODE_INVALID_MESSAGE;
      return this.notice(code, jobId, attempt, err.message);
    }
    throw err;
  }

  /**
   * The agent no longer runs this attempt: its slot is free, whether or not the server still gave it
   * the job (a job requeued past its start deadline is reported cancelled after it moved on).
   */
  private released(jobId: string, attempt: number): void {
    this.slots?.released({ jobId, attempt });
  }

  /**
   * Records a run's end once every line up to its last_seq is stored, then acknowledges it. Until
   * then the JobFinished waits here (the agent resends it on a new stream anyway, having no ack).
   */
  private async finish(ref: AgentSessionRef, finished: FinishedInput): Promise<void> {
    const { jobId, attempt } = finished;
    try {
      await this.service.finished(ref, finished);
    } catch (err) {
      if (err instanceof LogIncompleteError) {
        this.unfinished.set(jobId, finished);
        this.send({ $case: 'logAck', value: { jobId, attempt, ackedSeq: err.ackedSeq } });
        return this.notice(NoticeCode.NOTICE_CODE_LOG_SEQ_GAP, jobId, attempt, err.message);
      }
      if (err instanceof PatchGapError) {
        this.unfinished.set(jobId, finished);
        this.send({ $case: 'patchAck', value: { jobId, attempt, storedBytes: err.storedBytes } });
        return this.notice(NoticeCode.NOTICE_CODE_PATCH_GAP, jobId, attempt, err.message);
      }
      if (this.unfinished.get(jobId)?.attempt === attempt) this.unfinished.delete(jobId);
      this.released(jobId, attempt);
      throw err;
    }
    if (this.unfinished.get(jobId)?.attempt === attempt) this.unfinished.delete(jobId);
    this.released(jobId, attempt);
    this.send({ $case: 'finishedAck', value: { jobId, attempt } });
  }

  /**
   * Records the heartbeat, then acknowledges it (renewing the agent's lease only once the database
   * has it), settles what the agent's list says, and takes the list as the truth about its slots.
   */
  private async heartbeat(ref: AgentSessionRef, seq: number, listed: readonly RunRef[]): Promise<void> {
    const runs = listed.map(({ jobId, attempt }) => ({ jobId, attempt }));
    const verdict = await this.service.heartbeat(ref, { runs, owed: this.slots?.owedRuns ?? [] });
    if (!verdict.current) throw new StreamEnded(status.ABORTED, 'superseded by a newer stream of the same agent');
    this.send({ $case: 'heartbeatAck', value: { seq } });
    this.service.pulse(verdict.executeTokens);
    for (const run of verdict.lost) this.released(run.jobId, run.attempt);
    const dropped = new Set<string>();
    for (const run of verdict.drop) {
      dropped.add(run.jobId);
      this.send({ $case: 'drop', value: { jobId: run.jobId, attempt: run.attempt, reason: run.reason } });
    }
    // A stop the workflow recorded whose notification this stream never carried (it was lost, or sent while the agent was away).
    for (const stop of verdict.stop) if (!this.stopsSent.has(`${stop.jobId}:${stop.attempt}:${stop.graceMs}`)) this.sendCancel(stop.jobId, stop.attempt, stop.reason, stop.graceMs);
    this.slots?.reconcile(runs.filter((run) => !dropped.has(run.jobId)));
  }

  private async hello(hello: Extract<AgentMessage['payload'], { $case: 'hello' }>['value']): Promise<void> {
    if (!this.credentials) throw new StreamEnded(status.UNAUTHENTICATED, 'not authenticated');
    const { session, reconciliation } = await this.service.connect(
      this.credentials,
      {
        agentId: hello.agentId,
        name: hello.name,
        version: hello.version,
        labels: hello.labels,
        capacity: hello.capacity,
        runningJobs: hello.runningJobs.map((j) => ({ jobId: j.jobId, attempt: j.attempt })),
      },
      { replica: this.settings.replica, leaseMs: this.settings.leaseMs, leaseMarginMs: this.settings.leaseMarginMs },
    );
    this.ref = session;
    this.hooks.opened(this);
    const slots = this.dispatcher.open(session, { deliver: (assignment) => this.send({ $case: 'assignment', value: toAssignmentMessage(assignment) }) });
    slots.kept(reconciliation.keep);
    this.slots = slots;
    this.armSilence(this.settings.leaseMs, `no message for ${this.settings.leaseMs} ms`);
    this.send({
      $case: 'welcome',
      value: {
        sessionId: session.sessionId,
        replica: this.settings.replica,
        heartbeatInterval: durationOf(this.settings.heartbeatIntervalMs),
        maxLogBatchLines: this.settings.maxLogBatchLines,
        cancelJobIds: reconciliation.cancel,
        leaseDuration: durationOf(this.settings.leaseMs),
        leaseMargin: durationOf(this.settings.leaseMarginMs),
        maxPatchBytes: this.service.maxPatchBytes,
      },
    });
    for (const kept of reconciliation.keep) this.send({ $case: 'logAck', value: { jobId: kept.jobId, attempt: kept.attempt, ackedSeq: kept.ackedSeq } });
    // A stop asked for while the agent was away (its gateway was down, say) is told now.
    for (const kept of reconciliation.keep) if (kept.stop) this.sendCancel(kept.jobId, kept.attempt, kept.stop.reason, kept.stop.graceMs);
    this.log.info({ agentId: session.agentId, orgId: session.orgId, capacity: session.capacity, kept: reconciliation.keep.length }, 'agent connected');
    void slots.pump();
  }
}

function textLength(batch: LogBatch): number {
  let length = 0;
  for (const line of batch.lines) length += line.text.length;
  return length;
}

function bearer(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(value.trim());
  return match?.[1];
}

function toOutcome(finished: Extract<AgentMessage['payload'], { $case: 'finished' }>['value']): ReportedEnd {
  switch (finished.outcome) {
    case JobOutcome.JOB_OUTCOME_SUCCEEDED:
      return { kind: 'succeeded', exitCode: finished.exitCode ?? 0 };
    case JobOutcome.JOB_OUTCOME_CANCELLED:
      return { kind: 'cancelled', reason: finished.failureReason || 'cancelled on the agent' };
    default:
      return { kind: 'failed', exitCode: finished.exitCode ?? null, reason: finished.failureReason || (finished.exitCode !== undefined ? `exited with code ${finished.exitCode}` : 'failed') };
  }
}

function toChange(change: RunChange): ReportedChange {
  return {
    branch: change.branch,
    pushed: change.pushed,
    baseCommit: change.baseCommit,
    headCommit: change.headCommit,
    commits: change.commits.map((commit) => ({ sha: commit.sha, subject: commit.subject })),
    commitCount: change.commitCount,
    diffStat: { filesChanged: change.diffStat?.filesChanged ?? 0, insertions: change.diffStat?.insertions ?? 0, deletions: change.diffStat?.deletions ?? 0 },
    summary: change.summary,
    pullRequestUrl: change.pullRequestUrl,
    patchSize: change.patchSize,
  };
}

function toAssignmentMessage(assignment: Assignment): Extract<ServerMessage['payload'], { $case: 'assignment' }>['value'] {
  return {
    jobId: assignment.jobId,
    attempt: assignment.attempt,
    prompt: assignment.prompt,
    repository: assignment.repository,
    labels: assignment.labels,
    queue: assignment.queueType === 'rework' ? JobQueue.JOB_QUEUE_REWORK : JobQueue.JOB_QUEUE_BACKLOG,
    revisesJobId: assignment.revisesJobId ?? '',
    startTimeout: durationOf(assignment.timeouts.startMs),
    runTimeout: durationOf(assignment.timeouts.runMs),
    cancelGrace: durationOf(assignment.timeouts.cancelGraceMs),
    revises: assignment.revises ?? undefined,
    traceparent: assignment.trace?.traceparent ?? '',
    tracestate: assignment.trace?.tracestate ?? '',
  };
}
