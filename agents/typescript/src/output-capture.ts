// Reads one output pipe of a child into log lines, pausing the pipe while the job's outbox is full.
// Pausing is the backpressure: the pipe fills, the child blocks on write, and nothing is dropped
// or buffered without bound.
import type { Readable } from 'node:stream';
import type { LogStream } from '../generated/agent/v1/agent.js';
import { LineSplitter } from './line-splitter.js';

/** Where a run's lines go: the job's log outbox, seen through what the runner needs. */
export interface JobLogSink {
  append(stream: LogStream, text: string): void;
  readonly isFull: boolean;
  whenRoom(): Promise<void>;
}

export class OutputCapture {
  /** Resolves once the pipe has ended (or was abandoned) and every line has been appended. */
  readonly ended: Promise<void>;
  private lastDataAt = Date.now();
  private pausedForRoom = false;

  constructor(
    private readonly pipe: Readable,
    stream: LogStream,
    private readonly sink: JobLogSink,
  ) {
    const splitter = new LineSplitter();
    this.ended = new Promise((resolve) => {
      const finish = (): void => {
        for (const line of splitter.end()) sink.append(stream, line);
        resolve();
      };
      pipe.on('data', (chunk: Buffer) => {
        this.lastDataAt = Date.now();
        for (const line of splitter.push(chunk)) sink.append(stream, line);
        if (sink.isFull) this.pauseForRoom();
      });
      pipe.once('end', finish);
      // 'close' without 'end' means the pipe was destroyed (abandoned run, or a read error).
      pipe.once('close', finish);
    });
  }

  /** No data for this long, and not because we paused it ourselves. */
  quietFor(ms: number): boolean {
    return !this.pausedForRoom && Date.now() - this.lastDataAt >= ms;
  }

  /** Stops reading at once: for a dropped run, or a pipe held open by a process that escaped. */
  abandon(): void {
    this.pipe.destroy();
  }

  private pauseForRoom(): void {
    if (this.pausedForRoom) return;
    this.pausedForRoom = true;
    this.pipe.pause();
    void this.sink.whenRoom().then(() => {
      this.pausedForRoom = false;
      this.lastDataAt = Date.now();
      if (!this.pipe.destroyed) this.pipe.resume();
    });
  }
}
