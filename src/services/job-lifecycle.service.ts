// The job's state changes as its workflow drives them (through activities) and as agents report
// them (through the gateway). Each method is idempotent: Temporal may run an activity twice.
import type { Database } from '../db/client.js';
import * as jobsRepo from '../db/jobs.repository.js';
import { terminalJobStatuses, type JobStatus, type TerminalJobStatus } from '../db/schema/index.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { channels, type AgentCancelPayload, type JobChangedPayload, type JobQueuedPayload, type Notify } from './notifications.js';

const unfinished: JobStatus[] = ['queued', 'assigned', 'running'];
const isTerminal = (status: JobStatus) => (terminalJobStatuses as readonly JobStatus[]).includes(status);

export class JobLifecycleService {
  constructor(private readonly deps: { db: Database; notify: Notify }) {}

  /** The workflow waits for an agent: record its claim task token so a dispatcher can complete it. */
  async awaitClaim(jobId: string, taskToken: string): Promise<void> {
    const row = await this.deps.db.transaction(async (tx) => {
      const job = await jobsRepo.findJobById(tx, jobId);
      if (!job) throw new NotFoundError(`Job ${jobId}`);
      if (job.status !== 'queued') throw new ConflictError(`Job ${jobId} is ${job.status}, not queued`);
      await jobsRepo.setPendingActivityToken(tx, jobId, taskToken);
      return job;
    });
    await this.publish<JobQueuedPayload>(channels.jobQueued, { orgId: row.orgId, jobId });
  }

  async finish(jobId: string, status: TerminalJobStatus, details: { exitCode?: number | null; reason?: string | null }): Promise<void> {
    const row = await this.deps.db.transaction((tx) =>
      jobsRepo.transition(
        tx,
        jobId,
        unfinished,
        status,
        { finishedAt: new Date(), exitCode: details.exitCode ?? null, failureReason: details.reason ?? null, pendingActivityToken: null },
        { type: status, detail: details.reason ?? null },
      ),
    );
    if (row) {
      await this.publish<JobChangedPayload>(channels.jobChanged, { jobId, status });
      return;
    }
    const current = await jobsRepo.findJobById(this.deps.db, jobId);
    if (!current) throw new NotFoundError(`Job ${jobId}`);
    // Already finished: a repeated activity, nothing to do.
    if (!isTerminal(current.status)) throw new ConflictError(`Job ${jobId} could not move from ${current.status} to ${status}`);
  }

  /** The agent was lost: back to the queue; the attempt already counted stays counted. */
  async requeue(jobId: string, reason: string): Promise<void> {
    const row = await this.deps.db.transaction((tx) =>
      jobsRepo.transition(tx, jobId, ['assigned', 'running'], 'queued', { agentId: null, assignedAt: null, startedAt: null, pendingActivityToken: null }, { type: 'requeued', detail: reason }),
    );
    if (row) await this.publish<JobChangedPayload>(channels.jobChanged, { jobId, status: 'queued' });
  }

  /** Asks whichever replica holds the agent's stream to send it a cancel. */
  async cancelOnAgent(input: { jobId: string; attempt: number; reason: string; graceMs: number }): Promise<void> {
    const job = await jobsRepo.findJobById(this.deps.db, input.jobId);
    if (!job?.agentId || isTerminal(job.status)) return;
    await this.publish<AgentCancelPayload>(channels.agentCancel, { ...input, agentId: job.agentId });
  }

  /** The workflow waits for the agent to finish the job: record the execute task token. */
  async awaitExecution(jobId: string, taskToken: string): Promise<void> {
    await this.deps.db.transaction(async (tx) => {
      const job = await jobsRepo.findJobById(tx, jobId);
      if (!job) throw new NotFoundError(`Job ${jobId}`);
      if (job.status !== 'assigned' && job.status !== 'running') throw new ConflictError(`Job ${jobId} is ${job.status}, not assigned`);
      await jobsRepo.setPendingActivityToken(tx, jobId, taskToken);
    });
  }

  private async publish<T>(channel: string, payload: T): Promise<void> {
    await this.deps.notify(channel, JSON.stringify(payload));
  }
}
