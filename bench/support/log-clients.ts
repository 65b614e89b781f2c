// The clients of the logs benchmark, in a child process (log-clients.child.ts): lean log agents over
// gRPC, WebSocket viewers, the REST download and the plain-SQL baseline. Apart from the server so
// that the server's memory, measured in the parent, holds only the server's side of each connection,
// and so that clients do not share the server's event loop. The parent calls them like functions.
import { fileURLToPath } from 'node:url';
import type { BaselineResult } from './log-baseline.js';
import { ChildCalls } from './child-calls.js';

/** The text of line `n` of a benchmark log: `n=<n> ` then padding to `bytes` characters. */
export function lineText(n: number, bytes: number): string {
  const head = `n=${n} `;
  return head.length >= bytes ? head : head + 'x'.repeat(bytes - head.length);
}

/** `n` of a line printed by lineText or the printer (`... n=<n> ...`), else undefined. */
export function lineNumber(text: string): number | undefined {
  const space = text.startsWith('n=') ? -1 : text.indexOf(' n=');
  if (space < 0 && !text.startsWith('n=')) return undefined;
  const n = Number.parseInt(text.slice(space + 3), 10);
  return Number.isFinite(n) ? n : undefined;
}

export interface Percentiles {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface IngestSummary {
  agents: number;
  lines: number;
  /** All agents start together; this is the first line → the last agent's last ack. */
  seconds: number;
  /** Each batch: written → acknowledged, ms. */
  ack: Percentiles;
  problems: string[];
}

export interface ViewersSummary {
  viewers: number;
  /** Lines received, duplicates included, by all viewers. */
  lines: number;
  duplicates: number;
  lost: number;
  /** Viewers that closed without an end frame. */
  noEnd: number;
  badFrames: number;
  /** Viewers still open when the wait gave up (terminated, counted as failures). */
  stuck: number;
  closeCodes: Record<string, number>;
  /** Close reasons other than the normal end, one per code. */
  reasons: Record<string, string>;
  minLastSeq: number;
  maxLastSeq: number;
  /** Print → receive of the measured lines, ms, over every viewer. */
  latency: Percentiles;
  /** The agent's stamp on a line (when it read it) → received, one line per frame, ms. */
  fromAgentStamp: Percentiles;
}

export interface DownloadSummary {
  lines: number;
  bytes: number;
  seconds: number;
  /** Lines carrying `n=` (printed by the job), and how many of them were not the next n. */
  numbered: number;
  outOfOrder: number;
  status: number;
}

export interface BaselineRows {
  jobIds: string[];
  linesPerJob: number;
  textBytes: number;
  /** Rows per INSERT statement. */
  batch: number;
  /** Connections inserting at once (batches of one job stay in order). */
  connections: number;
}

/** What the parent can ask of the child: method → [arguments, result]. */
export type LogClientCalls = {
  connectAgents: [{ address: string; token: string; count: number; parallel: number }, { connected: number; maxBatchLines: number }];
  /** Waits until every agent holds its job; the job ids, one per agent. */
  agentJobs: [{ timeoutMs: number }, { jobIds: string[] }];
  /** Every agent prints `lines` lines of lineText(n, textBytes) at once, as fast as acknowledged. */
  print: [{ lines: number; textBytes: number; timeoutMs: number }, IngestSummary];
  finishAgents: [{ lastSeq: number; timeoutMs: number }, { finished: number }];
  closeAgents: [Record<string, never>, { problems: string[] }];
  openViewers: [
    { baseUrl: string; orgId: string; jobId: string; token: string; count: number; parallel: number; after: number; measureLatency: boolean },
    { opened: number; seconds: number; handshake: Percentiles },
  ];
  /** Waits for every viewer to close (after the end frame) and tells what they got. */
  viewersDone: [{ timeoutMs: number }, ViewersSummary];
  download: [{ url: string; token: string; timeoutMs: number }, DownloadSummary];
  /** The same rows as agents print, by plain multi-row INSERTs over `connections` pg connections. */
  insertBaseline: [{ databaseUrl: string; rows: BaselineRows }, BaselineResult];
};

const childPath = fileURLToPath(new URL(`./log-clients.child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

/** The child process, called like a set of async functions (see child-calls.ts). */
export type LogClients = ChildCalls<LogClientCalls>;
export const LogClients = {
  start: (): LogClients => ChildCalls.start<LogClientCalls>(childPath, "the log clients' process"),
};
