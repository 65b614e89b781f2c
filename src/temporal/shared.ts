// The names and shapes both sides of Temporal agree on: the client that starts and cancels job
// workflows, the workflow code, and the worker that hosts the activities. Imports nothing at runtime
// except plain values, so the workflow bundle can include it.
import type { JobOutcome, JobTimeouts, TerminalJobStatus } from '../domain/job.js';

export const JOB_WORKFLOW_TYPE = 'jobWorkflow';

/** What the job workflow returns: how the job ended. */
export type JobEndStatus = TerminalJobStatus;

export interface JobWorkflowInput {
  jobId: string;
  maxAttempts: number;
  timeouts: JobTimeouts;
}

/** What claimJob resolves with: the agent that accepted the job, and which attempt this is. */
export interface JobClaim {
  agentId: string;
  attempt: number;
}

export interface FinishJobInput {
  jobId: string;
  status: JobEndStatus;
  exitCode?: number | null;
  reason?: string | null;
}

export interface RequeueJobInput {
  jobId: string;
  reason: string;
  /**
   * Workflows from before run numbers: the attempt never began (declined by the agent), so its
   * number is taken back and the next run reuses it.
   */
  uncount?: boolean;
  /** The attempt never began (declined by the agent): it keeps its number but does not count against maxAttempts. */
  declined?: boolean;
}

/**
 * The activities of a job's life. claimJob and executeJob complete asynchronously: each records its
 * task token on the job row and returns at once, so a waiting job holds no worker slot; whoever moves
 * the job on (the agent gateway) completes the activity with that token.
 */
export interface JobActivities {
  claimJob(jobId: string): Promise<JobClaim>;
  executeJob(jobId: string, claim: JobClaim): Promise<JobOutcome>;
  requeueJob(input: RequeueJobInput): Promise<void>;
  /** Asks the agent running the job to stop it (SIGTERM, then SIGKILL after the grace period). */
  cancelOnAgent(input: CancelOnAgentInput): Promise<void>;
  finishJob(input: FinishJobInput): Promise<void>;
  /**
   * Ends a job cancelled while it waits in the queue, in one step that a dispatcher's claim cannot
   * interleave with. Returns the claim when an agent already holds the job (the workflow then stops
   * that run as it stops any other), null when the job was ended (now or before).
   */
  cancelIfQueued(input: { jobId: string; reason: string | null }): Promise<JobClaim | null>;
  /** When the agent reported this attempt started (epoch ms), or null if it has not. */
  attemptStartedAt(input: AttemptRef): Promise<number | null>;
  /**
   * Milliseconds until the agent holding the attempt has surely stopped it under the lease rule
   * (0 or less: it has), or null when the attempt is no longer live with that agent.
   */
  leaseRemaining(input: LeaseQuery): Promise<number | null>;
}

export interface LeaseQuery extends AttemptRef {
  /** The silence timeout to go by for an agent that was given no lease (one from before leases). */
  fallbackLeaseMs: number;
}

export interface AttemptRef {
  jobId: string;
  agentId: string;
  attempt: number;
}

/** executeJob fails with this type when the agent was lost (gone silent, or gave a started job back). */
export const AGENT_LOST_FAILURE = 'AgentLost';
/** executeJob fails with this type when the agent declined the job before starting it. */
export const AGENT_REJECTED_FAILURE = 'AgentRejected';

/** Signal names: defined here as plain strings so the client side needs no workflow import. */
export const jobSignals = {
  /** A person asked to cancel the job (REST). Carries CancelRequest. */
  cancel: 'cancel',
  /**
   * The agent reported the job started. Sent by earlier gateways; workflows now read the start from
   * the job when the start deadline fires, and keep the handler for histories that carry the signal.
   */
  started: 'started',
  /**
   * A dispatcher claimed the job in the database but its claim never reached the claim step (the
   * process died in between, or the claim step's activity was lost with its worker). Sent by the
   * gateway's sweep; carries the JobClaim. Taken only for a run newer than the last one claimed.
   */
  claimed: 'claimed',
} as const;

export interface CancelRequest {
  reason: string;
}

export interface StartedSignal {
  attempt: number;
}

export interface CancelOnAgentInput {
  jobId: string;
  attempt: number;
  reason: string;
  graceMs: number;
}
