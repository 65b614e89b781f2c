// The job's state changes as its workflow drives them (through activities). Each method is
// idempotent: Temporal may run an activity twice.
import { sql } from 'drizzle-orm';
import type { Database } from '../db/client.js';
import * as agentsRepo from '../db/agents.repository.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as logsRepo from '../db/logs.repository.js';
import { jobs, isTerminalStatus, type JobStatus, type ReportedOutcome, type TerminalJobStatus } from '../db/schema/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Metrics } from '../observability/metrics.js';
import type { AttemptRef, JobClaim, LeaseQuery } from '../temporal/shared.js';
import type { Publish } from './notifications.js';

const unfinished: JobStatus[] = ['queued', 'assigned', 'running'];

export class JobLifecycleService {
  constructor(private readonly deps: { db: Database; publish: Publish; metrics: Metrics }) {}

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
      this.deps.metrics.jobFinished(status, row.queueType, row.startedAt, row.finishedAt);
      // Ended by the workflow while an agent holds it (cancelled while being claimed, timed out):
      // make sure the agent stops too. Harmless if the agent already finished it.
      if (row.agentId && (status === 'cancelled' || status === 'timed_out')) {
        await this.deps.publish('agent_cancel', { jobId, agentId: row.agentId, attempt: row.attempt, reason: details.reason ?? status, graceMs: row.timeouts.cancelGraceMs });
      }
      return;
    }
    const current = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!current) throw new NotFoundError(`Job ${jobId}`);
    // Already finished: a repeated activity, nothing to do.
    if (!isTerminalStatus(current.status)) throw new ConflictError(`Job ${jobId} could not move from ${current.status} to ${status}`);
  }

  /**
   * A cancel that reached the workflow before any claim did: the job ends cancelled only if it is
   * still queued, in one conditional update, so a dispatcher that claimed it meanwhile wins and its
   * claim is returned (the run is then stopped like any running one, and the job is not shown
   * cancelled while its command may still run).
   */
  async cancelIfQueued(jobId: string, reason: string | null): Promise<JobClaim | null> {
    const ended = await jobsRepo.transition(
      this.deps.db,
      jobId,
      ['queued'],
      'cancelled',
      { finishedAt: new Date(), failureReason: reason, claimTaskToken: null, executeTaskToken: null },
      { type: 'cancelled', detail: reason },
    );
    if (ended) {
      this.deps.metrics.jobFinished('cancelled', ended.queueType, null, ended.finishedAt);
      return null;
    }
    const job = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    if ((job.status === 'assigned' || job.status === 'running') && job.agentId) return { agentId: job.agentId, attempt: job.attempt };
    return null;
  }

  /**
   * Back to the queue. A lost agent's attempt stays counted; an attempt the agent declined before
   * starting (`declined`) keeps its number but is not counted against maxAttempts (workflows from
   * before run numbers take its number back instead: `uncount`). The log gets a line of the
   * server's saying where the attempt ended and why, and the agent, if it is still connected, is
   * told to drop the run (which frees its slot at once).
   */
  async requeue(jobId: string, reason: string, options: { uncount?: boolean; declined?: boolean } = {}): Promise<void> {
    const moved = await this.deps.db.transaction(async (tx) => {
      const before = await jobsRepo.findJobById(tx, jobId);
      const row = await jobsRepo.transition(
        tx,
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
          stopRequest: null,
          ...(options.uncount ? { attempt: sql`greatest(${jobs.attempt} - 1, 0)` } : {}),
          ...(options.declined ? { declinedAttempts: sql`${jobs.declinedAttempts} + 1` } : {}),
        },
        { type: 'requeued', detail: reason },
      );
      if (!row || !before) return undefined;
      const what = options.uncount || options.declined ? `attempt ${before.attempt} was not started` : `attempt ${before.attempt} ended without a result`;
      await logsRepo.appendServerLine(tx, jobId, before.attempt, `${what}: ${reason}; the job goes back to the queue`);
      return { row, before };
    });
    // A repeated activity finds the job queued already, or claimed again: nothing to announce.
    if (!moved) return;
    const { row, before } = moved;
    this.deps.metrics.jobRequeued(options.uncount || options.declined ? 'declined' : 'lost');
    if (before.agentId) await this.deps.publish('agent_drop', { jobId, agentId: before.agentId, attempt: before.attempt, reason: `the job went back to the queue: ${reason}` });
    // Announced again, for dispatchers on every replica.
    await this.deps.publish('job_queued', { orgId: row.orgId, jobId });
  }

  /**
   * How long until the agent holding this attempt has surely stopped it by itself under the lease
   * rule (see agent.proto): its lease, the run's cancel grace and the margin, counted from when it
   * was last heard or a gateway last started. 0 or less: the server may give the job to another
   * agent. Null when the attempt is no longer live with that agent (its report is on the row).
   */
  async leaseRemaining(input: LeaseQuery): Promise<number | null> {
    const lease = await agentsRepo.attemptLease(this.deps.db, input);
    if (!lease) return null;
    // An agent from before leases stops nothing by itself: the silence timeout alone decides.
    const leaseMs = lease.leaseMs ?? input.fallbackLeaseMs;
    const requeueAfterMs = lease.leaseMs === null ? leaseMs : leaseMs + lease.cancelGraceMs + (lease.leaseMarginMs ?? 0);
    return Math.ceil(requeueAfterMs - lease.silentMs);
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

  /**
   * Asks the agent running the attempt to stop it. Recorded on the job first, so an agent that
   * misses the notification (its gateway was down, or it was reconnecting) is told again when it
   * reconnects or next heartbeats; then announced to whichever replica holds the agent's stream.
   */
  async cancelOnAgent(input: { jobId: string; attempt: number; reason: string; graceMs: number }): Promise<void> {
    const job = await jobsRepo.recordStopRequest(this.deps.db, input.jobId, { attempt: input.attempt, reason: input.reason, graceMs: input.graceMs });
    if (!job?.agentId) return;
    await this.deps.publish('agent_cancel', { ...input, agentId: job.agentId });
  }
}
