// The ports through which the domain reaches a job's workflow. Implemented over Temporal in
// src/temporal/; services depend only on these shapes.
import type { AttemptLoss, JobOutcome, JobTimeouts } from '../domain/job.js';
import type { JobClaim } from '../temporal/shared.js';

export interface JobWorkflowStart {
  jobId: string;
  maxAttempts: number;
  timeouts: JobTimeouts;
}

export interface JobWorkflows {
  /** Starts the job's workflow; starting one that runs or ran already is a no-op, never a second life. */
  start(input: JobWorkflowStart): Promise<void>;
  /**
   * Delivers a cancellation, starting the workflow first if the outbox has not started it yet (it then
   * ends cancelled at once). Resolves false when the workflow has already ended.
   */
  requestCancel(input: JobWorkflowStart, reason: string): Promise<boolean>;
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
  failExecution(taskToken: string, why: AttemptLoss): Promise<CompletionResult>;
  /** Delivers a claim to a job's workflow by signal, for a claim step that lost its activity. */
  signalClaim(jobId: string, claim: JobClaim): Promise<CompletionResult>;
  /** Records an agent heartbeat against the execute step: Temporal's heartbeat timeout is agent silence. */
  heartbeatExecution(taskToken: string): Promise<CompletionResult>;
}
