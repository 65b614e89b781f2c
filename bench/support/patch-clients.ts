// The clients of the changes benchmark, in a child process (patch-clients.child.ts): lean agents
// that deliver patches over gRPC (patch-agent.ts) and the REST download of what was stored. Apart
// from the server so that the server's memory, measured in the parent, holds only the server's side.
import { fileURLToPath } from 'node:url';
import { ChildCalls } from './child-calls.js';
import type { PatchBaselineResult, PatchBaselineSpec } from './patch-baseline.js';

export interface Spread {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface DeliverySummary {
  agents: number;
  /** Patch bytes sent by all agents. */
  bytes: number;
  /** All agents start together; the first chunk → the last JobFinishedAck. */
  seconds: number;
  /** Per agent: first chunk written → JobFinishedAck, ms. */
  perAgent: Spread;
  /** Per chunk: written → the PatchAck covering it, ms. */
  chunkAck: Spread;
  /** The most bytes any agent had sent and not had acknowledged at once. */
  maxUnacked: number;
  problems: string[];
}

export interface DownloadResult {
  jobId: string;
  status: number;
  bytes: number;
  md5: string;
}

/** What the parent can ask of the child: method → [arguments, result]. */
export type PatchClientCalls = {
  connectAgents: [{ address: string; token: string; count: number; parallel: number }, { connected: number; maxPatchBytes: number }];
  /**
   * Waits until every agent holds one of `jobIds` (each a different one), and takes it as the job to
   * deliver for. Tells the runs the server dropped meanwhile (DropJob) and what the agents objected to.
   */
  takeJobs: [{ jobIds: string[]; timeoutMs: number }, { drops: string[]; problems: string[] }];
  /** Makes each held job's patch (a git patch adding a file of random base64 text), exactly `bytes` long. */
  preparePatches: [{ bytes: number }, { patches: { jobId: string; bytes: number; md5: string }[] }];
  /** Every agent delivers its job's patch and JobFinished at once; resolves when all are acknowledged. */
  deliver: [{ chunkBytes: number; windowBytes: number; timeoutMs: number }, DeliverySummary];
  /** GETs each URL, `parallel` at a time, and tells what came back. */
  download: [{ downloads: { jobId: string; url: string }[]; token: string; parallel: number; timeoutMs: number }, { results: DownloadResult[]; seconds: number }];
  closeAgents: [Record<string, never>, { problems: string[] }];
  /** The storage baseline (patch-baseline.ts) over `connections` pg connections of its own. */
  insertBaseline: [{ databaseUrl: string; connections: number; spec: PatchBaselineSpec }, PatchBaselineResult];
};

const childPath = fileURLToPath(new URL(`./patch-clients.child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

export function startPatchClients(): ChildCalls<PatchClientCalls> {
  return ChildCalls.start<PatchClientCalls>(childPath, 'patch clients');
}
