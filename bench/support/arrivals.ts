// Things that arrive by key (an assignment for a job, a job's end, a workflow's first activity) and
// the code waiting for them, in either order: what arrives before anyone waits is kept until taken
// or cleared, so no arrival is lost to a race with the request that caused it.
export class Arrivals<T> {
  private readonly arrived = new Map<string, T>();
  private readonly waiting = new Map<string, (value: T) => void>();

  record(key: string, value: T): void {
    const waiter = this.waiting.get(key);
    if (waiter) {
      this.waiting.delete(key);
      waiter(value);
    } else {
      this.arrived.set(key, value);
    }
  }

  /** The value for `key`, now or when it arrives; rejects after `timeoutMs`. */
  next(key: string, timeoutMs: number): Promise<T> {
    const value = this.take(key);
    if (value !== undefined) return Promise.resolve(value);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new Error(`nothing arrived for ${key} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(key, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
    });
  }

  take(key: string): T | undefined {
    const value = this.arrived.get(key);
    if (value !== undefined) this.arrived.delete(key);
    return value;
  }

  /** Forgets what arrived unclaimed (between scenarios: it is bounded by what one scenario makes). */
  clear(): void {
    this.arrived.clear();
  }
}
