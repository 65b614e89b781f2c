// Stopping a role within its budget: the role drains gracefully (the API finishes its requests, the
// gateway waits for its agents to move, the worker finishes its tasks); if the budget runs out first,
// what is left is cut, and the log says what that was. Forcing is an operator's setting at work, not
// a failure: it is a warning. Only a drain that fails is an error.
import type { Logger } from 'pino';

export type RoleName = 'api' | 'gateway' | 'worker';

export interface RoleStop {
  role: RoleName;
  /** The most this role's drain may take before what is left is cut. */
  budgetMs: number;
  /** Stops the role gracefully; resolves once it has stopped. */
  drain(): Promise<void>;
  /** The budget is spent: cuts what is left so that drain() ends now, and counts what that was. */
  force(): Record<string, number>;
}

/** Drains the role; past its budget, forces it. Never rejects: a failure is logged. */
export async function drainWithinBudget(stop: RoleStop, logger: Logger): Promise<void> {
  const began = performance.now();
  const draining = stop.drain();
  let timer: NodeJS.Timeout | undefined;
  const spent = new Promise<'spent'>((resolve) => (timer = setTimeout(() => resolve('spent'), stop.budgetMs)));
  try {
    const outcome = await Promise.race([draining.then(() => 'drained' as const), spent]);
    if (outcome === 'spent') {
      const left = stop.force();
      logger.warn({ role: stop.role, budgetMs: stop.budgetMs, left }, `${stop.role} drain budget spent: cut what was left`);
      await draining;
    }
    logger.info({ role: stop.role, ms: Math.round(performance.now() - began) }, `${stop.role} stopped`);
  } catch (err) {
    logger.error({ err, role: stop.role }, 'error during shutdown');
  } finally {
    clearTimeout(timer);
  }
}
