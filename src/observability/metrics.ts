// The process's Prometheus metrics (served at /metrics by the API role): what an on-call engineer
// asks of the system. Counters and histograms are kept as the work happens and gauges read memory
// at scrape time, so a scrape costs no query. Label sets are bounded (statuses, queues, reasons:
// never ids). Each process counts what it did; Prometheus sums the replicas.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JobStatus, QueueType } from '../domain/job.js';

/** Seconds, from a fast claim to a job that waited a day. */
const WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400];
/** Seconds, from a command that fails at once to one that runs for hours. */
const RUN_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400];

export interface AgentCapacity {
  /** Agents with a welcomed stream on this process. */
  connected: number;
  /** Slots those agents have free for new jobs. */
  freeSlots: number;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly created: Counter<'queue'>;
  private readonly finished: Counter<'status' | 'queue'>;
  private readonly requeues: Counter<'reason'>;
  private readonly waited: Histogram<'queue'>;
  private readonly ran: Histogram<'status'>;
  private readonly logLines: Counter;
  private readonly logBytes: Counter;
  private readonly patchBytes: Counter;
  private readonly startsPending: Gauge;
  private readonly startFailures: Counter;
  private capacity: () => AgentCapacity = () => ({ connected: 0, freeSlots: 0 });

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.created = new Counter({ name: 'agent_jobs_jobs_created_total', help: 'Jobs submitted (a replayed Idempotency-Key not counted)', labelNames: ['queue'], registers });
    this.finished = new Counter({ name: 'agent_jobs_jobs_finished_total', help: 'Jobs that ended, by final status and queue', labelNames: ['status', 'queue'], registers });
    this.requeues = new Counter({
      name: 'agent_jobs_job_requeues_total',
      help: 'Runs that ended without a result and put their job back in the queue: lost (agent silent, gave back a started run, start deadline; the attempt counts) or declined (before starting; it does not)',
      labelNames: ['reason'],
      registers,
    });
    this.waited = new Histogram({ name: 'agent_jobs_job_queue_wait_seconds', help: 'From a job\'s creation to its first assignment to an agent', labelNames: ['queue'], buckets: WAIT_BUCKETS, registers });
    this.ran = new Histogram({ name: 'agent_jobs_job_run_seconds', help: 'From a run\'s start (JobStarted) to the job\'s end, by final status', labelNames: ['status'], buckets: RUN_BUCKETS, registers });
    this.logLines = new Counter({ name: 'agent_jobs_log_lines_stored_total', help: 'Log lines stored from agents (resent lines not counted)', registers });
    this.logBytes = new Counter({ name: 'agent_jobs_log_bytes_stored_total', help: 'UTF-16 code units of log text stored from agents', registers });
    this.patchBytes = new Counter({ name: 'agent_jobs_patch_bytes_stored_total', help: 'Bytes of changes\' patches stored from agents', registers });
    this.startsPending = new Gauge({ name: 'agent_jobs_workflow_starts_pending', help: 'Workflow starts and cancels stored and not yet delivered to Temporal (sampled every outbox sweep)', registers });
    this.startFailures = new Counter({ name: 'agent_jobs_workflow_start_failures_total', help: 'Deliveries to Temporal from the outbox that failed and will be retried', registers });
    const capacity = () => this.capacity();
    new Gauge({
      name: 'agent_jobs_agents_connected',
      help: 'Agents with a stream on this process',
      registers,
      collect() {
        this.set(capacity().connected);
      },
    });
    new Gauge({
      name: 'agent_jobs_agent_free_slots',
      help: 'Free job slots of the agents connected to this process (capacity less the runs they hold)',
      registers,
      collect() {
        this.set(capacity().freeSlots);
      },
    });
  }

  /** The gateway of this process says what its agents offer, when asked at scrape time. */
  observeAgents(capacity: () => AgentCapacity): void {
    this.capacity = capacity;
  }

  jobCreated(queue: QueueType): void {
    this.created.inc({ queue });
  }

  jobAssigned(queue: QueueType, createdAt: Date, assignedAt: Date | null, attempt: number): void {
    // The first assignment only: a requeued job's wait would count from its creation.
    if (attempt === 1 && assignedAt) this.waited.observe({ queue }, seconds(createdAt, assignedAt));
  }

  jobFinished(status: JobStatus, queue: QueueType, startedAt: Date | null, finishedAt: Date | null): void {
    this.finished.inc({ status, queue });
    if (startedAt && finishedAt) this.ran.observe({ status }, seconds(startedAt, finishedAt));
  }

  jobRequeued(reason: 'lost' | 'declined'): void {
    this.requeues.inc({ reason });
  }

  logStored(lines: number, textUnits: number): void {
    this.logLines.inc(lines);
    this.logBytes.inc(textUnits);
  }

  patchStored(bytes: number): void {
    this.patchBytes.inc(bytes);
  }

  workflowStartsPending(count: number): void {
    this.startsPending.set(count);
  }

  workflowStartFailed(): void {
    this.startFailures.inc();
  }
}

function seconds(from: Date, to: Date): number {
  return Math.max(0, (to.getTime() - from.getTime()) / 1000);
}
