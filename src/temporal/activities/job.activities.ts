// Activities are thin: each hands one step of the job's life to the lifecycle service. claimJob and
// executeJob record their task token and return without completing, so they hold no worker slot
// while the job waits for an agent; the gateway completes them.
import { CompleteAsyncError, Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { AppError } from '../../errors.js';
import type { JobLifecycleService } from '../../services/job-lifecycle.service.js';
import type { JobOutcome } from '../../domain/job.js';
import { AGENT_LOST_FAILURE, AGENT_REJECTED_FAILURE, type JobActivities, type JobClaim } from '../shared.js';

/** An AppError no retry can fix becomes a non-retryable failure; anything else is retried. */
async function translated<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof AppError && err.statusCode < 500) {
      throw ApplicationFailure.create({ type: err.name, message: err.message, nonRetryable: true, cause: err });
    }
    throw err;
  }
}

export function createJobActivities(deps: { lifecycle: JobLifecycleService }): JobActivities {
  const { lifecycle } = deps;
  return {
    async claimJob(jobId: string): Promise<JobClaim> {
      const claimed = await translated(() => lifecycle.awaitClaim(jobId, Context.current().info.base64TaskToken));
      if (!claimed) throw new CompleteAsyncError();
      return claimed;
    },
    async executeJob(jobId: string): Promise<JobOutcome> {
      const reported = await translated(() => lifecycle.awaitExecution(jobId, Context.current().info.base64TaskToken));
      if (!reported) throw new CompleteAsyncError();
      if (reported.kind === 'agent_lost') throw ApplicationFailure.create({ type: AGENT_LOST_FAILURE, message: reported.reason, nonRetryable: true });
      if (reported.kind === 'rejected') throw ApplicationFailure.create({ type: AGENT_REJECTED_FAILURE, message: reported.reason, nonRetryable: true });
      return reported;
    },
    requeueJob: ({ jobId, reason, uncount, declined }) => translated(() => lifecycle.requeue(jobId, reason, { uncount: uncount ?? false, declined: declined ?? false })),
    finishJob: ({ jobId, status, exitCode, reason }) => translated(() => lifecycle.finish(jobId, status, { exitCode, reason })),
    cancelIfQueued: ({ jobId, reason }) => translated(() => lifecycle.cancelIfQueued(jobId, reason)),
    cancelOnAgent: (input) => translated(() => lifecycle.cancelOnAgent(input)),
    attemptStartedAt: (input) => translated(() => lifecycle.attemptStartedAt(input)),
    leaseRemaining: (input) => translated(() => lifecycle.leaseRemaining(input)),
  };
}
