// What people do with jobs: submit, list, look at, cancel. The job's life after submission belongs
// to its workflow; this service only starts it and passes on cancellation requests.
import { sql } from 'drizzle-orm';
import type { Database, Executor } from '../db/client.js';
import * as changesRepo from '../db/changes.repository.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as reposRepo from '../db/repositories.repository.js';
import * as outbox from '../db/workflow-starts.repository.js';
import { isTerminalStatus, type JobEventRow, type JobRow, type JobStatus, type QueueType, type RunChangeRow } from '../db/schema/index.js';
import { ConflictError, InvalidArgumentError, NotFoundError, ResourceExhaustedError } from '../errors.js';
import { toJobChange, type JobChange } from '../domain/change.js';
import type { JobTimeouts } from '../domain/job.js';
import type { Metrics } from '../observability/metrics.js';
import { activeTraceContext } from '../observability/tracing.js';
import { requireOrgRole, type Caller } from './access.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { fingerprint, revive, type IdempotencyKeys, type KeyedRequest, type Submitted } from './idempotency.js';
import type { Publish } from './notifications.js';
import type { JobWorkflows } from './workflow-ports.js';

/** The job as callers see it: the row without the workflow's bookkeeping. */
export type Job = Omit<JobRow, 'claimTaskToken' | 'executeTaskToken' | 'reportedOutcome' | 'stopRequest' | 'declinedAttempts' | 'logSeqBase' | 'eventSeq' | 'timeouts' | 'traceContext'> & {
  cancelGraceSeconds: number;
  /** What it changed, once it succeeded with a change (openapi.yaml, JobChange). */
  change: JobChange | null;
};
export type JobEvent = JobEventRow;

export interface SubmitJobInput {
  prompt: string;
  repoId: string;
  queueType: QueueType;
  parentJobId?: string | undefined;
  labels?: string[] | undefined;
  /** openapi.yaml states the default, which request validation fills in: it is stated nowhere else. */
  maxAttempts: number;
  cancelGraceSeconds?: number | undefined;
}

export interface ListJobsInput {
  statuses?: JobStatus[] | undefined;
  queueType?: QueueType | undefined;
  repoId?: string | undefined;
  parentJobId?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

export interface JobsServiceDeps {
  db: Database;
  publish: Publish;
  /** Asks the outbox starter to start what was just committed (it also sweeps on its own). */
  kickStarter: () => void;
  workflows: JobWorkflows;
  timeouts: JobTimeouts;
  maxQueuedPerOrg: number;
  idempotency: IdempotencyKeys;
  metrics: Metrics;
}

/** JobDetail.revisions lists this many; listJobs with parentJobId pages through the rest. */
const MAX_LISTED_REVISIONS = 100;

const JOB_DATES = ['createdAt', 'updatedAt', 'assignedAt', 'startedAt', 'finishedAt', 'cancelRequestedAt'] as const satisfies readonly (keyof Job)[];

export function toJob(row: JobRow, change: RunChangeRow | undefined = undefined): Job {
  const { claimTaskToken: _claim, executeTaskToken: _execute, reportedOutcome: _outcome, stopRequest: _stop, declinedAttempts: _declined, logSeqBase: _base, eventSeq: _events, traceContext: _trace, timeouts, ...job } = row;
  // Only the run the job succeeded with has the job's change; other runs' changes are history.
  const own = row.status === 'succeeded' && change?.attempt === row.attempt ? change : undefined;
  return { ...job, cancelGraceSeconds: Math.round(timeouts.cancelGraceMs / 1000), change: own ? toJobChange(own) : null };
}

/** The changes of the succeeded jobs among these rows, by job id. */
export function changesOf(db: Database, rows: readonly JobRow[]): Promise<Map<string, RunChangeRow>> {
  return changesRepo.findChanges(db, rows.filter((row) => row.status === 'succeeded').map((row) => ({ jobId: row.id, attempt: row.attempt })));
}

export class JobsService {
  constructor(private readonly deps: JobsServiceDeps) {}

