// A WebSocket log viewer that follows a job as the README tells a client to: the token as the
// `bearer.<token>` subprotocol, and after any close other than 1000, reconnect with `after` = the
// last seq received. It keeps every seq it got, so a row can tell a gap or a repeat from outside.
import WebSocket from 'ws';
import type { LogStreamFrame } from '../../generated/openapi/frames.js';
import { streamJobLogsProtocols, streamJobLogsUrl } from '../../generated/sdk/index.js';
import type { Tenant } from './client.js';

export class FollowingViewer {
  /** Every line's seq, in the order received. */
  readonly seqs: number[] = [];
  /** Close codes of the connections that ended before the end frame. */
  readonly abnormalCloses: number[] = [];
  reconnects = 0;
  endedWith: { status: string; lastSeq: number } | undefined;
  private socket: WebSocket | undefined;
  private stopped = false;

  constructor(
    private readonly tenant: Tenant,
    private readonly jobId: string,
  ) {}

  get lastSeq(): number {
    return this.seqs.at(-1) ?? 0;
  }

  get done(): boolean {
    return this.endedWith !== undefined;
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.socket?.terminate();
  }

  /** Seqs received more than once, and seqs missing between 1 and the last one received. */
  problems(): { duplicates: number; gaps: number } {
    const seen = new Set<number>();
    let duplicates = 0;
    for (const seq of this.seqs) {
      if (seen.has(seq)) duplicates++;
      seen.add(seq);
    }
    let gaps = 0;
    for (let seq = 1; seq <= Math.max(0, ...this.seqs); seq++) if (!seen.has(seq)) gaps++;
    return { duplicates, gaps };
  }

  private connect(): void {
    if (this.stopped || this.done) return;
    const url = streamJobLogsUrl(this.tenant.baseUrl, { orgId: this.tenant.orgId, jobId: this.jobId }, { after: this.lastSeq });
    const socket = new WebSocket(url, streamJobLogsProtocols(this.tenant.token));
    this.socket = socket;
    socket.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString('utf8')) as LogStreamFrame;
      if (frame.type === 'lines') for (const line of frame.lines) this.seqs.push(line.seq);
      else if (frame.type === 'end') this.endedWith = { status: frame.status, lastSeq: frame.lastSeq };
    });
    socket.on('error', () => {});
    socket.on('close', (code: number) => {
      if (this.stopped || this.done) return;
      this.abnormalCloses.push(code);
      this.reconnects++;
      // While the API is down every attempt fails at once; a short pause keeps that from spinning.
      setTimeout(() => this.connect(), 250);
    });
  }
}
