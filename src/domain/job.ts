// The job's vocabulary, shared by every layer: the database schema, the services, the workflow and
// the gateway import it from here. Plain values and types only, so the workflow bundle can take it.

export const jobStatuses = ['queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const terminalJobStatuses = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const satisfies readonly JobStatus[];
/** How a job ends: what its workflow returns. */
export type TerminalJobStatus = (typeof terminalJobStatuses)[number];
export const isTerminalStatus = (status: JobStatus): status is TerminalJobStatus => (terminalJobStatuses as readonly JobStatus[]).includes(status);

export const queueTypes = ['backlog', 'rework'] as const;
export type QueueType = (typeof queueTypes)[number];

export const jobEventTypes = ['created', 'assigned', 'started', 'requeued', 'cancel_requested', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type JobEventType = (typeof jobEventTypes)[number];

export const logStreams = ['stdout', 'stderr', 'system'] as const;
export type LogStream = (typeof logStreams)[number];

/** Per-job limits, fixed when the job is created so a configuration change never rewrites a running job. */
export interface JobTimeouts {
  /** From queued (or requeued) until an agent accepts the job. */
  queueMs: number;
  /** From assignment until the agent reports the job started. */
  startMs: number;
  /** From start until the agent reports the job finished. */
  runMs: number;
  /**
   * The agent-silence timeout when the job was created: how long the workflow lets Temporal wait for
   * an agent heartbeat before it asks the database whether the agent is lost (see the lease rule).
   */
  agentSilenceMs: number;
  /** How long an agent has to stop a cancelled job before it is told to kill it. */
  cancelGraceMs: number;
}

/** How a run ended, as its agent reported it. */
export type JobOutcome = { kind: 'succeeded'; exitCode: number } | { kind: 'failed'; exitCode: number | null; reason: string } | { kind: 'cancelled'; reason: string };

/**
 * A run that ended without an outcome: its agent was lost (silent past its lease, gave a started run
 * back, stopped listing it; the attempt counts) or declined it before starting (it does not count).
 * Either way the job goes back to the queue.
 */
export type AttemptLoss = { kind: 'agent_lost'; reason: string } | { kind: 'rejected'; reason: string };

/** What the agent reported of an attempt: its outcome, or that it gave the attempt up. */
export type ReportedOutcome = JobOutcome | AttemptLoss;

/** What the agent running an attempt was asked: stop it, with this grace before SIGKILL. */
export interface StopRequest {
  attempt: number;
  reason: string;
  graceMs: number;
}

/**
 * The job's place in its trace, as W3C Trace Context headers (`traceparent`, and `tracestate` when
 * there is one): taken from the request that created the job and kept with it, so its workflow's
 * start, its assignments and its agent's runs join that one trace on whichever process they happen.
 */
export interface JobTraceContext {
  traceparent: string;
  tracestate?: string;
}
