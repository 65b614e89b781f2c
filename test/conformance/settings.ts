// Every figure the kit uses, in one place: the server's shortened timeouts (the environment of every
// server process) and the kit's own waits. Waits are deadlines for giving up, never pass criteria.

export const settings = {
  /** AGENT_HEARTBEAT_INTERVAL, and the agent's --heartbeat until Welcome names one. */
  heartbeatIntervalMs: 1_000,
  /** AGENT_SILENCE_TIMEOUT: the agent's lease. */
  silenceTimeoutMs: 8_000,
  /** JOB_CANCEL_GRACE, for jobs that name no cancelGraceSeconds. */
  cancelGraceMs: 2_000,
  /** DISPATCH_SWEEP_INTERVAL. */
  sweepIntervalMs: 1_000,
  /** JOB_START_TIMEOUT of ordinary jobs: generous, since the agent clones first on a busy machine. */
  startTimeoutMs: 30_000,
  /** GATEWAY_DRAIN_TIMEOUT. */
  drainTimeoutMs: 5_000,
  /** JOB_START_TIMEOUT and JOB_RUN_TIMEOUT of jobs created through the deadline API. */
  shortStartTimeoutMs: 3_000,
  shortRunTimeoutMs: 4_000,
  /**
   * MAX_PATCH_BYTES: the largest patch the server stores (Welcome.max_patch_bytes). Above one gRPC
   * message (4 MiB), so the change rows can send a patch that needs several chunks, and one too large.
   */
  maxPatchBytes: 6 * 1024 * 1024,

  /** A server process or an agent not ready this long after it was started is a harness failure. */
  processReadyMs: 60_000,
  /** How long an agent expected to give up (bad token) may take to exit before the row says it retries. */
  exitWithinMs: 30_000,
  /** Every row's own deadline; one that overruns it fails rather than hangs the kit. */
  rowDeadlineMs: 120_000,
  /** Rows run at once (each in an organisation of its own). */
  concurrency: 4,
} as const;

/** When the server may give a silent agent's job to another (lease + grace + a heartbeat of margin). */
export const requeueAfterMs = settings.silenceTimeoutMs + settings.cancelGraceMs + settings.heartbeatIntervalMs;

export function serverEnv(): Record<string, string> {
  return {
    AGENT_HEARTBEAT_INTERVAL: `${settings.heartbeatIntervalMs}ms`,
    AGENT_SILENCE_TIMEOUT: `${settings.silenceTimeoutMs}ms`,
    JOB_CANCEL_GRACE: `${settings.cancelGraceMs}ms`,
    DISPATCH_SWEEP_INTERVAL: `${settings.sweepIntervalMs}ms`,
    JOB_START_TIMEOUT: `${settings.startTimeoutMs}ms`,
    GATEWAY_DRAIN_TIMEOUT: `${settings.drainTimeoutMs}ms`,
    MAX_PATCH_BYTES: String(settings.maxPatchBytes),
  };
}

/** The deadline API's own: every job it creates carries these. */
export function deadlineEnv(): Record<string, string> {
  return {
    JOB_START_TIMEOUT: `${settings.shortStartTimeoutMs}ms`,
    JOB_RUN_TIMEOUT: `${settings.shortRunTimeoutMs}ms`,
  };
}
