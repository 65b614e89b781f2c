// Delivers the workflow outbox off the request path: a create (or a cancel) answers once the job and
// its outbox row are committed, and this starter (on any replica) starts the workflow (or signals
// the cancel) right after, retrying with backoff while Temporal is unreachable.
import type { Database } from '../db/client.js';
import { context } from '@opentelemetry/api';
import type { Metrics } from '../observability/metrics.js';
import { jobTraceParent } from '../observability/tracing.js';
import * as outbox from '../db/workflow-starts.repository.js';
import type { JobWorkflows } from './workflow-ports.js';

export interface WorkflowStarterOptions {
  /** Starts leased at once: Temporal starts are a round trip each, so a few run in parallel. */
  batchSize: number;
  /** How long a leased start is hidden from other starters (a starter that died is retried after it). */
  leaseMs: number;
  /** How often to look for starts nobody kicked (crash recovery, other replicas' leftovers). */
  sweepIntervalMs: number;
}

export class WorkflowStarter {
  private draining: Promise<void> | undefined;
  private again = false;
  private sweep: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly deps: { db: Database; workflows: JobWorkflows; log: (msg: string, err?: unknown) => void; metrics: Metrics },
    private readonly options: WorkflowStarterOptions,
  ) {}

  start(): void {
    this.sweep = setInterval(() => {
      this.kick();
      // Sampled once a sweep, not at every scrape: the outbox is small unless Temporal is away.
      outbox.countPending(this.deps.db).then(
        (pending) => this.deps.metrics.workflowStartsPending(pending),
        () => undefined,
      );
    }, this.options.sweepIntervalMs);
    this.sweep.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweep);
    await this.draining;
  }

  /** Starts what is due now; concurrent kicks fold into one more pass. */
  kick(): void {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain()
      .catch((err: unknown) => this.deps.log('workflow starter pass failed', err))
      .finally(() => {
        this.draining = undefined;
        if (this.again && !this.stopped) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async drain(): Promise<void> {
    for (;;) {
      const leased = await outbox.leaseDueStarts(this.deps.db, this.options.batchSize, this.options.leaseMs);
      if (leased.length === 0) return;
      await Promise.all(
        leased.map(async (job) => {
          const input = { jobId: job.id, maxAttempts: job.maxAttempts, timeouts: job.timeouts };
          try {
            // In the job's trace, from whichever process and however long after the request: the
            // client's tracing interceptor (when on) makes the start's span there and hands it to the workflow.
            await context.with(jobTraceParent(job.traceContext), async () => {
              // A cancel to a workflow that already ended has nothing left to stop: delivered all the same.
              if (job.cancelReason !== null) await this.deps.workflows.requestCancel(input, job.cancelReason);
              else await this.deps.workflows.start(input);
            });
            await outbox.completeWorkflowStart(this.deps.db, job);
          } catch (err) {
            this.deps.metrics.workflowStartFailed();
            this.deps.log(`could not ${job.cancelReason !== null ? 'deliver the cancel to' : 'start'} the workflow of job ${job.id}; will retry`, err);
            await outbox.deferWorkflowStart(this.deps.db, job.id, err instanceof Error ? err.message : String(err), 2000);
          }
        }),
      );
      if (this.stopped) return;
    }
  }
}
