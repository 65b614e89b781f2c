// A lean agent.v1 agent that delivers changes: a real gRPC client over loopback (a connection of its
// own) that holds one job at a time (accepted and started at once; a run the server drops is
// forgotten), then sends the job's patch the way agent.proto asks and the reference agent does:
// PatchChunks in offset order, at most `chunkBytes` each, no more than `windowBytes` sent and not
// acknowledged (PatchAck), pausing while the stream's buffer is full; then JobFinished (succeeded)
// with the change, and waits for its JobFinishedAck.
// No git and no child process: what it measures is the gateway and the database.
import { JobOutcome, type JobAssignment, type RunChange, type RunningJob, type Welcome } from '../../generated/proto/agent/v1/agent.js';
import { BenchStreamAgent, type ServerPayload } from './bench-stream-agent.js';

export interface DeliverOptions {
  /** Bytes per PatchChunk (agent.proto: at most 1 MiB). */
  chunkBytes: number;
  /** Patch bytes sent ahead of the server's PatchAck (the reference agent: 2 MiB). */
  windowBytes: number;
  timeoutMs: number;
}

export interface Delivery {
  jobId: string;
  /** First chunk written → JobFinishedAck, ms. */
  ms: number;
  /** Each chunk: written → the PatchAck that covered its end, ms. */
  ackMs: number[];
  /** The most bytes that were sent and not yet acknowledged at once. */
  maxUnacked: number;
}

export class PatchAgent extends BenchStreamAgent {
  /** Welcome.max_patch_bytes. */
  maxPatchBytes = 0;
  /** Runs the server dropped (DropJob: the job went back to the queue), with the reason. */
  readonly drops: string[] = [];
  private readonly assignments: JobAssignment[] = [];
  /** Every run assigned so far (`job:attempt`). */
  private readonly assigned = new Set<string>();
  private current: JobAssignment | undefined;
  private acked = 0;
  private onPatchAck: (() => void) | undefined;
  private onFinishedAck: (() => void) | undefined;
  private onDropped: (() => void) | undefined;

  /** Connects with capacity 1 and resolves once the server's Welcome arrived. */
  static async connect(address: string, token: string, welcomeTimeoutMs = 30_000): Promise<PatchAgent> {
    const agent = new PatchAgent(address, token);
    await agent.open({ name: `bench-patch-${agent.agentId.slice(0, 8)}`, labels: [], capacity: 1 }, welcomeTimeoutMs);
    return agent;
  }

  /** The job this agent delivers for next (see hold()). */
  get heldJobId(): string | undefined {
    return this.current?.jobId;
  }

  /** The runs assigned to it and not dropped: one, when the server keeps to its capacity. */
  get holding(): readonly JobAssignment[] {
    return this.assignments;
  }

  /** Takes the one run it holds as the one to deliver for. */
  hold(): JobAssignment {
    if (this.assignments.length !== 1) throw new Error(`agent ${this.agentId} holds ${this.assignments.length} runs`);
    this.current = this.assignments[0]!;
    this.acked = 0;
    return this.current;
  }

