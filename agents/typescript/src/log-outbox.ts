// One job run's log lines between the child process and the server's acknowledgement.
//
// Lines are numbered from 1 with no gaps and kept until a LogAck covers them, because the server
// only acknowledges what it has stored durably and a stream may die with lines in flight. A send
// cursor (sentSeq) says what has been written to the current stream; a reconnect or a gap notice
// rewinds it to the last ack so everything unacknowledged goes out again, in order.
//
// The outbox is bounded: once the unacknowledged lines reach the line or byte cap it reports
// itself full, and the reader of the child's output pauses until an ack makes room. Lines are
// never dropped; the cap may be overshot by what one read of the pipes holds, and by the agent's
// own few system lines, which are not held back.
import type { LogBatch, LogLine, LogStream } from '../generated/agent/v1/agent.js';

export interface OutboxLimits {
  maxUnackedLines: number;
  maxUnackedBytes: number;
}

/** Per-job bound: about 100k lines or 64 MiB of text, whichever comes first. */
export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = { maxUnackedLines: 100_000, maxUnackedBytes: 64 * 1024 * 1024 };

export interface BatchLimits {
  maxLines: number;
  /** Keeps one LogBatch well under gRPC's 4 MiB message limit, however long the lines are. */
  maxBytes: number;
  /**
   * Lines sent and not yet acknowledged, at most (unbounded when absent). The server reads a stream
   * as fast as it arrives and stores batches one at a time, so whatever is in flight waits in its
   * memory: a few batches keep it busy, the whole outbox (100k lines) would only queue there.
   */
  maxInFlightLines?: number;
}

/** Rough wire cost of a line beyond its text: timestamp, stream and framing. */
const LINE_OVERHEAD_BYTES = 24;

interface HeldLine {
  line: LogLine;
  bytes: number;
}

export class LogOutbox {
  /** Lines ackedSeq+1 .. lastSeq, in order. */
  private readonly held: HeldLine[] = [];
  private heldBytes = 0;
  private acked = 0;
  private sent = 0;
  private last = 0;
  private roomWaiters: (() => void)[] = [];

  constructor(
    readonly jobId: string,
    readonly attempt: number,
    private readonly limits: OutboxLimits = DEFAULT_OUTBOX_LIMITS,
  ) {}

  /** Sequence number of the newest line (0 when none): JobFinished.last_seq and RunningJob.last_seq. */
  get lastSeq(): number {
    return this.last;
  }

  get ackedSeq(): number {
    return this.acked;
  }

  /** Newest line written to the current stream. */
  get sentSeq(): number {
    return this.sent;
  }

  get unackedLines(): number {
    return this.held.length;
  }

  get unackedBytes(): number {
    return this.heldBytes;
  }

  get unsentLines(): number {
    return this.last - this.sent;
  }

  /** Every line produced so far has been written to the current stream. */
  get allSent(): boolean {
    return this.sent === this.last;
  }

  get isFull(): boolean {
    return this.held.length >= this.limits.maxUnackedLines || this.heldBytes >= this.limits.maxUnackedBytes;
  }

  /** Adds a line and returns its sequence number. */
  append(stream: LogStream, text: string, at: Date = new Date()): number {
    const bytes = Buffer.byteLength(text, 'utf8') + LINE_OVERHEAD_BYTES;
    this.held.push({ line: { at, stream, text }, bytes });
    this.heldBytes += bytes;
    this.last += 1;
    return this.last;
  }

  /**
   * The next unsent lines as one batch, and moves the send cursor past them; undefined when all
   * is sent, or when maxInFlightLines are already awaiting their ack. A single line larger than
   * maxBytes still goes out alone rather than never.
   */
  nextBatch(limits: BatchLimits): LogBatch | undefined {
    if (this.sent >= this.last) return undefined;
    const room = (limits.maxInFlightLines ?? Infinity) - (this.sent - this.acked);
    if (room <= 0) return undefined;
    const firstSeq = this.sent + 1;
    const start = firstSeq - this.acked - 1;
    const lines: LogLine[] = [];
    let bytes = 0;
    for (let index = start; index < this.held.length && lines.length < Math.max(1, Math.min(limits.maxLines, room)); index++) {
      const held = this.held[index]!;
      if (lines.length > 0 && bytes + held.bytes > limits.maxBytes) break;
      lines.push(held.line);
      bytes += held.bytes;
    }
    this.sent += lines.length;
    return { jobId: this.jobId, attempt: this.attempt, firstSeq, lines };
  }

  /** The server has stored every line up to ackedSeq: forget them. Acks only move forward. */
  ack(ackedSeq: number): void {
    const upTo = Math.min(ackedSeq, this.last);
    if (upTo <= this.acked) return;
    const dropped = this.held.splice(0, upTo - this.acked);
    for (const held of dropped) this.heldBytes -= held.bytes;
    this.acked = upTo;
    // The server may have stored more than this stream sent (lines from a previous stream).
    if (this.sent < upTo) this.sent = upTo;
    if (!this.isFull) this.wakeRoomWaiters();
  }

  /** Sends everything unacknowledged again: after a reconnect, or when the server saw a gap. */
  rewind(): void {
    this.sent = this.acked;
  }

  /** Resolves once there is room for more lines (at once if there is). */
  whenRoom(): Promise<void> {
    if (!this.isFull) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** The run is dropped: release anyone waiting for room so they can notice and stop. */
  close(): void {
    this.wakeRoomWaiters();
  }

  private wakeRoomWaiters(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }
}
