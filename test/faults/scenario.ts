// What every row does besides its fault: an organisation of its own, agents, a job printing numbered
// lines, watching it, a probe job afterwards (an idle agent must take new work: no stuck slot), and
// judging what was measured against what the row expects. Every wait is bounded by the row's
// deadline and reports a failure instead of throwing, so a failing row still shows what it saw.
import path from 'node:path';
import { startAgent, type Agent } from './agents.js';
import { createTenant, downloadLog, getJob, submitJob, terminalStatuses, type Tenant } from './client.js';
import { measureJob, type JobMeasures } from './measures.js';
import { JobWatch } from './observer.js';
import { sleep } from './processes.js';
import type { JobCommand, RunLedger } from './runs.js';
import { settings } from './settings.js';
import type { SystemUnderTest } from './system.js';
import { seconds } from './table.js';

export interface RowResult {
  id: string;
  fault: string;
  expected: string;
  observed: string;
  linesLost: number | undefined;
  linesDuplicated: number | undefined;
  concurrentRuns: number | undefined;
  finalState: string;
  attempts: string;
  recoveryMs: number | undefined;
  pass: boolean;
  failures: string[];
}

export interface Expectation {
  status: string;
  /** Attempts the job may end with. */
  attempts: readonly number[];
}

export interface Row {
  id: string;
  fault: string;
  expected: string;
  /** The row's own deadline, from its start. */
  deadlineMs: number;
  run(ctx: RowContext): Promise<RowResult>;
}

export interface Shared {
  sut: SystemUnderTest;
  command: JobCommand;
  ledger: RunLedger;
  cloneUrl: string;
  log: (line: string) => void;
}

export class RowContext {
  readonly deadline: number;
  /** Facts for the observed column, in order. */
  readonly notes: string[] = [];
  readonly failures: string[] = [];
  private readonly agents: Agent[] = [];
  private readonly watches: JobWatch[] = [];
  private readonly cleanups: (() => void | Promise<void>)[] = [];

  constructor(
    readonly row: Row,
    readonly shared: Shared,
  ) {
    this.deadline = Date.now() + row.deadlineMs;
  }

  get sut(): SystemUnderTest {
    return this.shared.sut;
  }

  note(fact: string): void {
    this.notes.push(fact);
  }

  fail(why: string): void {
    this.failures.push(why);
  }

  log(line: string): void {
    this.shared.log(`  [${this.row.id}] ${line}`);
  }

