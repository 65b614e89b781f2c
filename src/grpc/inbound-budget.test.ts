import { describe, expect, it } from 'vitest';
import { InboundBudget } from './inbound-budget.js';

describe('the process-wide budget of bytes read and not stored', () => {
  it('is exhausted past its limit and wakes the paused streams once storing brings it down to half', () => {
    const budget = new InboundBudget(100);
    const woken: string[] = [];
    budget.take(60);
    budget.take(60);
    expect(budget.exhausted).toBe(true);
    budget.whenRoom(() => woken.push('a'));
    budget.whenRoom(() => woken.push('b'));
    budget.give(60); // 60 left: no longer exhausted, but not yet down to half
    expect(budget.exhausted).toBe(false);
    expect(woken).toEqual([]);
    budget.give(10);
    expect(woken).toEqual(['a', 'b']);
    budget.give(50);
    expect(woken).toEqual(['a', 'b']);
  });

  it('wakes at once a stream that asks while there is room, and never one that ended', () => {
    const budget = new InboundBudget(100);
    const woken: string[] = [];
    budget.whenRoom(() => woken.push('now'));
    expect(woken).toEqual(['now']);
    budget.take(200);
    const gone = () => woken.push('gone');
    budget.whenRoom(gone);
    budget.forget(gone);
    budget.give(200);
    expect(woken).toEqual(['now']);
  });
});
