// Bytes read from agents' streams and not yet stored, across every stream of this process. Each
// stream bounds its own (see MAX_UNSTORED_LOG_BYTES), but fifty agents each at their own bound
// would still be hundreds of MiB; past this budget every stream that reads more pauses (its read
// gate closes, see read-gate.ts) and HTTP/2 flow control holds the agents' writes, until storing
// brings the total down to half of it. Each paused stream may still take in the one message it was
// reading, so the bound is this budget plus a message per stream.

export class InboundBudget {
  private used = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly limitBytes: number) {}

  get exhausted(): boolean {
    return this.used > this.limitBytes;
  }

  take(bytes: number): void {
    this.used += bytes;
  }

  give(bytes: number): void {
    this.used -= bytes;
    if (this.used > this.limitBytes / 2 || this.waiting.size === 0) return;
    const wake = [...this.waiting];
    this.waiting.clear();
    for (const resume of wake) resume();
  }

  /** Calls `resume` once the total is down to half the budget (at once, if it already is). */
  whenRoom(resume: () => void): void {
    if (this.used <= this.limitBytes / 2) resume();
    else this.waiting.add(resume);
  }

  /** A stream that ended no longer waits. */
  forget(resume: () => void): void {
    this.waiting.delete(resume);
  }
}
