// Cross-replica events carried by PostgreSQL LISTEN/NOTIFY. Payloads stay small (ids only): a
// listener re-reads the tables, so a lost notification costs latency, never correctness.
export const channels = {
  /** A job became claimable in an organisation: dispatchers holding its agents look for work. */
  jobQueued: 'job_queued',
  /** A job's status changed: log streams and watchers re-read it. */
  jobChanged: 'job_changed',
  /** A job must be stopped on the agent running it, wherever that agent's stream is held. */
  agentCancel: 'agent_cancel',
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

export interface AgentCancelPayload {
  jobId: string;
  agentId: string;
  attempt: number;
  reason: string;
  graceMs: number;
}

export interface TokenRevokedPayload {
  tokenId: string;
}

export interface AgentSessionOpenedPayload {
  agentId: string;
  sessionId: string;
}

export type Notify = (channel: string, payload: string) => Promise<void>;
