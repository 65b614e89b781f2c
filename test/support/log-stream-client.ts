// A log stream viewer as a browser is one: a real WebSocket over loopback that offers the token as a
// subprotocol, checks every frame and close code against openapi.yaml, and keeps what it received.
import WebSocket from 'ws';
import { websocketOperations, type EndFrame, type LogLinesFrame, type LogStreamFrame, type StatusFrame } from '../../generated/openapi/frames.js';
import { assertCloseCodeInContract, assertFrameMatchesContract } from './contract.js';

type Line = LogLinesFrame['lines'][number];

export interface ViewerOptions {
  /** The access token, offered as `bearer.<token>` (omit to connect without one). */
  token?: string;
  after?: number;
  /** Raw query string instead of `after` (to send what a client should not). */
  query?: string;
  /** Send the token in the Authorization header instead of a subprotocol. */
  tokenInHeader?: boolean;
  /** Leave incoming data unread in the kernel, as a stuck browser tab does. */
  paused?: boolean;
}

export class LogStreamViewer {
  readonly lines: Line[] = [];
  readonly statuses: StatusFrame[] = [];
  end: EndFrame | undefined;
  /** Every frame, in order, as received. */
  readonly frames: LogStreamFrame[] = [];
  /** Resolves when the socket closes, with the server's close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;
  private readonly socket: WebSocket;
  private waiters: (() => void)[] = [];

  constructor(baseUrl: string, orgId: string, jobId: string, options: ViewerOptions = {}) {
    const { subprotocol, tokenSubprotocolPrefix } = websocketOperations.streamJobLogs;
    const path = websocketOperations.streamJobLogs.path.replace('{orgId}', orgId).replace('{jobId}', jobId);
    const query = options.query ?? `after=${options.after ?? 0}`;
    const protocols = [subprotocol, ...(options.token && !options.tokenInHeader ? [`${tokenSubprotocolPrefix}${options.token}`] : [])];
    this.socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}${path}?${query}`, protocols, {
      headers: options.token && options.tokenInHeader ? { authorization: `Bearer ${options.token}` } : {},
    });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => {
        if (options.paused) this.socket.pause();
        resolve();
      });
      this.socket.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused with ${response.statusCode}`)));
    });
    this.socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) throw new Error('the log stream sent a binary frame');
      const frame = JSON.parse(data.toString('utf8')) as LogStreamFrame;
      assertFrameMatchesContract(frame);
      this.frames.push(frame);
      if (frame.type === 'lines') this.lines.push(...frame.lines);
      else if (frame.type === 'status') this.statuses.push(frame);
      else this.end = frame;
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      this.socket.once('close', (code: number, reason: Buffer) => {
        if (code !== 1006 && code !== 1005) assertCloseCodeInContract(code);
        resolve({ code, reason: reason.toString() });
        this.wake();
      });
    });
    this.socket.on('error', () => {});
  }

  get protocol(): string {
    return this.socket.protocol;
  }

  /** The seq of the last line received (what a client passes as `after` to resume). */
  get lastSeq(): number {
    return this.lines.at(-1)?.seq ?? 0;
  }

  resume(): void {
    this.socket.resume();
  }

  /** Drops the connection without a close handshake, as a lost network does. */
  cut(): void {
    this.socket.terminate();
  }

  /** Waits until `done` holds of what was received (or the socket closed). */
  async until(done: (viewer: this) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this)) {
      if (this.socket.readyState === WebSocket.CLOSED) throw new Error(`the stream closed before the condition held (${this.lines.length} lines)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`condition not met within ${timeoutMs} ms (${this.lines.length} lines, last seq ${this.lastSeq})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

/** Sequence numbers that are not exactly from..to in order (empty when they are). */
export function seqProblems(lines: readonly { seq: number }[], from: number, to: number): string[] {
  const problems: string[] = [];
  if (lines.length !== to - from + 1) problems.push(`expected ${to - from + 1} lines, got ${lines.length}`);
  lines.forEach((line, index) => {
    if (line.seq !== from + index && problems.length < 10) problems.push(`line ${index} has seq ${line.seq}, expected ${from + index}`);
  });
  return problems;
}
