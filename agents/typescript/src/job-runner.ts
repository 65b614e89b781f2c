// One run of one job on this machine: a fresh folder, a shallow clone, the configured command in
// its own process group, its output line by line into the job's log, and an outcome. It knows
// nothing of the stream: the agent feeds it cancellations and reads its result.
import path from 'node:path';
import { JobOutcome, JobQueue, LogStream, type JobAssignment, type Repository } from '../generated/agent/v1/agent.js';
import { agentLog } from './agent-log.js';
import { durationToMs, formatMs } from './durations.js';
import { OutputCapture, type JobLogSink } from './output-capture.js';
import { ProcessGroup, type ProcessExit, type StopResult } from './process-group.js';
import type { RunRecords } from './run-records.js';
import { cloneArgs, prepareRunFolder, redactUrl, removeRunFolder, repoDirOf, runFolderName } from './workspace.js';

export interface JobRunContext {
  /** The shell command run for every job. */
  command: string;
  workRoot: string;
  /** The agent's environment, passed on to the job without the agent's own secrets. */
  agentEnv: NodeJS.ProcessEnv;
  records: RunRecords;
}

export interface RunResult {
  outcome: JobOutcome;
  exitCode: number | undefined;
  failureReason: string;
  finishedAt: Date;
  /**
   * Set when the run was stopped to give the job back (the agent is shutting down): the run did not
   * finish, so the agent reports a JobRejected with this reason, not a JobFinished with the outcome.
   */
  givenBack?: string;
}

type StopCause = { kind: 'cancel'; reason: string } | { kind: 'give-back'; reason: string } | { kind: 'backstop'; runTimeoutMs: number } | { kind: 'abandon' };

/**
 * The server owns the run timeout and enforces it with a CancelJob. The agent's own timer fires
 * this much later, so it only acts when the server could not reach it in time.
 */
const RUN_TIMEOUT_BACKSTOP_MARGIN_MS = 60_000;
/** Used when neither the assignment nor the CancelJob says how long to wait before SIGKILL. */
export const DEFAULT_CANCEL_GRACE_MS = 10_000;
/** How long an output pipe may stay open and silent after the whole process group is gone. */
const ESCAPED_WRITER_CHECK_MS = 5_000;
/** Variables of the agent that the job must not see. */
const AGENT_SECRETS = ['AGENT_TOKEN'];

interface StepOutcome {
  spawnError?: Error;
  exit?: ProcessExit;
  stop?: StopResult;
}

