// One WebSocket watching one job's log. It owns its cursor (the last seq it was sent) and its
// bounded send buffer: what it holds is at most the buffer limit plus one frame, however slowly the
// browser reads, and a viewer that cannot keep up is closed with "too slow" and resumes by `after`.
import type { WebSocket } from 'ws';
import { LogStreamCloseCode } from '../../../generated/openapi/frames.js';
import type { JobLogState, LogLine } from '../../services/logs.service.js';
import { encodeEnd, encodeLines, encodeStatus, type EncodedFrame } from './frames.js';

export interface ViewerSettings {
  /** Bytes waiting to be sent past which a live viewer is too slow. */
  maxBufferedBytes: number;
  /** How long the buffer may stay full while the backlog is sent before the viewer is too slow. */
  stallTimeoutMs: number;
}

/** How long a closing handshake may take before the socket (and what it buffers) is dropped. */
const CLOSE_HANDSHAKE_MS = 2_000;

/** A close reason holds at most 123 bytes of UTF-8. */
export function fitCloseReason(reason: string): string {
  let fitted = reason;
  while (Buffer.byteLength(fitted) > 123) fitted = fitted.slice(0, -1);
  return fitted;
}

export class LogViewer {
  /** The seq of the last line sent (or the `after` it asked for). */
  cursor: number;
  /** The highest seq actually sent, for the end frame. */
  private lastSentSeq = 0;
  private lastStatus = '';
  private closing = false;
  /** The socket has closed: nothing it held is kept any longer. */
  private gone = false;
  /** The close code this side chose, if it closed first. */
  closedWith: number | undefined;
  private awaitingPong = false;
  private readonly closedHandlers: (() => void)[] = [];

  constructor(
    readonly jobId: string,
    after: number,
    private readonly socket: WebSocket,
    private readonly settings: ViewerSettings,
  ) {
    this.cursor = after;
    // The peer may have gone while its access was being checked: then no close event is to come.
    this.gone = socket.readyState === socket.CLOSED;
    this.closing = this.gone;
    socket.on('close', () => {
      this.closing = true;
      this.gone = true;
      for (const handler of this.closedHandlers.splice(0)) handler();
    });
    socket.on('pong', () => {
      this.awaitingPong = false;
    });
  }

  get closed(): boolean {
    return this.closing;
  }

  /** Runs once the socket has closed (at once if it already has). */
  onClosed(handler: () => void): void {
    if (this.gone) handler();
    else this.closedHandlers.push(handler);
  }

  /** Sends a status frame unless the viewer already has this status for this attempt. */
  sendStatus(state: JobLogState): void {
    const key = `${state.status}/${state.attempt}`;
    if (key === this.lastStatus) return;
    this.lastStatus = key;
    this.write(encodeStatus(state));
  }

  /** Backlog: sends lines read for this viewer alone; the reader paces itself with waitForRoom. */
  sendBacklog(lines: readonly LogLine[]): void {
    for (const frame of encodeLines(lines)) this.writeLines(frame);
  }

  /**
   * Live tail: lines read once for every viewer from `from`. The viewer takes those after its cursor;
   * `shared` is their encoding for a viewer exactly at `from`. False when the lines do not follow on
   * from the cursor (a gap): the viewer must re-read from its cursor.
   */
  deliver(lines: readonly LogLine[], from: number, shared: readonly EncodedFrame[]): boolean {
    if (this.closing) return true;
    if (this.cursor === from) {
      for (const frame of shared) this.writeLines(frame);
    } else {
      const fresh = lines.filter((line) => line.seq > this.cursor);
      if (fresh.length === 0) return true;
      if (fresh[0]!.seq !== this.cursor + 1) return false;
      for (const frame of encodeLines(fresh)) this.writeLines(frame);
    }
    if (this.socket.bufferedAmount > this.settings.maxBufferedBytes) {
      this.close(LogStreamCloseCode.TooSlow, `too slow: more than ${this.settings.maxBufferedBytes} bytes unread; reconnect with after=${this.cursor}`);
    }
    return true;
  }

  /** The job ended and every line it had was sent: the end frame, then a normal close. */
  end(state: JobLogState): void {
    if (this.closing) return;
    this.sendStatus(state);
    this.write(encodeEnd(state, Math.max(state.lastSeq, this.lastSentSeq)));
    this.close(LogStreamCloseCode.Normal, 'job finished');
  }

  /**
   * Waits until the buffer is below half its limit. False (and closed as too slow) when it stays
   * above for the stall timeout, or when the viewer went away meanwhile.
   */
  async waitForRoom(): Promise<boolean> {
    const lowWater = this.settings.maxBufferedBytes / 2;
    const deadline = Date.now() + this.settings.stallTimeoutMs;
    for (let pause = 5; !this.closing && this.socket.bufferedAmount > lowWater; pause = Math.min(pause * 2, 100)) {
      if (Date.now() >= deadline) {
        this.close(LogStreamCloseCode.TooSlow, `too slow: the backlog stalled; reconnect with after=${this.cursor}`);
        return false;
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
    return !this.closing;
  }

  /** Keepalive: false when the last ping went unanswered (the peer is gone without a close). */
  ping(): boolean {
    if (this.awaitingPong) return false;
    this.awaitingPong = true;
    this.socket.ping();
    return true;
  }

  close(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    this.closedWith = code;
    this.socket.close(code, fitCloseReason(reason));
    // A peer that never reads never answers the close either: drop the socket and its buffer.
    setTimeout(() => this.socket.terminate(), CLOSE_HANDSHAKE_MS).unref();
  }

  terminate(): void {
    this.closing = true;
    this.socket.terminate();
  }

  private writeLines(frame: EncodedFrame): void {
    this.write(frame.data);
    this.cursor = frame.lastSeq;
    this.lastSentSeq = frame.lastSeq;
  }

  private write(data: Buffer): void {
    if (this.closing || this.socket.readyState !== this.socket.OPEN) return;
    this.socket.send(data, { binary: false });
  }
}