  /**
   * Queues a job. With an `idempotencyKey`, a request the key already answered is answered the same
   * (the job as it was created) without a second job, and one more insert in the job's transaction
   * stores this request's answer.
   */
  async submit(caller: Caller, orgId: string, input: SubmitJobInput, idempotencyKey?: string): Promise<Submitted<Job>> {
    requireOrgRole(caller, orgId, 'Member');
    const { db } = this.deps;
    const keyed: KeyedRequest | undefined = idempotencyKey === undefined ? undefined : { scope: { orgId, operation: 'createJob', key: idempotencyKey }, fingerprint: fingerprint(input) };
    const { repositoryLive, queued, answered } = await jobsRepo.submissionCheck(db, orgId, input.repoId, keyed?.scope);
    const decode = (json: Record<string, unknown>) => revive<Job>(json, JOB_DATES);
    const submitted = await this.deps.idempotency.once<Job>(keyed, decode, async (remember) => {
      if (!repositoryLive) throw new NotFoundError(`Repository ${input.repoId}`);
      const parent = await this.checkParent(orgId, input);
      if (queued >= this.deps.maxQueuedPerOrg) {
        throw new ResourceExhaustedError(`The organisation already has ${queued} queued jobs (limit ${this.deps.maxQueuedPerOrg})`, 30);
      }
      const timeouts: JobTimeouts = { ...this.deps.timeouts, ...(input.cancelGraceSeconds ? { cancelGraceMs: input.cancelGraceSeconds * 1000 } : {}) };
      return db.transaction(async (tx) => {
        // Holds the repository until the job is stored, so a concurrent delete either sees this job
        // (and refuses) or has already hidden the repository (and this submission is refused).
        if (!(await reposRepo.lockRepository(tx, orgId, input.repoId, 'share'))) throw new NotFoundError(`Repository ${input.repoId}`);
        if (input.queueType === 'rework' && input.parentJobId) await this.checkNotContinued(tx, orgId, input.parentJobId);
        // With its workflow-start outbox row: a committed job always gets its workflow, even if this process dies now.
        const job = toJob(
          await jobsRepo.insertJob(tx, {
            orgId,
            repoId: input.repoId,
            queueType: input.queueType,
            prompt: input.prompt,
            parentJobId: input.parentJobId ?? null,
            // The agents that can run the parent's job can continue its change.
            labels: input.labels ?? parent?.labels ?? [],
            maxAttempts: input.maxAttempts,
            timeouts,
            createdBy: caller.userId,
            // The request's span (when tracing): the job's whole life joins its trace.
            traceContext: activeTraceContext(),
          }),
        );
        await remember(tx, job);
        return job;
      });
    }, answered);
    if (submitted.replayed) return submitted;
    this.deps.metrics.jobCreated(submitted.resource.queueType);
    this.deps.kickStarter();
    // Dispatchers may assign it right away; its claim step completes at once when it finds it assigned.
    await this.deps.publish('job_queued', { orgId, jobId: submitted.resource.id });
    return submitted;
  }

  /** The parent a rework job may continue (see createJob in openapi.yaml); none for a backlog job. */
  private async checkParent(orgId: string, input: SubmitJobInput): Promise<JobRow | undefined> {
    const pointer = '/parentJobId';
    if (input.queueType === 'backlog') {
      if (input.parentJobId) throw new InvalidArgumentError('Only rework jobs name a parent job', [{ pointer, message: 'must be omitted for backlog jobs' }]);
      return undefined;
    }
    if (!input.parentJobId) throw new InvalidArgumentError('A rework job names the job it revises', [{ pointer, message: 'is required for rework jobs' }]);
    const parent = await jobsRepo.findJob(this.deps.db, orgId, input.parentJobId);
    if (!parent) throw new InvalidArgumentError('The parent job does not exist', [{ pointer, message: 'names no job of this organisation' }]);
    if (parent.repoId !== input.repoId) {
      throw new InvalidArgumentError('A rework job revises a job of the same repository', [{ pointer, message: 'belongs to another repository' }]);
    }
    // A rework continues the parent's change, so there must be one, on a branch others can reach.
    const refuse = (message: string) => new InvalidArgumentError('Only a job that succeeded with a change can be reworked', [{ pointer, message }]);
    if (!isTerminalStatus(parent.status)) throw refuse(`is still ${parent.status}`);
    if (parent.status !== 'succeeded') throw refuse(`${parent.status}: it has no change to continue`);
    const change = await changesRepo.findChange(this.deps.db, parent.id, parent.attempt);
    if (!change) throw refuse('succeeded without reporting a change (its agent reports none)');
    if (change.branch !== null && !change.pushed) throw refuse(`its change was not pushed (branch ${change.branch} is on its agent only)`);
    return parent;
  }

  /**
   * Two reworks of one change would both push onto its branch: the later one must build on the
   * earlier. Checked with the parent row locked, in the transaction that stores the rework, so two
   * racing submissions cannot both pass.
   */
  private async checkNotContinued(tx: Executor, orgId: string, parentJobId: string): Promise<void> {
    await jobsRepo.lockJob(tx, orgId, parentJobId);
    const [other] = await changesRepo.continuations(tx, parentJobId);
    if (other) {
      throw new InvalidArgumentError('Another job already continues the parent\'s change', [
        { pointer: '/parentJobId', message: `job ${other.id} (${other.status}) continues it; rework that one instead` },
      ]);
    }
  }

