// The frames of the log stream, typed by openapi.yaml (generated/openapi/frames.ts) and encoded once:
// a page of lines is serialised one time and the same bytes go to every viewer at that position.
import type { EndFrame, LogLinesFrame, StatusFrame } from '../../../generated/openapi/frames.js';
import type { JobLogState, LogLine } from '../../services/logs.service.js';
import { isTerminalStatus } from '../../db/schema/index.js';

/** A text frame ready for the socket. */
export interface EncodedFrame {
  data: Buffer;
  /** The seq of the last line it carries (lines frames). */
  lastSeq: number;
}

/** A frame stays under this, so one frame never fills a viewer's buffer on its own (a line may be 64 KiB). */
const FRAME_BYTES = 128 * 1024;
const LINES_FRAME_HEAD = '{"type":"lines","lines":[';

type WireLine = LogLinesFrame['lines'][number];

function wireLine(line: LogLine): WireLine {
  return { seq: line.seq, attempt: line.attempt, at: line.at.toISOString(), stream: line.stream, text: line.text };
}

/** Consecutive lines as one or more `lines` frames, in order. */
export function encodeLines(lines: readonly LogLine[]): EncodedFrame[] {
  const frames: EncodedFrame[] = [];
  let parts: string[] = [];
  let bytes = 0;
  let lastSeq = 0;
  const flush = () => {
    if (parts.length === 0) return;
    frames.push({ data: Buffer.from(`${LINES_FRAME_HEAD}${parts.join(',')}]}`), lastSeq });
    parts = [];
    bytes = 0;
  };
  for (const line of lines) {
    const json = JSON.stringify(wireLine(line));
    if (bytes > 0 && bytes + json.length > FRAME_BYTES) flush();
    parts.push(json);
    bytes += json.length;
    lastSeq = line.seq;
  }
  flush();
  return frames;
}

export function encodeStatus(state: JobLogState): Buffer {
  const frame: StatusFrame = { type: 'status', status: state.status, at: state.changedAt.toISOString(), attempt: state.attempt };
  return Buffer.from(JSON.stringify(frame));
}

export function encodeEnd(state: JobLogState, lastSeq: number): Buffer {
  if (!isTerminalStatus(state.status)) throw new Error(`job ${state.jobId} has not ended (${state.status})`);
  const frame: EndFrame = { type: 'end', status: state.status, exitCode: state.exitCode, failureReason: state.failureReason, lastSeq, change: state.change };
  return Buffer.from(JSON.stringify(frame));
}