  onDispose(cleanup: () => void | Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  tenant(): Promise<Tenant> {
    return createTenant(this.sut, this.shared.cloneUrl, this.row.id);
  }

  async agent(tenant: Tenant, name: string, options: { capacity?: number; gateways?: string[] } = {}): Promise<Agent> {
    const agent = await startAgent({
      name: `${this.row.id}-${name}`,
      secret: tenant.agentSecret,
      exec: this.shared.command.exec,
      gateways: options.gateways ?? [this.sut.gatewayAddress('gateway')],
      dir: path.join(this.sut.scratch, 'agents'),
      ...(options.capacity ? { capacity: options.capacity } : {}),
    });
    this.agents.push(agent);
    return agent;
  }

  async submit(tenant: Tenant, lines: number): Promise<string> {
    return submitJob(tenant, this.shared.command.prompt(lines));
  }

  watch(tenant: Tenant, jobId: string): JobWatch {
    const watch = new JobWatch(tenant, jobId).start();
    this.watches.push(watch);
    return watch;
  }

  /** Waits until the job's command has printed line `n` (seen from its records, not the server). */
  async printed(jobId: string, n: number): Promise<boolean> {
    while (!this.shared.ledger.runsOf(jobId).some((run) => run.printed.has(n))) {
      if (Date.now() > this.deadline) {
        this.fail(`the job never printed line ${n} before the row's deadline`);
        return false;
      }
      await sleep(50);
    }
    return true;
  }

  /** Sleeps, but never past the row's deadline. */
  async hold(ms: number): Promise<void> {
    await sleep(Math.max(0, Math.min(ms, this.deadline - Date.now())));
  }

  /**
   * Waits for the job to end. Gives up early when, after `since` (the fault's end), the job sits
   * queued for settings.stuckQueuedMs with the row's agents up: that is a stuck slot, and waiting on
   * to the deadline would only make a failing suite slow.
   */
  async untilTerminal(watch: JobWatch, since = Date.now()): Promise<boolean> {
    while (watch.terminalAt === undefined) {
      const now = Date.now();
      if (now > this.deadline) {
        this.fail(`the job did not end before the row's deadline (last seen ${watch.status ?? 'nothing'})`);
        return false;
      }
      const current = watch.statuses.at(-1);
      if (current?.value.status === 'queued' && now - Math.max(current.at, since) > settings.stuckQueuedMs) {
        this.fail(`the job sat queued ${seconds(now - Math.max(current.at, since))} after the fault with the row's agents up (stuck slot)`);
        return false;
      }
      await sleep(100);
    }
    return true;
  }

  /**
   * A fresh job for the row's agents once the fault is over: it must leave the queue within the
   * sweep interval and a margin, or the row left a slot stuck (an idle agent the server thinks busy).
   */
  async probe(tenant: Tenant): Promise<void> {
    const submittedAt = Date.now();
    const jobId = await this.submit(tenant, 2);
    const watch = this.watch(tenant, jobId);
    const limit = Math.min(submittedAt + settings.probeDispatchMs, this.deadline);
    const taken = await watch.untilStatus(['assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'], limit);
    const firstTaken = watch.statuses.find((s) => s.value.status !== 'queued')?.at;
    if (taken && firstTaken !== undefined) this.note(`probe job taken in ${seconds(firstTaken - submittedAt)}`);
    else this.fail(`a new job stayed queued ${seconds(Date.now() - submittedAt)} with the row's agent idle (stuck slot)`);
  }

  /** Measures one job now: its runs, its downloaded log and its final state. */
  async measure(tenant: Tenant, watch: JobWatch): Promise<JobMeasures | undefined> {
    // Late lines of a run that just ended may still be on their way: let them land.
    await sleep(1_000);
    const job = await getJob(tenant, watch.jobId);
    if (!job) {
      this.fail('the API did not answer when the row measured the job');
      return undefined;
    }
    const stored = await downloadLog(tenant, watch.jobId).catch((err: Error) => {
      this.fail(`downloading the log failed: ${err.message}`);
      return undefined;
    });
    if (!stored) return undefined;
    const now = Date.now();
    const ledger = this.shared.ledger;
    return measureJob({
      runs: ledger.runsOf(watch.jobId),
      lastAlive: (run) => ledger.lastAlive(run, now),
      stored,
      finalStatus: job.status,
      finalAttempt: job.attempt,
      ended: terminalStatuses.has(job.status),
      terminalAt: watch.terminalAt,
    });
  }

  /** The row's verdict for one job: the invariants every row holds, plus the row's expected end state. */
  judge(expectation: Expectation, measures: JobMeasures | undefined, recoveryMs: number | undefined): RowResult {
    if (measures) {
      if (measures.finalStatus !== expectation.status) this.fail(`ended ${measures.finalStatus}, expected ${expectation.status}`);
      if (!expectation.attempts.includes(measures.attempts)) this.fail(`attempt ${measures.attempts}, expected ${expectation.attempts.join(' or ')}`);
      for (const failure of invariantFailures(measures)) this.fail(failure);
      this.note(`${measures.runs} run${measures.runs === 1 ? '' : 's'}`);
      if (measures.longestOverlapMs > 0) this.note(`runs overlapped ${seconds(measures.longestOverlapMs)}`);
    }
    return this.report({
      linesLost: measures?.linesLost,
      linesDuplicated: measures?.linesDuplicated,
      concurrentRuns: measures?.concurrentRuns,
      finalState: measures?.finalStatus ?? '?',
      attempts: measures ? String(measures.attempts) : '?',
      recoveryMs,
    });
  }

  /** The row's line in the table, failing if anything was noted as a failure. */
  report(figures: Pick<RowResult, 'linesLost' | 'linesDuplicated' | 'concurrentRuns' | 'finalState' | 'attempts' | 'recoveryMs'>): RowResult {
    return {
      id: this.row.id,
      fault: this.row.fault,
      expected: this.row.expected,
      observed: [...this.notes, ...this.failures.map((f) => `FAIL: ${f}`)].join('; '),
      ...figures,
      pass: this.failures.length === 0,
      failures: [...this.failures],
    };
  }

  async dispose(): Promise<void> {
    await Promise.all(this.watches.map((watch) => watch.stop()));
    for (const cleanup of this.cleanups.reverse()) await cleanup();
    await Promise.all(this.agents.map((agent) => agent.dispose()));
    // A killed agent's runs live in sessions of their own; none may outlive the row.
    const killed = this.shared.ledger.killLive();
    if (killed > 0) this.log(`killed ${killed} run(s) still alive at the end of the row`);
  }
}

/** The invariants of issue 9 that every row must show. */
export function invariantFailures(m: JobMeasures): string[] {
  const failures: string[] = [];
  if (m.linesLost > 0) failures.push(`${m.linesLost} line(s) lost`);
  if (m.linesDuplicated > 0) failures.push(`${m.linesDuplicated} line(s) stored twice`);
  if (m.concurrentRuns > 0) failures.push(`${m.concurrentRuns} runs of the job alive at once (for ${seconds(m.longestOverlapMs)})`);
  if (m.finishedRunsDiscarded > 0) failures.push(`${m.finishedRunsDiscarded} finished run(s) (exit 0) discarded`);
  if (m.ranAfterEndMs > 0) failures.push(`a run went on ${seconds(m.ranAfterEndMs)} after the job was shown ${m.finalStatus}`);
  if (m.unmarkedAttemptChanges > 0) failures.push(`${m.unmarkedAttemptChanges} attempt change(s) in the log with no server line naming the attempt`);
  if (m.interleavedAttempts > 0) failures.push(`${m.interleavedAttempts} line(s) of an earlier attempt stored after a later attempt's`);
  return failures;
}
