// One run of one job on this machine: a fresh folder, a shallow clone, the configured command in
// its own process group, its output line by line into the job's log, an outcome, and for a success
// the change it made (committed, pushed, diffed). It knows nothing of the stream: the agent feeds
// it cancellations and reads its result.
import path from 'node:path';
import { JobOutcome, JobQueue, LogStream, type JobAssignment, type Repository, type RunChange } from '../generated/agent/v1/agent.js';
import { agentLog } from './agent-log.js';
import type { ChangeOptions } from './cli-options.js';
import { durationToMs, formatMs } from './durations.js';
import { OutputCapture, type JobLogSink } from './output-capture.js';
import { ProcessGroup, type ProcessExit, type StopResult } from './process-group.js';
import type { RunRecords } from './run-records.js';
import { commitLeftovers, commitMessage, diffStat, firstErrorLine, headCommit, listCommits, markedPush, pushFailure, pushMarkerRef, readPatch, readResultFile } from './run-change.js';
import { cloneArgs, prepareRunFolder, redactUrl, removeRunFolder, repoDirOf, runFolderName } from './workspace.js';

export interface JobRunContext {
  /** The shell command run for every job. */
  command: string;
  workRoot: string;
  /** The agent's environment, passed on to the job without the agent's own secrets. */
  agentEnv: NodeJS.ProcessEnv;
  records: RunRecords;
  change: ChangeOptions;
  /** The largest patch the server takes now (Welcome.max_patch_bytes): a larger one is not kept. */
  maxPatchBytes: () => number;
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
  /** What a successful run changed (JobFinished.change). */
  change?: RunChange;
  /** The change's patch, when it is small enough to send (RunChange.patch_size says how big it is). */
  patch?: Buffer;
}

/** What the agent learns of a run before its result. */
export interface RunHooks {
  /** The command is running (JobStarted). */
  started(startedAt: Date): void;
  /**
   * More of the change's patch is read (`bytesSoFar`, complete once `whole`), while the push may
   * still run: sending it meanwhile hides its transfer behind the push. Undefined: the patch is
   * larger than the server takes, and no more of it goes. The run's result still decides: a push that
   * fails sends no change.
   */
  patchRead(bytesSoFar: Buffer | undefined, whole: boolean): void;
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
    private readonly hooks: RunHooks,
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

