// The fault suite's rules for what counts as lost, duplicated, concurrent or discarded: the suite is
// only as trustworthy as these, so each rule is pinned down here on small hand-made runs and logs.
import { describe, expect, it } from 'vitest';
import type { StoredLine } from './client.js';
import { measureJob, type MeasureInput } from './measures.js';
import type { Run } from './runs.js';

function run(attempt: number, from: number, to: number | undefined, printed: number, exitCode?: number): Run {
  return {
    jobId: 'job',
    attempt,
    pid: 1000 + attempt * 10 + from,
    pgid: 1000 + attempt * 10 + from,
    startedAt: from,
    printed: new Set(Array.from({ length: printed }, (_, i) => i + 1)),
    lastTickAt: to,
    end: exitCode === undefined || to === undefined ? undefined : { code: exitCode, at: to },
  };
}

const out = (attempt: number, ...lines: number[]): StoredLine[] => lines.map((n) => ({ stream: 'stdout', text: `a${attempt} line ${n}` }));
const marker: StoredLine = { stream: 'system', text: 'attempt 1 ended without a result: the agent was lost; the job goes back to the queue' };
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

function measure(input: Partial<MeasureInput> & Pick<MeasureInput, 'runs' | 'stored'>) {
  return measureJob({ lastAlive: (r) => r.end?.at ?? r.lastTickAt ?? r.startedAt, finalStatus: 'succeeded', finalAttempt: 1, ended: true, terminalAt: 1_000_000, ...input });
}

describe('the fault suite measures', () => {
  it('finds nothing wrong with one clean run', () => {
    const m = measure({ runs: [run(1, 0, 100, 5, 0)], stored: out(1, ...range(5)) });
    expect(m).toMatchObject({ linesLost: 0, linesDuplicated: 0, concurrentRuns: 0, finishedRunsDiscarded: 0, ranAfterEndMs: 0, unmarkedAttemptChanges: 0, interleavedAttempts: 0 });
  });

  it('counts every printed line of the final attempt that was not stored as lost', () => {
    expect(measure({ runs: [run(1, 0, 100, 5, 0)], stored: out(1, 1, 2, 4) }).linesLost).toBe(2);
  });

  it("does not count the unstored tail of an ended attempt as lost, but does count a hole in it", () => {
    const runs = [run(1, 0, 50, 8), run(2, 60, 100, 3, 0)];
    expect(measure({ runs, finalAttempt: 2, stored: [...out(1, 1, 2, 3), marker, ...out(2, 1, 2, 3)] }).linesLost).toBe(0);
    expect(measure({ runs, finalAttempt: 2, stored: [...out(1, 1, 3), marker, ...out(2, 1, 2, 3)] }).linesLost).toBe(1);
  });

  it("does not hold a job that has not ended to every line of its current attempt", () => {
    expect(measure({ runs: [run(1, 0, 50, 8)], ended: false, finalStatus: 'queued', stored: out(1, 1, 2) }).linesLost).toBe(0);
  });

  it('counts a line stored twice as a duplicate', () => {
    expect(measure({ runs: [run(1, 0, 100, 3, 0)], stored: out(1, 1, 2, 2, 3) }).linesDuplicated).toBe(1);
  });

  it('sees two runs of one job alive at the same time', () => {
    const m = measure({ runs: [run(1, 0, 50, 5), run(2, 40, 100, 5, 0)], finalAttempt: 2, stored: [...out(1, ...range(5)), marker, ...out(2, ...range(5))] });
    expect(m.concurrentRuns).toBe(2);
    expect(m.longestOverlapMs).toBe(10);
  });

  it('sees a run that ended with exit 0 while the job ended on another attempt as discarded', () => {
    const m = measure({ runs: [run(1, 0, 50, 5, 0), run(2, 60, 100, 5, 0)], finalAttempt: 2, stored: [...out(1, ...range(5)), marker, ...out(2, ...range(5))] });
    expect(m.finishedRunsDiscarded).toBe(1);
  });

  it('sees a run going on after the job was shown ended', () => {
    const m = measure({ runs: [run(1, 0, 700, 5, 143)], finalStatus: 'cancelled', terminalAt: 500, stored: out(1, ...range(5)) });
    expect(m.ranAfterEndMs).toBe(200);
  });

  it('wants a server line naming the attempt between two attempts, and no earlier attempt after a later one', () => {
    const runs = [run(1, 0, 50, 2), run(2, 60, 100, 2, 0)];
    const agentLine: StoredLine = { stream: 'system', text: '$ git clone --depth 1 file:///repo' };
    expect(measure({ runs, finalAttempt: 2, stored: [...out(1, 1, 2), marker, ...out(2, 1, 2)] }).unmarkedAttemptChanges).toBe(0);
    expect(measure({ runs, finalAttempt: 2, stored: [...out(1, 1, 2), agentLine, ...out(2, 1, 2)] }).unmarkedAttemptChanges).toBe(1);
    expect(measure({ runs, finalAttempt: 2, stored: [...out(1, 1), marker, ...out(2, 1), ...out(1, 2), ...out(2, 2)] }).interleavedAttempts).toBe(1);
  });
});
