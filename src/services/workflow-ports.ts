// The ports through which the domain reaches a job's workflow. Implemented over Temporal in
// src/temporal/; services depend only on these shapes.
import type { JobClaim, JobOutcome, JobTimeouts } from '../temporal/shared.js';

export interface JobWorkflows {
  start(input: { jobId: string; maxAttempts: number; timeouts: JobTimeouts }): Promise<void>;
  /** Resolves false when the workflow has already ended. */
  requestCancel(jobId: string, reason: string): Promise<boolean>;
}

/** What happened when the gateway tried to move a waiting activity on. */
export type CompletionResult = 'done' | 'gone';

/**
 * Completes the asynchronously waiting steps of a job's workflow, by the task tokens its activities
 * recorded. 'gone' means the workflow no longer waits on that step (it was cancelled or timed out).
 */
export interface JobStepCompletions {
  completeClaim(taskToken: string, claim: JobClaim): Promise<CompletionResult>;
  completeExecution(taskToken: string, outcome: JobOutcome): Promise<CompletionResult>;
  /** Ends the attempt without an outcome: the job goes back to the queue (a rejection does not count the attempt). */
  failExecution(taskToken: string, why: { kind: 'agent_lost' | 'rejected'; reason: string }): Promise<CompletionResult>;
  /** Records an agent heartbeat against the execute step: Temporal's heartbeat timeout is agent silence. */
  heartbeatExecution(taskToken: string): Promise<CompletionResult>;
  signalStarted(jobId: string, attempt: number): Promise<void>;
}
