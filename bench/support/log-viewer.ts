// A log-stream viewer as a browser tab is one, kept lean so that a thousand fit in one process: a
// real WebSocket (the `ws` package) over loopback offering `agent-jobs.v1` and `bearer.<token>` that
// checks it gets each seq exactly once and in order, without keeping the lines. Lines whose text
// starts with `t=<epoch ms> m` (the print time, by this machine's clock) add their print → receive
// time to a shared histogram.
//
// The clients share one process (and two cores) with the server they measure, so what a browser
// would do in its own CPU is done once per distinct frame here (FrameCache): the server sends the
// same bytes to every viewer at the same position, and parsing them once per viewer (100 viewers at
// 10,000 lines/s: 100 MB/s of JSON) took the CPU the server needed. A frame's parse is reused only
// for identical bytes, and each viewer still applies it to its own cursor.
import WebSocket from 'ws';
import { websocketOperations, type LogStreamFrame } from '../../generated/openapi/frames.js';

/** This machine's wall clock in ms with sub-ms precision, comparable between processes. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/**
 * The text of a line printed at `at` (epochMs()), what latency is measured from: `t=<at> m <rest>`
 * for a measured line, `t=<at> w <rest>` for a warm-up line.
 */
export const timedText = (at: number, measured: boolean, rest: string): string => `t=${at.toFixed(3)} ${measured ? 'm' : 'w'} ${rest}`;

/** Latencies in ms, in buckets of 0.05 ms up to a minute (beyond: the last bucket; max is exact). */
export class LatencyHistogram {
  private static readonly RESOLUTION_MS = 0.05;
  private readonly buckets = new Uint32Array(Math.ceil(60_000 / LatencyHistogram.RESOLUTION_MS));
  count = 0;
  max = 0;

  add(ms: number, times = 1): void {
    const bucket = Math.min(this.buckets.length - 1, Math.max(0, Math.floor(ms / LatencyHistogram.RESOLUTION_MS)));
    this.buckets[bucket]! += times;
    this.count += times;
    if (ms > this.max) this.max = ms;
  }

  /** The value below which a fraction q of the samples lie (the bucket's upper edge). */
  percentile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.ceil(q * this.count);
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i]!;
      if (seen >= rank) return Math.min(this.max, (i + 1) * LatencyHistogram.RESOLUTION_MS);
    }
    return this.max;
  }
}

export interface LatencyHistograms {
  /** Print → received, every measured line. */
  printed: LatencyHistogram;
  /**
   * The agent's stamp (LogLine.at: when it read the line from the pipe, ms) → received, the last
   * measured line of each frame: the server's share, without the agent's batching.
   */
  stamped: LatencyHistogram;
}

/** A frame as received, with what every viewer needs of it worked out once. */
interface ReceivedFrame {
  frame: LogStreamFrame;
  /** For a lines frame whose seqs are consecutive: the first and last (otherwise each line is checked). */
  run?: { first: number; last: number };
  /** Measured lines by print time (the printer prints several lines at one moment). */
  printed: { at: number; lines: number }[];
  /** The agent's stamp of the last measured line, epoch ms. */
  lastStamp?: number;
}

function describe(frame: LogStreamFrame): ReceivedFrame {
  const received: ReceivedFrame = { frame, printed: [] };
  if (frame.type !== 'lines' || frame.lines.length === 0) return received;
  const first = frame.lines[0]!.seq;
  if (frame.lines.every((line, i) => line.seq === first + i)) received.run = { first, last: first + frame.lines.length - 1 };
  let lastStamp: string | undefined;
  for (const line of frame.lines) {
    if (!line.text.startsWith('t=')) continue;
    const space = line.text.indexOf(' ');
    if (line.text[space + 1] !== 'm') continue;
    const at = Number.parseFloat(line.text.slice(2, space));
    const group = received.printed.at(-1);
    if (group?.at === at) group.lines += 1;
    else received.printed.push({ at, lines: 1 });
    lastStamp = line.at;
  }
  if (lastStamp !== undefined) received.lastStamp = Date.parse(lastStamp);
  return received;
}

/** Parses each distinct frame once for every viewer of this process (see the top of the file). */
export class FrameCache {
  private readonly recent: { data: Buffer; received: ReceivedFrame }[] = [];

  constructor(private readonly size = 16) {}

