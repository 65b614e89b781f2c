import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { drainWithinBudget, type RoleStop } from './shutdown.js';

function capturingLogger() {
  const lines: ({ level: number; msg: string } & Record<string, unknown>)[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  return { logger, lines };
}

describe('a role stopping within its drain budget', () => {
  it('is not forced when it drains in time, and says it stopped', async () => {
    const { logger, lines } = capturingLogger();
    let forced = false;
    const stop: RoleStop = { role: 'api', budgetMs: 60_000, drain: async () => {}, force: () => ((forced = true), {}) };
    await drainWithinBudget(stop, logger);
    expect(forced).toBe(false);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([[30, 'api stopped']]);
  });

  it('is forced once its budget is spent, and the warning says what was left', async () => {
    const { logger, lines } = capturingLogger();
    let release = () => {};
    const stop: RoleStop = {
      role: 'gateway',
      budgetMs: 1,
      // Drains only when forced: an agent that never moves.
      drain: () => new Promise<void>((resolve) => (release = resolve)),
      force: () => {
        release();
        return { agents: 2 };
      },
    };
    await drainWithinBudget(stop, logger);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, 'gateway drain budget spent: cut what was left'],
      [30, 'gateway stopped'],
    ]);
    expect(lines[0]).toMatchObject({ role: 'gateway', budgetMs: 1, left: { agents: 2 } });
  });

  it('logs a drain that fails as an error, and still resolves', async () => {
    const { logger, lines } = capturingLogger();
    const stop: RoleStop = { role: 'worker', budgetMs: 60_000, drain: async () => Promise.reject(new Error('lost the connection')), force: () => ({}) };
    await drainWithinBudget(stop, logger);
    expect(lines).toMatchObject([{ level: 50, msg: 'error during shutdown', role: 'worker', err: { message: 'lost the connection' } }]);
  });
});