  async list(caller: Caller, orgId: string, input: ListJobsInput): Promise<{ items: Job[]; nextCursor: string | null }> {
    requireOrgRole(caller, orgId, 'Member');
    const before = input.cursor ? decodeCursor(input.cursor) : undefined;
    // One extra row tells whether another page exists without a count query.
    const rows = await jobsRepo.listJobs(this.deps.db, orgId, { statuses: input.statuses, queueType: input.queueType, repoId: input.repoId, parentJobId: input.parentJobId, before }, input.limit + 1);
    const page = rows.slice(0, input.limit);
    const last = page.at(-1);
    const changes = await changesOf(this.deps.db, page);
    return { items: page.map((row) => toJob(row, changes.get(row.id))), nextCursor: rows.length > input.limit && last ? encodeCursor(last) : null };
  }

  /** A job with its history and the first of its revisions (openapi.yaml, JobDetail). */
  async get(caller: Caller, orgId: string, jobId: string): Promise<{ job: Job; events: JobEvent[]; revisions: string[] }> {
    requireOrgRole(caller, orgId, 'Member');
    const row = await jobsRepo.findJob(this.deps.db, orgId, jobId);
    if (!row) throw new NotFoundError(`Job ${jobId}`);
    const [events, revisions, change] = await Promise.all([
      jobsRepo.listEvents(this.deps.db, jobId),
      jobsRepo.listRevisionIds(this.deps.db, jobId, MAX_LISTED_REVISIONS),
      row.status === 'succeeded' ? changesRepo.findChange(this.deps.db, jobId, row.attempt) : undefined,
    ]);
    return { job: toJob(row, change), events, revisions };
  }

  /**
   * The patch of the job's change, a chunk at a time (openapi.yaml, getJobDiff): empty when it
   * changed nothing; a conflict when the patch was over the server's limit and never sent.
   */
  async diff(caller: Caller, orgId: string, jobId: string): Promise<{ bytes: number; chunks: AsyncIterable<Uint8Array> }> {
    requireOrgRole(caller, orgId, 'Member');
    const row = await jobsRepo.findJob(this.deps.db, orgId, jobId);
    if (!row) throw new NotFoundError(`Job ${jobId}`);
    const change = row.status === 'succeeded' ? await changesRepo.findChange(this.deps.db, jobId, row.attempt) : undefined;
    if (!change) throw new NotFoundError(`The change of job ${jobId} (${row.status === 'succeeded' ? 'its agent reports no changes' : `it is ${row.status}`})`);
    if (change.patchSize > 0 && !change.patchStored) {
      throw new ConflictError(`The patch (${change.patchSize} bytes) was larger than the server keeps; branch ${change.branch ?? '(none)'} holds it`);
    }
    return { bytes: change.patchSize, chunks: changesRepo.readPatch(this.deps.db, jobId, row.attempt, change.patchSize) };
  }

  /**
   * Records the request, and in the same transaction a cancel in the workflow outbox, so a recorded
   * cancel always reaches the workflow (which ends a queued job at once and asks the agent to stop
   * a running one), even if Temporal is away or this process dies right after answering. Asking
   * again is harmless (the cancel is sent again); asking after the end is a conflict.
   */
  async cancel(caller: Caller, orgId: string, jobId: string, reason: string | undefined): Promise<Job> {
    requireOrgRole(caller, orgId, 'Member');
    const { db } = this.deps;
    const because = reason?.trim() || `cancelled by ${caller.email ?? caller.userId}`;
    const requested = await db.transaction(async (tx) => {
      const row = await jobsRepo.lockJob(tx, orgId, jobId);
      if (!row) throw new NotFoundError(`Job ${jobId}`);
      if (isTerminalStatus(row.status)) throw new ConflictError(`The job already finished (${row.status})`);
      // The first reason stands: the workflow keeps the first cancel it is sent.
      if (row.cancelRequestedAt) {
        await outbox.enqueueCancel(tx, jobId, because);
        return row;
      }
      // The database's clock, as for every other timestamp of the job and its events.
      const moved = await jobsRepo.transition(tx, jobId, [row.status], row.status, { cancelRequestedAt: sql`now()` }, { type: 'cancel_requested', detail: because });
      await outbox.enqueueCancel(tx, jobId, because);
      return moved;
    });
    if (!requested) throw new NotFoundError(`Job ${jobId}`);
    this.deps.kickStarter();
    return toJob(requested);
  }
}
