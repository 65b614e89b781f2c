// Every figure the fault suite uses, in one place: the server's shortened timeouts (given to every
// role as its environment) and the suite's own waits, which are derived from them so that changing
// one timeout moves every row that depends on it.

export const settings = {
  /** AGENT_HEARTBEAT_INTERVAL: how often an agent is heard from when it has nothing else to say. */
  heartbeatIntervalMs: 1_000,
  /**
   * AGENT_SILENCE_TIMEOUT: an agent not heard for this long is lost. Ten heartbeats, and well above
   * the 2–6 s a role takes to restart on a loaded two-core machine, so that a restart "shorter than
   * the silence timeout" is one in fact.
   */
  silenceTimeoutMs: 10_000,
  /** JOB_CANCEL_GRACE: SIGTERM → SIGKILL for a cancelled run. */
  cancelGraceMs: 2_000,
  /** DISPATCH_SWEEP_INTERVAL: the longest a queued job may wait for an idle connected agent. */
  sweepIntervalMs: 1_000,
  /** JOB_START_TIMEOUT: assignment → started; generous, since the agent clones first. */
  startTimeoutMs: 20_000,

  /** Pause between two numbered lines of a job's command (seconds, as `sleep` takes it). */
  lineIntervalS: 0.1,
  /** How often the observer polls a job's status and its stored log. */
  pollIntervalMs: 250,
  /** Slack added to a server timeout before the suite acts on it having passed (lease "surely" over). */
  marginMs: 3_000,
  /** A role that is not ready this long after it was started is a failure of the harness, not of a row. */
  roleReadyTimeoutMs: 60_000,
  /** A job queued this long after a fault, with the row's agents up, is stuck: the row stops waiting. */
  stuckQueuedMs: 30_000,
  /** How long after a job ends a probe job may wait for the row's idle agent (no stuck slot). */
  probeDispatchMs: 1_000 + 10_000,
  /** Whole-suite budget: rows that have not started by then are reported as not run. */
  suiteBudgetMs: 12 * 60_000,
} as const;

/**
 * When the server may give a silent agent's job to another agent (README, Reliability: lease + the
 * job's cancel grace + a heartbeat interval of margin). Rows "longer than the lease" wait past this.
 */
export const requeueAfterMs = settings.silenceTimeoutMs + settings.cancelGraceMs + settings.heartbeatIntervalMs;

/** The environment every server role gets for the shortened timeouts. */
export function timeoutEnv(): Record<string, string> {
  return {
    AGENT_HEARTBEAT_INTERVAL: `${settings.heartbeatIntervalMs}ms`,
    AGENT_SILENCE_TIMEOUT: `${settings.silenceTimeoutMs}ms`,
    JOB_CANCEL_GRACE: `${settings.cancelGraceMs}ms`,
    DISPATCH_SWEEP_INTERVAL: `${settings.sweepIntervalMs}ms`,
    JOB_START_TIMEOUT: `${settings.startTimeoutMs}ms`,
  };
}

/** Seconds a command printing `lines` numbered lines runs for (ignoring fork costs). */
export function commandSeconds(lines: number): number {
  return lines * settings.lineIntervalS;
}