  /** Sends the held job's patch, then its JobFinished with `change`; resolves on the JobFinishedAck. */
  deliver(patch: Buffer, change: RunChange, options: DeliverOptions): Promise<Delivery> {
    const job = this.current;
    if (!job) return Promise.reject(new Error('no job to deliver a change for'));
    const { jobId, attempt } = job;
    const started = performance.now();
    const ackMs: number[] = [];
    // Chunks written and not yet acknowledged: [end offset, when written].
    const inFlight: [number, number][] = [];
    let sent = 0;
    let maxUnacked = 0;
    let awaitingDrain = false;
    let finishedSent = false;
    return new Promise<Delivery>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onPatchAck = this.onFinishedAck = this.onDropped = undefined;
        reject(new Error(`agent ${this.agentId}, job ${jobId}: ${this.acked} of ${patch.byteLength} patch bytes acknowledged, finished ${finishedSent ? 'sent' : 'not sent'}, after ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      const pump = () => {
        if (awaitingDrain) return;
        while (sent < patch.byteLength && sent - this.acked < options.windowBytes) {
          const data = patch.subarray(sent, sent + options.chunkBytes);
          const offset = sent;
          sent += data.byteLength;
          inFlight.push([sent, performance.now()]);
          maxUnacked = Math.max(maxUnacked, sent - this.acked);
          if (!this.write({ $case: 'patchChunk', value: { jobId, attempt, offset, data } })) return waitForDrain();
        }
        // Like the reference agent: JobFinished follows the last chunk written, not its ack.
        if (sent >= patch.byteLength && !finishedSent) {
          finishedSent = true;
          const finished = { jobId, attempt, outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED, exitCode: 0, failureReason: '', finishedAt: new Date(), lastSeq: 0, change };
          if (!this.write({ $case: 'finished', value: finished })) return waitForDrain();
        }
      };
      const waitForDrain = () => {
        awaitingDrain = true;
        this.stream.once('drain', () => {
          awaitingDrain = false;
          pump();
        });
      };
      this.onPatchAck = () => {
        const now = performance.now();
        while (inFlight.length > 0 && inFlight[0]![0] <= this.acked) ackMs.push(now - inFlight.shift()![1]);
        pump();
      };
      this.onDropped = () => {
        clearTimeout(timer);
        this.onPatchAck = this.onFinishedAck = this.onDropped = undefined;
        resolve({ jobId, ms: NaN, ackMs, maxUnacked });
      };
      this.onFinishedAck = () => {
        clearTimeout(timer);
        this.onPatchAck = this.onFinishedAck = this.onDropped = undefined;
        this.current = undefined;
        resolve({ jobId, ms: performance.now() - started, ackMs, maxUnacked });
      };
      pump();
    });
  }

  protected override welcomed(welcome: Welcome): void {
    this.maxPatchBytes = welcome.maxPatchBytes;
  }

  protected handle(payload: ServerPayload): void {
    switch (payload.$case) {
      case 'assignment': {
        const { jobId, attempt } = payload.value;
        const run = `${jobId}:${attempt}`;
        if (this.assigned.has(run)) {
          // Already answered: a repeat would otherwise be taken for another job.
          this.problems.push(`job ${jobId} attempt ${attempt} assigned again`);
          return;
        }
        this.assigned.add(run);
        if (this.assignments.length > 0) this.problems.push(`a second assignment (job ${jobId}, holding ${this.assignments[0]!.jobId}) to an agent of capacity 1`);
        this.assignments.push(payload.value);
        this.write({ $case: 'accepted', value: { jobId, attempt } });
        this.write({ $case: 'started', value: { jobId, attempt, startedAt: new Date() } });
        return;
      }
      case 'drop': {
        const { jobId, attempt, reason } = payload.value;
        const at = this.assignments.findIndex((a) => a.jobId === jobId && a.attempt === attempt);
        if (at < 0) return;
        this.assignments.splice(at, 1);
        this.drops.push(`job ${jobId} attempt ${attempt}: ${reason}`);
        if (this.current?.jobId === jobId && this.current.attempt === attempt) {
          this.current = undefined;
          this.problems.push(`job ${jobId} attempt ${attempt} dropped while its change was being delivered: ${reason}`);
          this.onDropped?.();
        }
        return;
      }
      case 'patchAck': {
        const job = this.current;
        if (!job || payload.value.jobId !== job.jobId || payload.value.attempt !== job.attempt) return;
        this.acked = Math.max(this.acked, payload.value.storedBytes);
        this.onPatchAck?.();
        return;
      }
      case 'finishedAck':
        if (payload.value.jobId !== this.current?.jobId || payload.value.attempt !== this.current.attempt) return;
        this.assignments.splice(this.assignments.indexOf(this.current), 1);
        this.onFinishedAck?.();
        return;
      default:
        return;
    }
  }

  protected override runningJobs(): RunningJob[] {
    return this.assignments.map((a) => ({ jobId: a.jobId, attempt: a.attempt, lastSeq: 0 }));
  }
}