  parse(data: Buffer): ReceivedFrame {
    for (const seen of this.recent) if (seen.data.length === data.length && seen.data.equals(data)) return seen.received;
    const received = describe(JSON.parse(data.toString('utf8')) as LogStreamFrame);
    this.recent.unshift({ data, received });
    if (this.recent.length > this.size) this.recent.pop();
    return received;
  }
}

export interface ViewerTally {
  /** Lines received (duplicates included). */
  lines: number;
  /** Lines whose seq had already been received. */
  duplicates: number;
  /** Seqs skipped over, plus those missing at the end (up to the end frame's last_seq). */
  lost: number;
  lastSeq: number;
  /** The end frame's last_seq; undefined when the stream closed without one. */
  endSeq: number | undefined;
  closeCode: number;
  closeReason: string;
  /** Frames that broke the contract (not JSON, binary, lines after the end frame). */
  badFrames: number;
}

export interface ViewerOptions {
  after?: number;
  /** Shared by many viewers: the latencies of the measured lines (timedText). */
  latency?: LatencyHistograms;
  /** Shared by the viewers of one process; without it each viewer parses what it gets. */
  frames?: FrameCache;
}

export class BenchViewer {
  readonly opened: Promise<void>;
  /** Resolves when the socket closes, with what was received. Never rejects. */
  readonly done: Promise<ViewerTally>;
  private readonly socket: WebSocket;
  private readonly tally: ViewerTally;

  constructor(baseUrl: string, orgId: string, jobId: string, token: string, options: ViewerOptions = {}) {
    const op = websocketOperations.streamJobLogs;
    const after = options.after ?? 0;
    const path = op.path.replace('{orgId}', orgId).replace('{jobId}', jobId);
    this.tally = { lines: 0, duplicates: 0, lost: 0, lastSeq: after, endSeq: undefined, closeCode: 0, closeReason: '', badFrames: 0 };
    // Browsers do not compress unless asked; neither does the server (perMessageDeflate off).
    this.socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}${path}?after=${after}`, [op.subprotocol, `${op.tokenSubprotocolPrefix}${token}`], { perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', () => resolve());
      this.socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode}`)));
      this.socket.once('error', reject);
    });
    this.opened.catch(() => {});
    this.socket.on('message', (data: Buffer, isBinary: boolean) => this.received(data, isBinary, options));
    this.done = new Promise((resolve) => {
      this.socket.once('close', (code: number, reason: Buffer) => {
        this.tally.closeCode = code;
        this.tally.closeReason = reason.toString();
        if (this.tally.endSeq !== undefined && this.tally.endSeq > this.tally.lastSeq) this.tally.lost += this.tally.endSeq - this.tally.lastSeq;
        resolve({ ...this.tally });
      });
    });
    this.socket.on('error', () => {});
  }

  get lastSeq(): number {
    return this.tally.lastSeq;
  }

  terminate(): void {
    this.socket.terminate();
  }

  private received(data: Buffer, isBinary: boolean, options: ViewerOptions): void {
    const now = epochMs();
    const t = this.tally;
    let received: ReceivedFrame;
    try {
      if (isBinary) throw new Error('binary frame');
      received = options.frames ? options.frames.parse(data) : describe(JSON.parse(data.toString('utf8')) as LogStreamFrame);
    } catch {
      t.badFrames += 1;
      return;
    }
    const frame = received.frame;
    if (frame.type === 'end') {
      t.endSeq = frame.lastSeq;
      return;
    }
    if (frame.type !== 'lines') return;
    if (t.endSeq !== undefined) t.badFrames += 1;
    t.lines += frame.lines.length;
    if (received.run) {
      // Consecutive seqs: the same as checking each line, in O(1).
      const { first, last } = received.run;
      if (last <= t.lastSeq) t.duplicates += frame.lines.length;
      else {
        if (first <= t.lastSeq) t.duplicates += t.lastSeq - first + 1;
        else t.lost += first - t.lastSeq - 1;
        t.lastSeq = last;
      }
    } else {
      for (const line of frame.lines) {
        if (line.seq <= t.lastSeq) {
          t.duplicates += 1;
          continue;
        }
        t.lost += line.seq - t.lastSeq - 1;
        t.lastSeq = line.seq;
      }
    }
    const latency = options.latency;
    if (!latency) return;
    for (const group of received.printed) latency.printed.add(now - group.at, group.lines);
    if (received.lastStamp !== undefined) latency.stamped.add(now - received.lastStamp);
  }
}