export class JobRun {
  private stopCause: StopCause | undefined;
  private stopGraceMs = 0;
  private active: ProcessGroup | undefined;
  private captures: OutputCapture[] = [];
  private backstopTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly assignment: JobAssignment,
    private readonly context: JobRunContext,
    private readonly sink: JobLogSink,
    private readonly onStarted: (startedAt: Date) => void,
  ) {}

  /** Runs the job; resolves once it is over, every output line appended and its folder removed. */
  start(): Promise<RunResult> {
    return this.execute().catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      this.system(`agent error: ${message}`);
      return result(JobOutcome.JOB_OUTCOME_FAILED, undefined, `agent error: ${message}`);
    });
  }

  /** The run's grace from its assignment, for stops that do not name one. */
  get cancelGraceMs(): number {
    return durationToMs(this.assignment.cancelGrace) ?? DEFAULT_CANCEL_GRACE_MS;
  }

  /** Asks the run to stop: SIGTERM to its process group, SIGKILL after graceMs. Repeats are ignored. */
  cancel(reason: string, graceMs: number): void {
    if (this.stopCause) return;
    this.stopCause = { kind: 'cancel', reason };
    this.stopGraceMs = graceMs;
    this.system(`cancel requested: ${reason}; sending SIGTERM, then SIGKILL after ${formatMs(graceMs)}`);
    void this.active?.stop(graceMs);
  }

  /**
   * Stops the run as cancel() does, but so that the job can be given back rather than finished:
   * the result carries givenBack. Ignored when the run is already being stopped.
   */
  giveBack(reason: string, graceMs: number): void {
    if (this.stopCause) return;
    this.stopCause = { kind: 'give-back', reason };
    this.stopGraceMs = graceMs;
    this.system(`${reason}: stopping the run to give the job back; sending SIGTERM, then SIGKILL after ${formatMs(graceMs)}`);
    void this.active?.stop(graceMs);
  }

  /** Kills the run at once and stops reading its output: the server has given it to someone else. */
  abandon(): void {
    this.stopCause = { kind: 'abandon' };
    this.stopGraceMs = 0;
    this.active?.killNow();
    for (const capture of this.captures) capture.abandon();
  }

  private async execute(): Promise<RunResult> {
    const { jobId, attempt } = this.assignment;
    const folderName = runFolderName(jobId, attempt);
    if (!folderName) return this.fail(`job id ${JSON.stringify(jobId)} cannot be used as a folder name`);
    const folder = path.join(this.context.workRoot, folderName);
    try {
      this.system(`preparing ${folder}`);
      await prepareRunFolder(folder);
      const repository = this.assignment.repository;
      if (!repository?.cloneUrl) return this.fail('the assignment names no repository to clone');
      if (this.stopCause) return this.stoppedBeforeStart();

      const cloneFailure = await this.clone(repository, folder);
      if (cloneFailure) return cloneFailure;
      if (this.stopCause) return this.stoppedBeforeStart();

      return await this.runCommand(repository, repoDirOf(folder));
    } finally {
      await removeRunFolder(folder).catch((err: unknown) => agentLog.warn('could not remove a run folder', { folder, error: String(err) }));
    }
  }

  /** Undefined when the clone succeeded; otherwise how the run ended. */
  private async clone(repository: Repository, folder: string): Promise<RunResult | undefined> {
    const args = cloneArgs(repository, repoDirOf(folder));
    this.system(`$ git ${args.map((arg) => (arg === repository.cloneUrl ? redactUrl(arg) : arg)).join(' ')}`);
    // git says what went wrong in its first "fatal:" line (later ones are generic advice); keep
    // it, or else its last line, for failure_reason.
    let firstFatal = '';
    let lastLine = '';
    const sink = this.sink;
    const gitSink: JobLogSink = {
      append(stream, text) {
        if (text.trim()) lastLine = text.trim();
        if (text.startsWith('fatal:') && !firstFatal) firstFatal = text.trim();
        sink.append(stream, text);
      },
      get isFull() {
        return sink.isFull;
      },
      whenRoom: () => sink.whenRoom(),
    };
    const env = { ...this.jobEnv(repository, repoDirOf(folder)), GIT_TERMINAL_PROMPT: '0' };
    const step = await this.runStep('git', args, folder, env, gitSink, [LogStream.LOG_STREAM_SYSTEM, LogStream.LOG_STREAM_SYSTEM]);

    if (step.spawnError) return this.fail(`clone failed: could not run git: ${step.spawnError.message}`);
    if (this.stopCause) return this.stoppedBeforeStart();
    if (step.exit?.code !== 0) {
      const detail = firstFatal || lastLine || describeExit(step.exit);
      return this.fail(`clone failed: ${detail}`);
    }
    return undefined;
  }

  private async runCommand(repository: Repository, repoDir: string): Promise<RunResult> {
    this.system(`$ /bin/sh -c ${JSON.stringify(this.context.command)}`);
    const step = await this.runStep('/bin/sh', ['-c', this.context.command], repoDir, this.jobEnv(repository, repoDir), this.sink, [LogStream.LOG_STREAM_STDOUT, LogStream.LOG_STREAM_STDERR], () => {
      this.onStarted(new Date());
      this.armBackstop();
    });
    clearTimeout(this.backstopTimer);

    if (step.spawnError) return this.fail(`could not start the command: ${step.spawnError.message}`);
    const exit = step.exit!;
    const exitCode = exit.code ?? undefined;
    const killedNote = step.stop === 'killed' ? ` (still running ${formatMs(this.stopGraceMs)} after SIGTERM: killed with SIGKILL)` : '';
    switch (this.stopCause?.kind) {
      case 'cancel': {
        const reason = `cancelled: ${this.stopCause.reason}${killedNote}`;
        this.system(`${describeExit(exit)}; ${reason}`);
        return result(JobOutcome.JOB_OUTCOME_CANCELLED, exitCode, reason);
      }
      case 'give-back':
        this.system(`${describeExit(exit)}; stopped${killedNote}: the job goes back to the server (${this.stopCause.reason})`);
        return { ...result(JobOutcome.JOB_OUTCOME_UNSPECIFIED, exitCode, this.stopCause.reason), givenBack: this.stopCause.reason };
      case 'backstop': {
        const reason = `run timeout: the agent stopped the run ${formatMs(this.stopCause.runTimeoutMs)} after it started, the server having sent no cancel${killedNote}`;
        this.system(`${describeExit(exit)}; ${reason}`);
        return result(JobOutcome.JOB_OUTCOME_FAILED, exitCode, reason);
      }
      case 'abandon':
        return result(JobOutcome.JOB_OUTCOME_FAILED, exitCode, 'abandoned: the server no longer assigns this run to the agent');
      case undefined:
        break;
    }
    this.system(describeExit(exit));
    if (exit.code === 0) return result(JobOutcome.JOB_OUTCOME_SUCCEEDED, 0, '');
    return result(JobOutcome.JOB_OUTCOME_FAILED, exitCode, describeExit(exit));
  }

  /**
   * Runs one process group to the end: its output into the log, its pid on disk while it lives,
   * stragglers stopped once the leader is gone (a finished job's background processes do not get
   * to outlive it), then every line of output read.
   */
  private async runStep(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, sink: JobLogSink, streams: [LogStream, LogStream], onSpawn?: () => void): Promise<StepOutcome> {
    const group = new ProcessGroup(file, args, { cwd, env });
    const captures = [new OutputCapture(group.stdout, streams[0], sink), new OutputCapture(group.stderr, streams[1], sink)];
    this.active = group;
    this.captures = captures;
    const spawned = await group.spawned;
    if (!spawned.ok) {
      for (const capture of captures) capture.abandon();
      return { spawnError: spawned.error };
    }
    const runKey = `${this.assignment.jobId}-${this.assignment.attempt}`;
    await this.context.records.record(runKey, { pgid: group.pgid!, jobId: this.assignment.jobId }).catch((err: unknown) => agentLog.warn('could not record a running process group', { error: String(err) }));
    onSpawn?.();
    // A cancel that arrived while the process was being spawned had nothing to signal yet.
    if (this.stopCause) void group.stop(this.stopGraceMs);

    const exit = await group.exited;
    const stop = this.stopCause || (await group.isAlive()) ? await group.stop(this.stopCause ? this.stopGraceMs : this.cancelGraceMs) : undefined;
    await this.context.records.remove(runKey).catch(() => undefined);
    await this.readToEnd(captures);
    return { exit, stop };
  }

  /**
   * Waits for both pipes to end. A process that left the group (setsid) but kept a pipe open would
   * hold them forever, so a pipe that stays silent, and not because the outbox paused it, is
   * abandoned after a while.
   */
  private async readToEnd(captures: OutputCapture[]): Promise<void> {
    const allEnded = Promise.all(captures.map((capture) => capture.ended)).then(() => true);
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const checkpoint = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), ESCAPED_WRITER_CHECK_MS);
      });
      const ended = await Promise.race([allEnded, checkpoint]);
      clearTimeout(timer);
      if (ended) return;
      if (captures.every((capture) => capture.quietFor(ESCAPED_WRITER_CHECK_MS))) {
        this.system('an output pipe is still held open by a process outside the job; no longer reading it');
        for (const capture of captures) capture.abandon();
        await allEnded;
        return;
      }
    }
  }

  private armBackstop(): void {
    const runTimeoutMs = durationToMs(this.assignment.runTimeout);
    if (!runTimeoutMs || runTimeoutMs <= 0) return;
    this.backstopTimer = setTimeout(() => {
      if (this.stopCause) return;
      this.stopCause = { kind: 'backstop', runTimeoutMs };
      this.stopGraceMs = this.cancelGraceMs;
      this.system(`run timeout of ${formatMs(runTimeoutMs)} passed long ago and the server sent no cancel; stopping the run`);
      void this.active?.stop(this.stopGraceMs);
    }, runTimeoutMs + RUN_TIMEOUT_BACKSTOP_MARGIN_MS);
  }

  private stoppedBeforeStart(): RunResult {
    if (this.stopCause?.kind === 'give-back') {
      this.system(`stopped before the command started: the job goes back to the server (${this.stopCause.reason})`);
      return { ...result(JobOutcome.JOB_OUTCOME_UNSPECIFIED, undefined, this.stopCause.reason), givenBack: this.stopCause.reason };
    }
    const reason = this.stopCause?.kind === 'cancel' ? `cancelled before the command started: ${this.stopCause.reason}` : 'stopped before the command started';
    this.system(reason);
    return result(JobOutcome.JOB_OUTCOME_CANCELLED, undefined, reason);
  }

  private fail(reason: string): RunResult {
    this.system(reason);
    return result(JobOutcome.JOB_OUTCOME_FAILED, undefined, reason);
  }

  private jobEnv(repository: Repository, repoDir: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.context.agentEnv };
    for (const name of AGENT_SECRETS) delete env[name];
    return {
      ...env,
      JOB_ID: this.assignment.jobId,
      JOB_ATTEMPT: String(this.assignment.attempt),
      JOB_PROMPT: this.assignment.prompt,
      JOB_QUEUE: this.assignment.queue === JobQueue.JOB_QUEUE_REWORK ? 'rework' : 'backlog',
      JOB_REVISES_JOB_ID: this.assignment.revisesJobId,
      REPO_DIR: repoDir,
      REPO_URL: repository.cloneUrl,
      REPO_BRANCH: repository.defaultBranch,
      REPO_NAME: repository.name,
    };
  }

  /** A line from the agent itself, on the job's log. */
  private system(text: string): void {
    this.sink.append(LogStream.LOG_STREAM_SYSTEM, text);
  }
}

function describeExit(exit: ProcessExit | undefined): string {
  if (!exit) return 'did not run';
  return exit.code !== null ? `exited with code ${exit.code}` : `killed by signal ${exit.signal ?? 'unknown'}`;
}

function result(outcome: JobOutcome, exitCode: number | undefined, failureReason: string): RunResult {
  return { outcome, exitCode, failureReason, finishedAt: new Date() };
}
