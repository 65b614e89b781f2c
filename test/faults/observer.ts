// Watches one job from outside while a row runs: polls its status and its stored log and notes when
// each change was first seen, by the suite's clock. Everything here is what a user polling the API
// would see; when the API is down the watch simply sees nothing until it is back.
import { getJob, logPage, terminalStatuses, type Tenant } from './client.js';
import { sleep } from './processes.js';
import { settings } from './settings.js';

export interface Sighting<T> {
  at: number;
  value: T;
}

export class JobWatch {
  /** Each status (with its attempt) when first seen, in order. */
  readonly statuses: Sighting<{ status: string; attempt: number }>[] = [];
  /** The highest stored seq each time it grew, when first seen. */
  readonly progress: Sighting<number>[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    readonly tenant: Tenant,
    readonly jobId: string,
  ) {}

  start(): this {
    this.loop = this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  get status(): string | undefined {
    return this.statuses.at(-1)?.value.status;
  }

  get lastSeq(): number {
    return this.progress.at(-1)?.value ?? 0;
  }

  /** When the job was first seen in a terminal state. */
  get terminalAt(): number | undefined {
    return this.statuses.find((s) => terminalStatuses.has(s.value.status))?.at;
  }

  /** When the job was first seen in `status` (at or after `since`). */
  seenAt(status: string, since = 0): number | undefined {
    return this.statuses.find((s) => s.value.status === status && s.at >= since)?.at;
  }

  /**
   * Time from `since` (the end of a fault) until the job was next seen moving: a stored line newer
   * than any seen by then, or a terminal status. 0 when the job had already ended by then (it got
   * through the fault by itself); undefined when it has not moved since.
   */
  progressAfter(since: number): number | undefined {
    const terminalAt = this.terminalAt;
    if (terminalAt !== undefined && terminalAt <= since) return 0;
    const seqAtSince = [...this.progress].reverse().find((p) => p.at <= since)?.value ?? 0;
    const line = this.progress.find((p) => p.at > since && p.value > seqAtSince)?.at;
    const first = [line, terminalAt].filter((t): t is number => t !== undefined);
    return first.length > 0 ? Math.min(...first) - since : undefined;
  }

  /** The longest time between two sightings of new stored lines within [from, to]. */
  longestStall(from: number, to: number): number {
    const points = [from, ...this.progress.filter((p) => p.at > from && p.at < to).map((p) => p.at), to];
    let longest = 0;
    for (let i = 1; i < points.length; i++) longest = Math.max(longest, points[i]! - points[i - 1]!);
    return longest;
  }

  /** Waits until the job is seen terminal; false at the deadline. */
  async untilTerminal(deadline: number): Promise<boolean> {
    while (this.terminalAt === undefined) {
      if (Date.now() > deadline || this.stopped) return false;
      await sleep(50);
    }
    return true;
  }

  async untilStatus(statuses: readonly string[], deadline: number): Promise<boolean> {
    while (!statuses.includes(this.status ?? '')) {
      if (Date.now() > deadline || this.stopped) return false;
      await sleep(50);
    }
    return true;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.poll();
      await sleep(settings.pollIntervalMs);
    }
  }

  private async poll(): Promise<void> {
    const job = await getJob(this.tenant, this.jobId);
    const at = Date.now();
    if (job) {
      const last = this.statuses.at(-1)?.value;
      if (!last || last.status !== job.status || last.attempt !== job.attempt) this.statuses.push({ at, value: { status: job.status, attempt: job.attempt } });
    }
    // Pages until the end, so a burst of lines is seen at once rather than a page a poll.
    for (;;) {
      const page = await logPage(this.tenant, this.jobId, this.lastSeq);
      const last = page?.items.at(-1)?.seq;
      if (last === undefined || last <= this.lastSeq) return;
      this.progress.push({ at: Date.now(), value: last });
    }
  }
}
