// Reconnect delays. Full jitter (a uniform draw between zero and the exponential ceiling) keeps a
// fleet of agents that lost the same server from reconnecting in lock-step.

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 500, capMs: 30_000 };

/** Delay before the next attempt after `failedAttempts` consecutive failures (0 for the first retry). */
export function fullJitterDelayMs(failedAttempts: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(failedAttempts, 30));
  return Math.floor(random() * ceiling);
}

/**
 * Delay after a GoAway: the server's hint plus jitter. The hint already spreads a fleet out, so the
 * jitter only has to break ties: up to half the hint, and at least a second when the hint is zero.
 */
export function goAwayDelayMs(hintMs: number, random: () => number = Math.random): number {
  return hintMs + Math.floor(random() * Math.max(1000, hintMs / 2));
}