      const repoDir = repoDirOf(folder);
      const env = this.jobEnv(repository, folder);
      const cloned = await headCommit(repoDir, env);
      const revises = this.assignment.revises;
      let base = cloned;
      if (revises?.branch && cloned !== revises.headCommit) {
        const restart = await this.restartFromParent(repoDir, env, revises.branch, revises.headCommit, cloned);
        if (restart) return restart;
        base = revises.headCommit;
      }
      const ran = await this.runCommand(repoDir, env);
      if (ran.outcome !== JobOutcome.JOB_OUTCOME_SUCCEEDED) return ran;
      return await this.deliverChange(ran, repoDir, env, base, cloned);
    } finally {
      await removeRunFolder(folder).catch((err: unknown) => agentLog.warn('could not remove a run folder', { folder, error: String(err) }));
    }
  }

  /**
   * A rework whose branch is not at its parent's head. When the remote's push marker of this job is
   * at the branch's head, an earlier attempt of this very job pushed it and was lost before its
   * outcome was recorded: the clone goes back to the parent's head, and the push will replace that
   * attempt's commits. Otherwise someone else moved the branch, and the run fails without running
   * its command (agent.proto, RunChange). Undefined when the run goes on.
   */
  private async restartFromParent(repoDir: string, env: NodeJS.ProcessEnv, branch: string, parentHead: string, found: string): Promise<RunResult | undefined> {
    let marked: string | undefined;
    try {
      marked = await markedPush(repoDir, { ...env, GIT_TERMINAL_PROMPT: '0' }, this.assignment.jobId);
    } catch (err) {
      return this.fail(`could not read ${pushMarkerRef(this.assignment.jobId)}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (marked !== found) return this.fail(`branch moved: ${branch} is at ${found}, the job revises ${parentHead}`);
    this.system(`${branch} is at ${found}, pushed by an earlier attempt of this job: starting again from ${parentHead}, and replacing that push`);
    for (const args of [['fetch', '--quiet', '--depth', '1', 'origin', parentHead], ['reset', '--quiet', '--hard', parentHead]]) {
      const { step, detail } = await this.gitStep(args, repoDir, env);
      if (step.spawnError) return this.fail(`${args[0]} failed: could not run git: ${step.spawnError.message}`);
      if (this.stopCause) return this.stoppedBeforeStart();
      if (step.exit?.code !== 0) return this.fail(`${args[0]} failed: ${detail}`);
    }
    return undefined;
  }

  /** Undefined when the clone succeeded; otherwise how the run ended. */
  private async clone(repository: Repository, folder: string): Promise<RunResult | undefined> {
    // A rework continues its parent's branch; a backlog job (or the rework of a job that changed nothing) starts from the default one.
    const branch = this.assignment.revises?.branch || repository.defaultBranch;
    const args = cloneArgs({ ...repository, defaultBranch: branch }, repoDirOf(folder));
    const { step, detail } = await this.gitStep(args, folder, this.jobEnv(repository, folder), [repository.cloneUrl]);
    if (step.spawnError) return this.fail(`clone failed: could not run git: ${step.spawnError.message}`);
    if (this.stopCause) return this.stoppedBeforeStart();
    if (step.exit?.code !== 0) return this.fail(`clone failed: ${detail}`);
    return undefined;
  }

  /**
   * Runs git with its output in the job's log (LOG_STREAM_SYSTEM), the command line first with
   * `secrets` masked. `detail` is what git said went wrong, for failure_reason: its first
   * "error:"/"fatal:" line (later ones are generic advice), or else its last line.
   */
  private async gitStep(args: string[], cwd: string, env: NodeJS.ProcessEnv, secrets: string[] = [], describe = firstErrorLine): Promise<{ step: StepOutcome; detail: string }> {
    this.system(`$ git ${args.map((arg) => (secrets.includes(arg) ? redactUrl(arg) : arg)).join(' ')}`);
    const output: string[] = [];
    const sink = this.sink;
    const gitSink: JobLogSink = {
      append(stream, text) {
        if (output.length < 200) output.push(text);
        sink.append(stream, text);
      },
      get isFull() {
        return sink.isFull;
      },
      whenRoom: () => sink.whenRoom(),
    };
    const step = await this.runStep('git', args, cwd, { ...env, GIT_TERMINAL_PROMPT: '0' }, gitSink, [LogStream.LOG_STREAM_SYSTEM, LogStream.LOG_STREAM_SYSTEM]);
    return { step, detail: describe(output.join('\n')) || describeExit(step.exit) };
  }

  /**
   * A successful run's change, as agent.proto (RunChange) says: leftovers committed, the branch
   * pushed (a backlog job's replaces what an earlier attempt may have pushed; a rework's goes only
   * onto `cloned`, the head its clone found), the commits, diff stat and patch taken. A push that fails fails
   * the run; a stop asked for meanwhile ends it as the stop says.
   */
  private async deliverChange(success: RunResult, repoDir: string, env: NodeJS.ProcessEnv, base: string, cloned: string): Promise<RunResult> {
    const { jobId, prompt, revises } = this.assignment;
    const rework = this.assignment.queue === JobQueue.JOB_QUEUE_REWORK;
    try {
      const result = await readResultFile(this.resultFile(path.dirname(repoDir)));
      if (result.problem) this.system(`ignoring the result file: ${result.problem}`);
      if (await commitLeftovers(repoDir, env, commitMessage(prompt, jobId, rework))) this.system('committed what the command left uncommitted');
      const head = await headCommit(repoDir, env);
      const unchanged: RunChange = { branch: '', pushed: false, baseCommit: base, headCommit: base, commits: [], commitCount: 0, diffStat: { filesChanged: 0, insertions: 0, deletions: 0 }, summary: result.summary, pullRequestUrl: result.pullRequestUrl, patchSize: 0 };
      if (head === base) {
        this.system('no changes: the run left the repository as it found it');
        return { ...success, change: unchanged };
      }
      const branch = revises?.branch || `${this.context.change.branchPrefix}${jobId}`;
      // The push goes first, being the slow part; what is read meanwhile only reads the clone. A
      // rework's push goes only onto the head its clone found (the parent's, or an earlier attempt's
      // it replaces): a branch someone moved meanwhile is refused, not overwritten. Its marker goes
      // with it, or neither does.
      const pushArgs = revises?.branch
        ? ['push', '--atomic', `--force-with-lease=refs/heads/${branch}:${cloned}`, 'origin', `HEAD:refs/heads/${branch}`, `+HEAD:${pushMarkerRef(jobId)}`]
        : ['push', '--force', 'origin', `HEAD:refs/heads/${branch}`];
      const pushing = this.context.change.push ? this.gitStep(pushArgs, repoDir, env, [], pushFailure) : undefined;
      if (!pushing) this.system(`not pushing (--no-push): the change would go to branch ${branch}`);
      const patchRead = readPatch(repoDir, env, base, head, this.context.maxPatchBytes(), (bytes) => {
        if (!this.stopCause) this.hooks.patchRead(bytes, false);
      });
      patchRead.then((patch) => !this.stopCause && this.hooks.patchRead(patch.bytes, true), () => undefined);
      const gathering = Promise.all([listCommits(repoDir, env, base, head), diffStat(repoDir, env, base, head), patchRead]);
      gathering.catch(() => undefined); // awaited below; a push that fails first leaves it unread
      if (pushing) {
        const { step, detail } = await pushing;
        if (this.stopCause) return this.stoppedWhileDelivering();
        // The command exited by itself: its exit code stays the run's (agent.proto, JobFinished.exit_code).
        if (step.spawnError) return { ...this.fail(`push failed: could not run git: ${step.spawnError.message}`), exitCode: success.exitCode };
        if (step.exit?.code !== 0) return { ...this.fail(`push failed: ${detail}`), exitCode: success.exitCode };
      }
      const [{ commits, count }, stat, patch] = await gathering;
      if (this.stopCause) return this.stoppedWhileDelivering();
      const sent = patch.bytes ? `${patch.size} bytes` : `${patch.size} bytes, larger than the server takes: not sent`;
      this.system(`change: ${count} commit${count === 1 ? '' : 's'} on ${branch}, ${stat.filesChanged} file${stat.filesChanged === 1 ? '' : 's'} (+${stat.insertions} -${stat.deletions}), patch ${sent}`);
      const change: RunChange = { ...unchanged, branch, pushed: this.context.change.push, headCommit: head, commits, commitCount: count, diffStat: stat, patchSize: patch.size };
      return { ...success, change, ...(patch.bytes ? { patch: patch.bytes } : {}) };
    } catch (err) {
      if (this.stopCause) return this.stoppedWhileDelivering();
      return { ...this.fail(`could not make the change: ${err instanceof Error ? err.message : String(err)}`), exitCode: success.exitCode };
    }
  }

  /** The command succeeded, but a stop came while its change was being delivered: the stop decides. */
  private stoppedWhileDelivering(): RunResult {
    const cause = this.stopCause;
    if (cause?.kind === 'give-back') {
      this.system(`stopped while delivering the change: the job goes back to the server (${cause.reason})`);
      return { ...result(JobOutcome.JOB_OUTCOME_UNSPECIFIED, 0, cause.reason), givenBack: cause.reason };
    }
    if (cause?.kind === 'abandon') return result(JobOutcome.JOB_OUTCOME_FAILED, 0, 'abandoned: the server no longer assigns this run to the agent');
    const reason = `cancelled while delivering the change: ${cause?.kind === 'cancel' ? cause.reason : 'stopped'}`;
    this.system(reason);
    return result(JobOutcome.JOB_OUTCOME_CANCELLED, 0, reason);
  }

  private resultFile(folder: string): string {
    return path.join(folder, 'result.json');
  }

  private async runCommand(repoDir: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
    this.system(`$ /bin/sh -c ${JSON.stringify(this.context.command)}`);
    const step = await this.runStep('/bin/sh', ['-c', this.context.command], repoDir, env, this.sink, [LogStream.LOG_STREAM_STDOUT, LogStream.LOG_STREAM_STDERR], () => {
      this.hooks.started(new Date());
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

  /** The environment of the run's commands (the agent's git commands included): see --exec in the usage. */
  private jobEnv(repository: Repository, folder: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...this.context.agentEnv };
    for (const name of AGENT_SECRETS) delete env[name];
    const { name, email } = this.context.change.author;
    const author = { GIT_AUTHOR_NAME: name, GIT_AUTHOR_EMAIL: email, GIT_COMMITTER_NAME: name, GIT_COMMITTER_EMAIL: email };
    const revises = this.assignment.revises;
    const parent = revises
      ? { JOB_PARENT_ID: this.assignment.revisesJobId, JOB_PARENT_BRANCH: revises.branch, JOB_PARENT_HEAD: revises.headCommit, JOB_PARENT_SUMMARY: revises.summary }
      : {};
    const repoDir = repoDirOf(folder);
    return {
      ...author,
      ...env,
      ...parent,
      JOB_RESULT_FILE: this.resultFile(folder),
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
