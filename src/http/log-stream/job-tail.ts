// One job's live log on this replica. A new viewer first reads the backlog on its own (paced by its
// socket), then joins the live viewers; the tail reads each new page once, from the lowest cursor
// among them, and hands the same encoded frames to all. Reads are keyed by seq and lines commit in
// seq order, so "after my cursor" is always exactly what a viewer is missing: no gap, no duplicate.
import type { Logger } from 'pino';
import { isTerminalStatus } from '../../db/schema/index.js';
import type { JobLogState, LogLine } from '../../services/logs.service.js';
import { LogStreamCloseCode } from '../../../generated/openapi/frames.js';
import { encodeLines } from './frames.js';
import type { LogViewer } from './viewer.js';

export interface TailReads {
  linesAfter(jobId: string, after: number, limit: number): Promise<LogLine[]>;
  states(jobIds: readonly string[]): Promise<JobLogState[]>;
}

export class JobTail {
  private readonly viewers = new Set<LogViewer>();
  /** Viewers past the backlog, fed by the tail. */
  private readonly live = new Set<LogViewer>();
  /** The highest seq announced as stored. */
  private announced = 0;
  private lastStatus: string | undefined;
  /** Set once the job has ended: the tail sends what is left, then the end frame. */
  private ended: JobLogState | undefined;
  private statusChanged = false;
  private running: Promise<void> | undefined;
  private again = false;

  constructor(
    readonly jobId: string,
    private readonly reads: TailReads,
    private readonly pageLines: number,
    private readonly log: Logger,
    private readonly onEmpty: (tail: JobTail) => void,
  ) {}

  get viewerCount(): number {
    return this.viewers.size;
  }

  /** Takes a viewer from its `after` through the backlog to the live tail (or to the end frame). */
  async attach(viewer: LogViewer, state: JobLogState): Promise<void> {
    this.viewers.add(viewer);
    viewer.onClosed(() => {
      this.viewers.delete(viewer);
      this.live.delete(viewer);
      if (this.viewers.size === 0) this.onEmpty(this);
    });
    this.lastStatus ??= statusKey(state);
    viewer.sendStatus(state);
    await this.catchUp(viewer, isTerminalStatus(state.status) ? state : undefined);
  }

  /** Lines up to `lastSeq` are stored (a NOTIFY, or the sweep finding more than announced). */
  appended(lastSeq: number): void {
    if (lastSeq <= this.announced) return;
    this.announced = lastSeq;
    if (this.live.size > 0) this.schedule();
  }

  /** The job's status may have changed: re-read it. */
  changed(): void {
    this.statusChanged = true;
    this.schedule();
  }

  /** The safety net behind notifications: what the sweep read of the job. */
  reconcile(state: JobLogState): void {
    this.appended(state.lastSeq);
    if (statusKey(state) !== this.lastStatus) this.changed();
  }

  /** The job is gone (its organisation deleted it): every viewer is told so. */
  vanished(): void {
    for (const viewer of this.viewers) viewer.close(LogStreamCloseCode.NotFound, 'the job no longer exists');
  }

  private async catchUp(viewer: LogViewer, endedAtOpen: JobLogState | undefined): Promise<void> {
    for (;;) {
      // Whether the job had ended before this read: only then does the read hold its last line.
      const ended = endedAtOpen ?? this.ended;
      const lines = await this.reads.linesAfter(this.jobId, viewer.cursor, this.pageLines);
      if (viewer.closed) return;
      viewer.sendBacklog(lines);
      if (!(await viewer.waitForRoom())) return;
      if (lines.length === this.pageLines) continue;
      if (ended) return viewer.end(ended);
      // It ended during this read: read once more, now that its last line is stored.
      if (this.ended) continue;
      this.live.add(viewer);
      if (this.announced > viewer.cursor) this.schedule();
      return;
    }
  }

  /** One pass at a time: status first, then new lines, then (once ended) the end frames. */
  private schedule(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.work()
      .catch((err: unknown) => {
        this.log.error({ err, jobId: this.jobId }, 'log tail failed');
        for (const viewer of this.viewers) viewer.close(LogStreamCloseCode.InternalError, 'the server could not read the log; reconnect with after');
      })
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.schedule();
        }
      });
  }

  private async work(): Promise<void> {
    do {
      this.again = false;
      if (this.statusChanged && !this.ended) {
        this.statusChanged = false;
        const [state] = await this.reads.states([this.jobId]);
        if (!state) return this.vanished();
        this.lastStatus = statusKey(state);
        for (const viewer of this.viewers) viewer.sendStatus(state);
        if (isTerminalStatus(state.status)) this.ended = state;
      }
      await this.feedLive();
      if (this.ended) {
        for (const viewer of this.live) viewer.end(this.ended);
        this.live.clear();
      }
    } while (this.again);
  }

  /** Reads what the live viewers lack, a page at a time, once for all of them. */
  private async feedLive(): Promise<void> {
    for (;;) {
      let from = Infinity;
      for (const viewer of this.live) {
        // Closing (too slow, say): its cursor no longer moves, so it must not hold the others back.
        if (viewer.closed) this.live.delete(viewer);
        else from = Math.min(from, viewer.cursor);
      }
      if (this.live.size === 0) return;
      // Until the job ends, only announced lines are read; at the end, everything that is stored.
      if (!this.ended && from >= this.announced) return;
      const lines = await this.reads.linesAfter(this.jobId, from, this.pageLines);
      if (lines.length === 0) return;
      const shared = encodeLines(lines);
      for (const viewer of [...this.live]) {
        if (viewer.deliver(lines, from, shared)) continue;
        // Lines that do not follow on from its cursor: back to reading on its own.
        this.live.delete(viewer);
        void this.catchUp(viewer, undefined).catch((err: unknown) => this.failViewer(viewer, err));
      }
      if (lines.length < this.pageLines) return;
    }
  }

  private failViewer(viewer: LogViewer, err: unknown): void {
    this.log.error({ err, jobId: this.jobId }, 'log viewer failed');
    viewer.close(LogStreamCloseCode.InternalError, 'the server could not read the log; reconnect with after');
  }
}

function statusKey(state: JobLogState): string {
  return `${state.status}/${state.attempt}`;
}
