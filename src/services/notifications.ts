// Cross-replica events carried by PostgreSQL LISTEN/NOTIFY. Payloads stay small (ids only): a
// listener re-reads the tables, so a lost notification costs latency, never correctness. The
// services publish most of them; `logAppended` and `jobChanged` come from triggers (migration 0001),
// so every writer announces what it stored, in the transaction that stores it.
export const channels = {
  /** A job became claimable in an organisation: dispatchers holding its agents look for work. */
  jobQueued: 'job_queued',
  /** A job's status changed (an event was appended): log streams re-read it. Sent by a trigger. */
  jobChanged: 'job_changed',
  /** Log lines were stored: payload `<job id>:<highest seq stored>`, one per INSERT (a batch, or batches stored together). Sent by a trigger. */
  logAppended: 'log_appended',
  /** A job must be stopped on the agent running it, wherever that agent's stream is held. */
  agentCancel: 'agent_cancel',
  /** A run is no longer its agent's (the job went back to the queue): the agent drops it, its slot is free. */
  agentDrop: 'agent_drop',
  /** An agent token was revoked: streams authenticated with it end. */
  tokenRevoked: 'agent_token_revoked',
  /** An agent opened a stream: a replica holding an older stream of the same agent ends it. */
  agentSessionOpened: 'agent_session_opened',
} as const;

export interface JobQueuedPayload {
  orgId: string;
  jobId: string;
}

export interface JobChangedPayload {
  jobId: string;
  status: string;
}

/** Reads a `logAppended` payload; undefined for one this version cannot read. */
export function parseLogAppended(payload: string): { jobId: string; lastSeq: number } | undefined {
  const colon = payload.lastIndexOf(':');
  const lastSeq = Number(payload.slice(colon + 1));
  if (colon <= 0 || !Number.isSafeInteger(lastSeq)) return undefined;
  return { jobId: payload.slice(0, colon), lastSeq };
}

export interface AgentCancelPayload {
  jobId: string;
  agentId: string;
  attempt: number;
  reason: string;
  graceMs: number;
}

export interface AgentDropPayload {
  jobId: string;
  agentId: string;
  attempt: number;
  reason: string;
}

export interface TokenRevokedPayload {
  tokenId: string;
}

export interface AgentSessionOpenedPayload {
  agentId: string;
  sessionId: string;
}

export type Notify = (channel: string, payload: string) => Promise<void>;
