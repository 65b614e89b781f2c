// What the reference agent says when a push fails: git's words for the ref it refused (agent.proto,
// RunChange), not the generic first error line of an atomic push.
import { describe, expect, it } from 'vitest';
import { pushFailure } from './run-change.js';

describe('pushFailure', () => {
  it('names the ref git refused, even when an atomic push says something vaguer first', () => {
    const atomic = "error: atomic push failed for ref refs/heads/b. status: 7\n\nfatal: the remote end hung up unexpectedly\nTo file:///r\n ! [rejected]        HEAD -> b (stale info)\n ! [rejected]        HEAD -> refs/agent-jobs/j (atomic push failed)\nerror: failed to push some refs to 'file:///r'\n";
    expect(pushFailure(atomic)).toBe('! [rejected]        HEAD -> b (stale info)');
    expect(pushFailure("To file:///r\n ! [remote rejected] HEAD -> b (pre-receive hook declined)\nerror: failed to push some refs to 'file:///r'\n")).toBe('! [remote rejected] HEAD -> b (pre-receive hook declined)');
  });

  it("falls back to git's first error line, then its last line", () => {
    expect(pushFailure("fatal: could not read Username for 'https://h': terminal prompts disabled\n")).toBe("fatal: could not read Username for 'https://h': terminal prompts disabled");
    expect(pushFailure('remote: something\nremote: went wrong\n')).toBe('remote: went wrong');
    expect(pushFailure('')).toBe('');
  });
});
