// This process's memory after a full garbage collection, so that figures compare what is live and
// not what the collector has yet to free. `npm run bench` runs without --expose-gc; V8 lets the flag
// be set at run time, and a fresh context then sees `gc`.
import v8 from 'node:v8';
import vm from 'node:vm';

export interface MemorySample {
  /** Resident set size: everything, native memory and worker threads (the Temporal workflow thread) included. */
  rss: number;
  /** Live JavaScript objects of the main thread. */
  heapUsed: number;
  /** Memory held outside the JS heap for JS objects (Buffers among it). */
  external: number;
}

/** RSS moving less than this between two samples half a second apart counts as settled. */
const SETTLED_BYTES = 1024 * 1024;

let gc: (() => void) | undefined;

function collect(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/**
 * Collects, then waits for RSS to settle: V8 and the allocator hand freed pages back to the system
 * gradually, so RSS read at once after busy work would count memory that is already free. The heap
 * and external figures are read right after the collection, before anything runs: a busy process
 * makes garbage meanwhile (every patch chunk passes through several short-lived buffers), and
 * counting it would measure throughput, not what is held.
 */
export async function sampleMemory(maxSeconds = 15): Promise<MemorySample> {
  const deadline = performance.now() + maxSeconds * 1000;
  let previous = Number.NaN;
  for (;;) {
    collect();
    const { heapUsed, external } = process.memoryUsage();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const { rss } = process.memoryUsage();
    if (Math.abs(rss - previous) < SETTLED_BYTES || performance.now() > deadline) return { rss, heapUsed, external };
    previous = rss;
  }
}

export const MB = 1024 * 1024;
