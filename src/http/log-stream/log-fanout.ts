// Every log viewer on this replica, grouped by job. Replicas learn of new lines and status changes
// through PostgreSQL LISTEN/NOTIFY (sent by triggers in the storing transaction, so the agent's
// stream may be held by any replica); a slow sweep re-reads the followed jobs in one query, so a
// notification lost while the listening connection was down costs latency, never lines.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { WebSocket } from 'ws';
import { LogStreamCloseCode } from '../../../generated/openapi/frames.js';
import type { DatabaseHandle } from '../../db/client.js';
import type { Caller } from '../../services/access.js';
import type { LogsService } from '../../services/logs.service.js';
import { channels, parseLogAppended, type JobChangedPayload } from '../../services/notifications.js';
import { JobTail } from './job-tail.js';
import { LogViewer, type ViewerSettings } from './viewer.js';

export interface LogFanoutSettings extends ViewerSettings {
  /** Lines read per query, for the backlog and the live tail alike. */
  pageLines: number;
  /** How often followed jobs are re-read in case a notification was lost. */
  sweepIntervalMs: number;
  /** How often each viewer is pinged; one unanswered ping drops it. */
  pingIntervalMs: number;
}

export class LogFanout {
  private readonly tails = new Map<string, JobTail>();
  private readonly viewers = new Set<LogViewer>();
  private unsubscribe: (() => Promise<void>)[] = [];
  private timers: NodeJS.Timeout[] = [];
  private readonly tooSlow: Counter;

  constructor(
    private readonly deps: { logs: LogsService; database: Pick<DatabaseHandle, 'listen'>; log: Logger; metrics: Registry },
    private readonly settings: LogFanoutSettings,
  ) {
    const viewers = this.viewers;
    new Gauge({
      name: 'log_stream_viewers',
      help: 'WebSocket log viewers connected to this replica',
      registers: [deps.metrics],
      collect() {
        this.set(viewers.size);
      },
    });
    this.tooSlow = new Counter({ name: 'log_stream_too_slow_total', help: 'Log viewers closed because they did not keep up', registers: [deps.metrics] });
  }

  async start(): Promise<void> {
    const { database, log } = this.deps;
    this.unsubscribe.push(
      await database.listen(channels.logAppended, (payload) => {
        const appended = parseLogAppended(payload);
        if (appended) this.tails.get(appended.jobId)?.appended(appended.lastSeq);
      }),
      await database.listen(channels.jobChanged, (payload) => {
        try {
          this.tails.get((JSON.parse(payload) as JobChangedPayload).jobId)?.changed();
        } catch (err) {
          log.warn({ err, payload }, 'bad job_changed notification');
        }
      }),
    );
    this.timers.push(
      setInterval(() => void this.sweep(), this.settings.sweepIntervalMs).unref(),
      setInterval(() => this.pingViewers(), this.settings.pingIntervalMs).unref(),
    );
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  /**
   * Streams the job's log to this socket from `after`: checks the caller may read it (throwing
   * the service's error otherwise), then the backlog, the live tail and the end frame.
   */
  async follow(socket: WebSocket, caller: Caller, orgId: string, jobId: string, after: number): Promise<void> {
    const state = await this.deps.logs.follow(caller, orgId, jobId);
    const viewer = new LogViewer(jobId, after, socket, this.settings);
    this.viewers.add(viewer);
    viewer.onClosed(() => {
      this.viewers.delete(viewer);
      if (viewer.closedWith === LogStreamCloseCode.TooSlow) this.tooSlow.inc();
    });
    let tail = this.tails.get(jobId);
    if (!tail) {
      tail = new JobTail(jobId, this.deps.logs, this.settings.pageLines, this.deps.log, (empty) => {
        if (this.tails.get(empty.jobId) === empty) this.tails.delete(empty.jobId);
      });
      this.tails.set(jobId, tail);
    }
    await tail.attach(viewer, state);
  }

  /** Shutdown: every viewer is told to reconnect (to another replica) with its `after`. */
  async stop(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await Promise.all(this.unsubscribe.splice(0).map((unsubscribe) => unsubscribe().catch(() => {})));
    for (const viewer of this.viewers) viewer.close(LogStreamCloseCode.GoingAway, `server going away; reconnect with after=${viewer.cursor}`);
  }

  private async sweep(): Promise<void> {
    const jobIds = [...this.tails.keys()];
    if (jobIds.length === 0) return;
    try {
      const states = new Map((await this.deps.logs.states(jobIds)).map((state) => [state.jobId, state]));
      for (const jobId of jobIds) {
        const state = states.get(jobId);
        if (state) this.tails.get(jobId)?.reconcile(state);
        else this.tails.get(jobId)?.vanished();
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'log stream sweep failed');
    }
  }

  private pingViewers(): void {
    for (const viewer of this.viewers) if (!viewer.ping()) viewer.terminate();
  }
}
