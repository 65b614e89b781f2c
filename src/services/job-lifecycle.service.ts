// The job's state changes as its workflow drives them (through activities). Each method is
// idempotent: Temporal may run an activity twice.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import * as jobsRepo from '../db/jobs.repository.js';
import { jobs, isTerminalStatus, type JobStatus, type ReportedOutcome, type TerminalJobStatus } from '../db/schema/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { AttemptRef, JobClaim } from '../temporal/shared.js';
import { channels, type AgentCancelPayload, type JobQueuedPayload, type Notify } from './notifications.js';

const unfinished: JobStatus[] = ['queued', 'assigned', 'running'];

export class JobLifecycleService {
  constructor(private readonly deps: { db: Database; notify: Notify }) {}

  /**
   * The workflow waits for an agent: record its claim task token so a dispatcher can complete it.
   * A dispatcher may have been quicker (the job is already assigned): then the claim is returned.
   * Nothing is announced here: the job was announced when it was submitted or requeued, and a
   * dispatcher that claims it before this token is recorded leaves the claim for this step to find.
   */
  async awaitClaim(jobId: string, taskToken: string): Promise<JobClaim | undefined> {
    if (await jobsRepo.recordClaimToken(this.deps.db, jobId, taskToken)) return undefined;
    const job = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    if ((job.status === 'assigned' || job.status === 'running') && job.agentId) return { agentId: job.agentId, attempt: job.attempt };
    throw new ConflictError(`Job ${jobId} is ${job.status}, not queued`);
  }

  /**
   * The workflow waits for the agent to finish the job: record the execute task token, unless the
   * agent already reported (a job can end before this activity starts), then return that at once.
   */
  async awaitExecution(jobId: string, taskToken: string): Promise<ReportedOutcome | undefined> {
    if (await jobsRepo.recordExecuteToken(this.deps.db, jobId, taskToken)) return undefined;
    const job = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    if (job.reportedOutcome) return job.reportedOutcome;
    throw new ConflictError(`Job ${jobId} is ${job.status}, not assigned`);
  }

  async finish(jobId: string, status: TerminalJobStatus, details: { exitCode?: number | null; reason?: string | null }): Promise<void> {
    const row = await jobsRepo.transition(
      this.deps.db,
      jobId,
      unfinished,
      status,
      { finishedAt: new Date(), exitCode: details.exitCode ?? null, failureReason: details.reason ?? null, claimTaskToken: null, executeTaskToken: null },
      { type: status, detail: details.reason ?? null },
    );
    if (row) {
      // Ended by the workflow while an agent holds it (cancelled while being claimed, timed out):
      // make sure the agent stops too. Harmless if the agent already finished it.
      if (row.agentId && (status === 'cancelled' || status === 'timed_out')) {
        await this.publish<AgentCancelPayload>(channels.agentCancel, { jobId, agentId: row.agentId, attempt: row.attempt, reason: details.reason ?? status, graceMs: row.timeouts.cancelGraceMs });
      }
      return;
    }
    const current = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!current) throw new NotFoundError(`Job ${jobId}`);
    // Already finished: a repeated activity, nothing to do.
    if (!isTerminalStatus(current.status)) throw new ConflictError(`Job ${jobId} could not move from ${current.status} to ${status}`);
  }

  /**
   * Back to the queue. A lost agent's attempt stays counted; an attempt the agent declined before
   * starting is taken back (`uncount`), so the next claim numbers the same attempt again.
   */
  async requeue(jobId: string, reason: string, options: { uncount: boolean } = { uncount: false }): Promise<void> {
    const row = await jobsRepo.transition(
      this.deps.db,
      jobId,
      ['assigned', 'running'],
      'queued',
      {
        agentId: null,
        assignedAt: null,
        startedAt: null,
        claimTaskToken: null,
        executeTaskToken: null,
        reportedOutcome: null,
        ...(options.uncount ? { attempt: sql`greatest(${jobs.attempt} - 1, 0)` } : {}),
      },
      { type: 'requeued', detail: reason },
    );
    // Announced again, for dispatchers on every replica. (A repeated activity finds the job queued
    // already, or claimed again: nothing to announce.)
    if (row) await this.publish<JobQueuedPayload>(channels.jobQueued, { orgId: row.orgId, jobId });
  }

  /**
   * When the agent reported the attempt started, for the workflow's start deadline. An attempt whose
   * outcome is already reported counts as started (from its assignment) even if the agent skipped
   * its Started: the outcome is on its way to the workflow, which waits for it rather than
   * requeueing a finished job.
   */
  async attemptStartedAt(input: AttemptRef): Promise<number | null> {
    const job = await jobsRepo.findJobById(this.deps.db, input.jobId);
    if (!job || job.agentId !== input.agentId || job.attempt !== input.attempt) return null;
    const started = job.startedAt ?? (job.reportedOutcome ? job.assignedAt : null);
    return started?.getTime() ?? null;
  }

  /** Asks whichever replica holds the agent's stream to send it a cancel. */
  async cancelOnAgent(input: { jobId: string; attempt: number; reason: string; graceMs: number }): Promise<void> {
    const job = await jobsRepo.findJobById(this.deps.db, input.jobId);
    if (!job?.agentId || isTerminalStatus(job.status)) return;
    await this.publish<AgentCancelPayload>(channels.agentCancel, { ...input, agentId: job.agentId });
  }

  private async publish<T>(channel: string, payload: T): Promise<void> {
    await this.deps.notify(channel, JSON.stringify(payload));
  }
}
