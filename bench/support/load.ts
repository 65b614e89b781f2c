// Load over loopback HTTP with autocannon, run in a worker thread so the load generator does not
// share the event loop of the server it measures (the server under test runs in this process).
import fs from 'node:fs';
import os from 'node:os';
import autocannon from 'autocannon';
import type { ScenarioRow } from './report.js';

export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  /** Paths cycled through by every connection (GET of several jobs); `url`'s path otherwise. */
  paths?: string[];
  connections: number;
  warmupSeconds: number;
  durationSeconds: number;
}

/** A scenario's figures before it is named; other load is always measured here. */
export type LoadResult = Omit<ScenarioRow, 'scenario' | 'otherCores'> & { otherCores: number };

async function fire(spec: LoadSpec, seconds: number): Promise<autocannon.Result> {
  const requests = spec.paths?.map((path) => ({ method: spec.method, path }));
  return autocannon({
    url: spec.url,
    method: spec.method,
    headers: spec.headers ?? {},
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    ...(requests ? { requests } : {}),
    connections: spec.connections,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    workers: 1,
  });
}

/** A warm-up run (discarded), then the measured run. */
export async function measure(spec: LoadSpec): Promise<LoadResult> {
  if (spec.warmupSeconds > 0) await fire(spec, spec.warmupSeconds);
  const { result: r, otherCores } = await withOtherLoad(() => fire(spec, spec.durationSeconds));
  return {
    otherCores,
    requests: r.requests.total,
    rps: r.requests.total / r.duration,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

interface ProcessCpu {
  /** CPU time (µs) of the processes this one started (the Temporal dev server). */
  children: number;
  /** CPU time (µs) of PostgreSQL server processes: the database the bench uses (and anyone else's). */
  postgres: number;
}

/** From /proc (Linux); zeros elsewhere. */
function processCpu(): ProcessCpu {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return { children: 0, postgres: 0 };
  }
  const parentOf = new Map<number, number>();
  const cpu = new Map<number, number>();
  let postgres = 0;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid ...": utime and stime are the 14th and 15th fields, in clock ticks.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const micros = (Number(fields[11]) + Number(fields[12])) * 10_000;
      parentOf.set(Number(entry), Number(fields[1]));
      cpu.set(Number(entry), micros);
      if (comm === 'postgres') postgres += micros;
    } catch {
      // The process ended meanwhile.
    }
  }
  let children = 0;
  for (const [pid, micros] of cpu) {
    for (let p = parentOf.get(pid); p !== undefined && p > 1; p = parentOf.get(p)) {
      if (p === process.pid) {
        children += micros;
        break;
      }
    }
  }
  return { children, postgres };
}

function machineBusyMicros(): number {
  return os.cpus().reduce((sum, { times }) => sum + (times.user + times.nice + times.sys + times.irq) * 1000, 0);
}

/**
 * Runs `work` and tells how many cores other programs kept busy meanwhile: everything on the machine
 * but this process, its children and PostgreSQL. Above a few tenths of a core the figures are skewed.
 */
export async function withOtherLoad<T>(work: () => Promise<T>): Promise<{ result: T; otherCores: number }> {
  const machine0 = machineBusyMicros();
  const own0 = process.cpuUsage();
  const proc0 = processCpu();
  const t0 = performance.now();
  const result = await work();
  const wallMicros = (performance.now() - t0) * 1000;
  const own = process.cpuUsage(own0);
  const proc1 = processCpu();
  const ours = own.user + own.system + (proc1.children - proc0.children) + (proc1.postgres - proc0.postgres);
  const other = machineBusyMicros() - machine0 - ours;
  return { result, otherCores: Math.max(0, other / wallMicros) };
}

/** Cores kept busy over `ms` by this process (the API, the Temporal worker, PGlite) and its children. */
async function ownBusy(ms: number): Promise<number> {
  const before = process.cpuUsage();
  const childrenBefore = processCpu().children;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const used = process.cpuUsage(before);
  const micros = used.user + used.system + (processCpu().children - childrenBefore);
  return micros / ((performance.now() - t0) * 1000);
}

/**
 * Waits until this process and its children are quiet: work a scenario left behind (the Temporal
 * worker running the workflows of jobs just created) must not be billed to the next scenario.
 * Other programs on the machine are not waited for. Returns the seconds waited.
 */
export async function settle(maxSeconds = 30, thresholdCores = 0.1): Promise<number> {
  const start = Date.now();
  let quietSamples = 0;
  while (Date.now() - start < maxSeconds * 1000) {
    quietSamples = (await ownBusy(500)) < thresholdCores ? quietSamples + 1 : 0;
    if (quietSamples >= 2) break;
  }
  return (Date.now() - start) / 1000;
}

/** Runs `op` from `concurrency` loops for `seconds`; in-process, for the cost breakdown. */
export async function closedLoop(concurrency: number, seconds: number, op: () => Promise<unknown>): Promise<{ ops: number; opsPerSecond: number; p50: number; p99: number; failures: number; firstFailure?: unknown }> {
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: unknown;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await op();
          latencies.push(performance.now() - t0);
        } catch (err) {
          failures += 1;
          firstFailure ??= err;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((x, y) => x - y);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { ops: latencies.length, opsPerSecond: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), failures, ...(firstFailure !== undefined ? { firstFailure } : {}) };
}

/**
 * Cores kept busy over `ms` by this process alone (not its children) and by PostgreSQL: what a server
 * in this process costs while clients elsewhere (a child process) sit idle.
 */
export async function serverCores(ms: number): Promise<{ process: number; postgres: number }> {
  const own0 = process.cpuUsage();
  const pg0 = processCpu().postgres;
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const own = process.cpuUsage(own0);
  const wallMicros = (performance.now() - t0) * 1000;
  // A PostgreSQL backend that exits meanwhile (an idle pool connection closed) takes its CPU time out
  // of the sum: never report less than nothing.
  return { process: (own.user + own.system) / wallMicros, postgres: Math.max(0, processCpu().postgres - pg0) / wallMicros };
}

/** CPU time (ms) `work` cost this process, the processes it started (the Temporal dev server) and PostgreSQL. */
export interface CpuCost {
  process: number;
  children: number;
  postgres: number;
}

export async function withCpuCost<T>(work: () => Promise<T>): Promise<{ result: T; cpu: CpuCost }> {
  const own0 = process.cpuUsage();
  const proc0 = processCpu();
  const result = await work();
  const own = process.cpuUsage(own0);
  const proc1 = processCpu();
  return { result, cpu: { process: (own.user + own.system) / 1000, children: (proc1.children - proc0.children) / 1000, postgres: Math.max(0, proc1.postgres - proc0.postgres) / 1000 } };
}
