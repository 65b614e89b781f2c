// A lean agent.v1 agent that only prints: a real gRPC client over loopback (a connection of its own,
// as an agent on another machine has) that takes one job, says accepted and started, and sends the
// job's log the way the reference agent does: lines go into the reference agent's own LogOutbox
// (the one export of its package, `@agent-jobs/agent/log-sending`, so the same bound on
// unacknowledged lines) and leave as batches of the reference agent's limits for Welcome's
// max_log_batch_lines (its batchLimits: a few batches in flight, not waiting for each ack), pausing
// while the stream's buffer is full.
// No child process, no pipe, no clone: what it measures is the gateway and the database.
import { JobOutcome, LogStream, type JobAssignment, type RunningJob, type Welcome } from '../../generated/proto/agent/v1/agent.js';
import { batchLimits, DEFAULT_OUTBOX_LIMITS, LogOutbox, type BatchLimits, type OutboxLimits } from '@agent-jobs/agent/log-sending';
import { BenchStreamAgent, type ServerPayload } from './bench-stream-agent.js';

export interface PrintResult {
  lines: number;
  /** First line appended → last line acknowledged. */
  seconds: number;
  /** Each batch's write → the ack that covered its last line, in ms. */
  ackMs: number[];
}

export class LogAgent extends BenchStreamAgent {
  private batchLimits: BatchLimits = batchLimits(500);
  private assignment: JobAssignment | undefined;
  private assignmentWaiter: ((a: JobAssignment) => void) | undefined;
  private outbox: LogOutbox | undefined;
  private onAck: (() => void) | undefined;
  private finishedWaiter: (() => void) | undefined;

  /** Connects with capacity 1 and resolves once the server's Welcome arrived. */
  static async connect(address: string, token: string, welcomeTimeoutMs = 30_000): Promise<LogAgent> {
    const agent = new LogAgent(address, token);
    await agent.open({ name: `bench-log-${agent.agentId.slice(0, 8)}`, labels: [], capacity: 1 }, welcomeTimeoutMs);
    return agent;
  }

  get maxBatchLines(): number {
    return this.batchLimits.maxLines;
  }

  /** The job the server assigned (accepted and started at once), waiting for it if need be. */
  job(timeoutMs: number): Promise<JobAssignment> {
    if (this.assignment) return Promise.resolve(this.assignment);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${this.agentId} got no assignment within ${timeoutMs} ms`)), timeoutMs);
      this.assignmentWaiter = (a) => {
        clearTimeout(timer);
        resolve(a);
      };
    });
  }

  /**
   * Prints `count` lines of the held job, numbered from 1, each `text(seq)`, as fast as the server
   * acknowledges them (bounded by the outbox), and resolves when the last one is acknowledged.
   */
  print(count: number, text: (seq: number) => string, timeoutMs: number, limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS): Promise<PrintResult> {
    const job = this.assignment;
    if (!job) return Promise.reject(new Error('no job to print for'));
    const outbox = new LogOutbox(job.jobId, job.attempt, limits);
    this.outbox = outbox;
    const ackMs: number[] = [];
    // Batches written and not yet acknowledged: [last seq, when written].
    const inFlight: [number, number][] = [];
    const started = performance.now();
    let produced = 0;
    let awaitingDrain = false;
    return new Promise<PrintResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${this.agentId}: ${outbox.ackedSeq} of ${count} lines acknowledged after ${timeoutMs} ms`)), timeoutMs);
      const pump = () => {
        // Produce while the outbox has room, as the reference agent's pipe reader does.
        while (produced < count && !outbox.isFull) {
          produced += 1;
          outbox.append(LogStream.LOG_STREAM_STDOUT, text(produced));
        }
        if (awaitingDrain) return;
        for (let batch = outbox.nextBatch(this.batchLimits); batch; batch = outbox.nextBatch(this.batchLimits)) {
          inFlight.push([batch.firstSeq + batch.lines.length - 1, performance.now()]);
          if (!this.write({ $case: 'logBatch', value: batch })) {
            awaitingDrain = true;
            this.stream.once('drain', () => {
              awaitingDrain = false;
              pump();
            });
            return;
          }
        }
      };
      this.onAck = () => {
        const now = performance.now();
        while (inFlight.length > 0 && inFlight[0]![0] <= outbox.ackedSeq) ackMs.push(now - inFlight.shift()![1]);
        if (outbox.ackedSeq >= count) {
          clearTimeout(timer);
          this.onAck = undefined;
          resolve({ lines: count, seconds: (performance.now() - started) / 1000, ackMs });
          return;
        }
        pump();
      };
      pump();
    });
  }

  /** Reports the job succeeded with its last line, and resolves on the server's JobFinishedAck. */
  finish(lastSeq: number, timeoutMs: number): Promise<void> {
    const job = this.assignment;
    if (!job) return Promise.reject(new Error('no job to finish'));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${this.agentId}: no JobFinishedAck within ${timeoutMs} ms`)), timeoutMs);
      this.finishedWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
      this.write({ $case: 'finished', value: { jobId: job.jobId, attempt: job.attempt, outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED, exitCode: 0, failureReason: '', finishedAt: new Date(), lastSeq, change: undefined } });
    });
  }

  protected override welcomed(welcome: Welcome): void {
    if (welcome.maxLogBatchLines > 0) this.batchLimits = batchLimits(welcome.maxLogBatchLines);
  }

  protected handle(payload: ServerPayload): void {
    switch (payload.$case) {
      case 'assignment': {
        const { jobId, attempt } = payload.value;
        if (this.assignment) {
          this.problems.push(`a second assignment (job ${jobId}) to an agent of capacity 1`);
          return;
        }
        this.assignment = payload.value;
        this.write({ $case: 'accepted', value: { jobId, attempt } });
        this.write({ $case: 'started', value: { jobId, attempt, startedAt: new Date() } });
        this.assignmentWaiter?.(payload.value);
        return;
      }
      case 'logAck':
        this.outbox?.ack(payload.value.ackedSeq);
        this.onAck?.();
        return;
      case 'finishedAck':
        this.finishedWaiter?.();
        return;
      default:
        return;
    }
  }

  protected override runningJobs(): RunningJob[] {
    const job = this.assignment;
    return job ? [{ jobId: job.jobId, attempt: job.attempt, lastSeq: this.outbox?.lastSeq ?? 0 }] : [];
  }
}
