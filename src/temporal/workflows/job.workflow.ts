// A job's whole life: claim (wait for an agent to accept it), then execute (wait for the agent to
// finish it), requeueing when the agent is lost. Every wait is a timer, a signal or an
// asynchronously completed activity, so a job waiting in the queue holds no worker slot.
//
// A job that runs as it should costs three workflow tasks, as few as a bare workflow of two
// activities: started (schedule the claim), claimed (schedule the execution, arm the start
// deadline), finished (record the end, in a local activity, and complete). Nothing tells the
// workflow that the agent started the job: the agent's report is stored, and the start deadline,
// when it fires, reads it (see startedBy).
import {
  ActivityFailure,
  CancellationScope,
  ApplicationFailure,
  TimeoutFailure,
  condition,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
} from '@temporalio/workflow';
import {
  AGENT_LOST_FAILURE,
  AGENT_REJECTED_FAILURE,
  jobSignals,
  type CancelRequest,
  type JobActivities,
  type JobClaim,
  type JobEndStatus,
  type JobWorkflowInput,
  type StartedSignal,
} from '../shared.js';
import type { AttemptLoss, JobOutcome } from '../../domain/job.js';

export const cancelSignal = defineSignal<[CancelRequest]>(jobSignals.cancel);
export const startedSignal = defineSignal<[StartedSignal]>(jobSignals.started);
export const claimedSignal = defineSignal<[JobClaim]>(jobSignals.claimed);

/** Error types an activity throws that no retry can fix (see errors.ts: AppError subclasses). */
const NON_RETRYABLE = ['NotFoundError', 'InvalidArgumentError', 'ConflictError'];

/**
 * Changes to what the workflow does, kept apart by patch markers so that jobs whose histories were
 * written before a change still replay as they ran (test/job-workflow-replay.test.ts replays such
 * histories). Each patch costs a job a marker and a search attribute update the first time it is
 * asked, so changes released together share one. Only ever add to this list; remove one (with
 * deprecatePatch first) once no job that began before it can still be running.
 */
const patches = {
  /**
   * At the start deadline, read whether the agent started the job rather than wait for a signal
   * (and tell an agent that has not to drop the attempt); run database bookkeeping as local
   * activities, with no activity task or workflow task of their own; cancel an attempt's start and
   * run timers once it is decided.
   */
  leanJobLife: 'lean-job-life',
  /**
   * The lease rule (agent.proto): when the agent-silence heartbeat timeout fires, ask the database
   * how long the agent has really gone unheard (Temporal misses heartbeats while it or the gateway
   * is away) and requeue only once the agent has surely stopped the run by itself; and a cancel
   * whose grace ran out waits for the agent to confirm, or for its lease to run out, before the
   * job says cancelled.
   */
  agentLease: 'agent-lease',
  /**
   * A run the agent declined keeps its number (the next run takes the next one, so a (job, attempt)
   * pair names one run) and is counted apart, not against maxAttempts.
   */
  runNumbers: 'run-numbers',
  /**
   * A run the agent reports as succeeded or failed while a cancel or the run deadline is asking it
   * to stop ended before the stop reached it: its outcome stands, rather than being recorded as
   * cancelled or timed out.
   */
  finishedRunStands: 'finished-run-stands',
  /**
   * A cancel that wins the race with the claim step ends the job only if it is still queued; when a
   * dispatcher claimed it meanwhile, that run is stopped (and confirmed) like any other first.
   */
  claimedCancel: 'claimed-cancel',
} as const;

type AttemptResult = JobOutcome | AttemptLoss | { kind: 'timed_out'; reason: string } | { kind: 'cancel_requested' };

export async function jobWorkflow(input: JobWorkflowInput): Promise<JobEndStatus> {
  const { jobId, timeouts } = input;

  let cancel: CancelRequest | undefined;
  const startedAttempts = new Set<number>();
  setHandler(cancelSignal, (request) => {
    cancel ??= request;
  });
  /** The run the workflow last claimed, and a claim the gateway's sweep delivered by signal. */
  let lastClaimed = 0;
  let recoveredClaim: JobClaim | undefined;
  setHandler(claimedSignal, (claim) => {
    // Run numbers only grow: a claim of a run already claimed is a late repeat.
    if (claim.attempt > lastClaimed && claim.attempt > (recoveredClaim?.attempt ?? 0)) recoveredClaim = claim;
  });
  setHandler(startedSignal, ({ attempt }) => {
    startedAttempts.add(attempt);
  });

  const queue = proxyActivities<JobActivities>({
    // The queue timeout bounds the whole wait, retries of a failed database write included.
    scheduleToCloseTimeout: timeouts.queueMs,
    retry: { initialInterval: '1s', maximumInterval: '30s', nonRetryableErrorTypes: NON_RETRYABLE },
  });
  const agent = proxyActivities<JobActivities>({
    // The gateway heartbeats this activity for every agent heartbeat: silence past the heartbeat
    // timeout is a lost agent. The start-to-close timeout is only a backstop behind our own timers.
    startToCloseTimeout: timeouts.startMs + timeouts.runMs + timeouts.cancelGraceMs,
    heartbeatTimeout: timeouts.agentSilenceMs,
    retry: { maximumAttempts: 1 },
  });
  // Database writes that must land: retried until they do. A local activity is recorded in the
  // workflow task that asked for it, so finishing a job takes no task of its own.
  const bookkeepingOptions = { startToCloseTimeout: '30s', retry: { initialInterval: '500ms', maximumInterval: '30s', nonRetryableErrorTypes: NON_RETRYABLE } } as const;
  const remoteBookkeeping = proxyActivities<JobActivities>(bookkeepingOptions);
  const localBookkeeping = proxyLocalActivities<JobActivities>(bookkeepingOptions);
  const bookkeeping = () => (patched(patches.leanJobLife) ? localBookkeeping : remoteBookkeeping);

  const finish = async (status: JobEndStatus, details: { exitCode?: number | null; reason?: string | null } = {}): Promise<JobEndStatus> => {
    await CancellationScope.nonCancellable(() => bookkeeping().finishJob({ jobId, status, ...details }));
    return status;
  };

  const cancelled = () => cancel !== undefined;

  async function claim(): Promise<JobClaim | 'cancel_requested'> {
    const scope = new CancellationScope();
    const claimed = scope.run(() => queue.claimJob(jobId));
    const recovered = () => recoveredClaim !== undefined && recoveredClaim.attempt > lastClaimed;
    const winner = await Promise.race([
      claimed,
      condition(cancelled).then(() => 'cancel_requested' as const),
      // The claim step's activity may be lost (its worker died before it recorded its token): the
      // claim the database holds, delivered by signal, stands instead.
      condition(recovered).then(() => 'recovered' as const),
    ]).catch((err: unknown) => {
      // A workflow task that ended the job as cancelled can fail to complete (it outlived its
      // timeout on a busy worker): then the claim step may run against the ended job and fail, and
      // the retried task sees that failure beside the cancel. The cancel decides.
      if (cancelled()) return 'cancel_requested' as const;
      throw err;
    });
    if (winner === 'recovered') {
      scope.cancel();
      void claimed.catch(() => undefined);
      lastClaimed = recoveredClaim!.attempt;
      return recoveredClaim!;
    }
    if (winner !== 'cancel_requested') {
      lastClaimed = winner.attempt;
      return winner;
    }
    scope.cancel();
    // The claim may have landed at the same moment: finishJob tells whichever agent holds the job.
    await claimed.catch(() => undefined);
    return 'cancel_requested';
  }

  /**
   * Whether the agent started the attempt by the deadline. Agents report it to the gateway, which
   * stores it; the workflow reads it when the deadline fires, so a job that ends well before its
   * deadline never spends a workflow task on its start. (Workflows that began before that change
   * were told by a `started` signal, which may be in their history: its handler stays.) Resolves
   * with when it started, 'signalled' (no time known), or undefined when it did not start (the
   * agent is then told to drop the attempt).
   */
  async function startedBy(claimed: JobClaim, running: Promise<AttemptResult>, timers: CancellationScope): Promise<number | 'signalled' | undefined> {
    const reported = await Promise.race([
      timers.run(() => condition(() => startedAttempts.has(claimed.attempt) || cancelled(), timeouts.startMs)),
      running.then(() => true),
    ]);
    if (reported) return 'signalled';
    if (!patched(patches.leanJobLife)) return undefined;
    const startedAt = await bookkeeping().attemptStartedAt({ jobId, agentId: claimed.agentId, attempt: claimed.attempt });
    if (startedAt !== null) return startedAt;
    // The agent may still be preparing the attempt (a slow clone): it must drop it, and free its
    // slot, before the job goes back to the queue.
    await bookkeeping().cancelOnAgent({ jobId, attempt: claimed.attempt, reason: `not started within ${timeouts.startMs} ms`, graceMs: timeouts.cancelGraceMs });
    return undefined;
  }

  /**
   * Waits for the agent's report of the attempt. A heartbeat timeout is only a prompt: the database
   * knows when the agent was last heard (Temporal misses heartbeats while it or the gateway is
   * away, and a restarted gateway gives agents time to come back), so the attempt is lost only once
   * the lease rule says the agent has surely stopped it; until then the workflow waits again.
   */
  async function awaitAgent(claimed: JobClaim, scope: CancellationScope): Promise<AttemptResult> {
    for (;;) {
      const result = await scope.run(() => agent.executeJob(jobId, claimed)).then(
        (outcome): AttemptResult | 'silent' => outcome,
        (err: unknown): AttemptResult | 'silent' => {
          if (isHeartbeatTimeout(err)) return 'silent';
          if (failureType(err) === AGENT_LOST_FAILURE) return { kind: 'agent_lost', reason: failureMessage(err) };
          if (failureType(err) === AGENT_REJECTED_FAILURE) return { kind: 'rejected', reason: failureMessage(err) };
          // Once a cancel is asked for, the step failing against the job it ended decides nothing.
          if (isCancellation(err) || cancelled()) return { kind: 'cancel_requested' };
          throw err;
        },
      );
      if (result !== 'silent') return result;
      const silentFor = `agent went silent for ${timeouts.agentSilenceMs} ms`;
      if (!patched(patches.agentLease)) return { kind: 'agent_lost', reason: silentFor };
      const remainingMs = await CancellationScope.nonCancellable(() =>
        bookkeeping().leaseRemaining({ jobId, agentId: claimed.agentId, attempt: claimed.attempt, fallbackLeaseMs: timeouts.agentSilenceMs }),
      );
      if (remainingMs === null || remainingMs <= 0) return { kind: 'agent_lost', reason: `${silentFor}, and its lease has run out` };
      // Heard since, or a gateway started since: wait for its report again.
    }
  }

  async function execute(claimed: JobClaim): Promise<AttemptResult> {
    const scope = new CancellationScope();
    let settled = false;
    let reported: AttemptResult | undefined;
    const running = awaitAgent(claimed, scope)
      .then((result) => (reported = result))
      .finally(() => {
        settled = true;
      });
    // The attempt's deadlines: cancelled once it is decided, so none outlives it to wake the
    // workflow for nothing (a requeued job would otherwise carry its first attempt's timers).
    const timers = new CancellationScope();
    try {
      const started = await startedBy(claimed, running, timers);
      if (started === undefined) {
        scope.cancel();
        return { kind: 'agent_lost', reason: `agent did not start the job within ${timeouts.startMs} ms` };
      }
      // The run time counts from the start the agent reported, when the workflow knows it.
      const runLeftMs = started === 'signalled' ? timeouts.runMs : Math.max(1, timeouts.runMs - (Date.now() - started));

      const result = await Promise.race([
        running,
        condition(cancelled).then((): AttemptResult => ({ kind: 'cancel_requested' })),
        timers.run(() => sleep(runLeftMs)).then((): AttemptResult => ({ kind: 'timed_out', reason: `run time exceeded ${timeouts.runMs} ms` })),
      ]);
      if (result.kind !== 'cancel_requested' && result.kind !== 'timed_out') return result;

      // Ask the agent to stop, give it the grace period to report back, then stop waiting for it.
      const reason = result.kind === 'timed_out' ? result.reason : (cancel?.reason ?? 'cancelled');
      await CancellationScope.nonCancellable(async () => {
        await bookkeeping().cancelOnAgent({ jobId, attempt: claimed.attempt, reason, graceMs: timeouts.cancelGraceMs });
        await Promise.race([running, sleep(timeouts.cancelGraceMs)]);
        // The command may still run (the agent missed the cancel, or cannot be reached): the job is
        // not ended until the agent confirms it stopped, or its lease has surely run out.
        if (!settled && patched(patches.agentLease)) {
          await bookkeeping().cancelOnAgent({ jobId, attempt: claimed.attempt, reason: `${reason} (grace of ${timeouts.cancelGraceMs} ms over: kill it now)`, graceMs: 0 });
          await running;
        }
      });
      scope.cancel();
      // The run may have ended by itself before the stop reached it: what it reached is the outcome.
      if ((reported?.kind === 'succeeded' || reported?.kind === 'failed') && patched(patches.finishedRunStands)) return reported;
      return result;
    } finally {
      if (patched(patches.leanJobLife)) timers.cancel();
    }
  }

  /** Runs declined by their agent before starting: numbered, but not counted against maxAttempts. */
  let declined = 0;
  try {
    for (;;) {
      let claimed = await claim();
      if (claimed === 'cancel_requested') {
        if (!patched(patches.claimedCancel)) return await finish('cancelled', { reason: cancel?.reason ?? null });
        const held = await CancellationScope.nonCancellable(() => bookkeeping().cancelIfQueued({ jobId, reason: cancel?.reason ?? null }));
        if (!held) return 'cancelled';
        lastClaimed = held.attempt;
        claimed = held;
      }

      const result = await execute(claimed);
      switch (result.kind) {
        case 'succeeded':
          return await finish('succeeded', { exitCode: result.exitCode });
        case 'failed':
          return await finish('failed', { exitCode: result.exitCode, reason: result.reason });
        case 'cancelled':
        case 'cancel_requested':
          return await finish('cancelled', { reason: cancel?.reason ?? ('reason' in result ? result.reason : null) });
        case 'timed_out':
          return await finish('timed_out', { reason: result.reason });
        case 'rejected':
          if (patched(patches.runNumbers)) {
            declined++;
            await bookkeeping().requeueJob({ jobId, reason: result.reason, declined: true });
          } else {
            await bookkeeping().requeueJob({ jobId, reason: result.reason, uncount: true });
          }
          break;
        case 'agent_lost':
          if (claimed.attempt - declined >= input.maxAttempts) {
            return await finish('failed', { reason: `${result.reason}; gave up after ${claimed.attempt} attempts` });
          }
          await bookkeeping().requeueJob({ jobId, reason: result.reason });
      }
    }
  } catch (err) {
    if (isQueueTimeout(err)) {
      return finish('timed_out', { reason: `no agent accepted the job within ${timeouts.queueMs} ms` });
    }
    throw err;
  }
}

function timeoutTypeOf(err: unknown): TimeoutFailure['timeoutType'] | undefined {
  if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure) return err.cause.timeoutType;
  return undefined;
}

function isQueueTimeout(err: unknown): boolean {
  const type = timeoutTypeOf(err);
  return type === 'SCHEDULE_TO_CLOSE' || type === 'START_TO_CLOSE';
}

function isHeartbeatTimeout(err: unknown): boolean {
  return timeoutTypeOf(err) === 'HEARTBEAT' || timeoutTypeOf(err) === 'START_TO_CLOSE';
}

function failureType(err: unknown): string | undefined {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? (err.cause.type ?? undefined) : undefined;
}

function failureMessage(err: unknown): string {
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}
