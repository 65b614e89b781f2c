// The Temporal worker: hosts the job workflow and its activities on the jobs task queue.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, GracefulShutdownPeriodExpiredError, NativeConnection, Runtime, Worker, type LogLevel } from '@temporalio/worker';
import type { Logger } from 'pino';
import type { JobActivities } from './shared.js';

export interface WorkerOptions {
  address: string;
  namespace: string;
  taskQueue: string;
  activities: JobActivities;
  /** A prebuilt workflow bundle (tests build it once); otherwise the workflows are bundled at start. */
  workflowBundlePath?: string | undefined;
  /**
   * After shutdown(), how long the worker may take: its activities still running are cancelled a
   * second before the end (or at half of it), and at the end the worker stops whatever is left.
   */
  drainMs: number;
}

/**
 * The SDK sizes its workflow cache by the heap limit (about 2,300 workflows on a 4 GB heap), and a
 * cached workflow costs about 100 KB (a fifth of it on the main thread's heap): ten thousand queued
 * jobs, each waiting in its claim step, filled the cache and held a quarter to half a gigabyte. The
 * cache only needs the jobs that are moving (being assigned, started, finished); a job evicted while
 * it waits is replayed from its few history events when its claim completes, which costs
 * milliseconds once instead of memory for as long as it waits.
 */
export const MAX_CACHED_WORKFLOWS = 250;

const builtServer = !import.meta.url.endsWith('.ts');
// Run from source (tsx) the entry is index.ts; from a build, index.js beside this file.
export const workflowsPath = fileURLToPath(new URL(`./workflows/index${builtServer ? '.js' : '.ts'}`, import.meta.url));
/** The bundle `npm run build` precompiles (scripts/build-server.ts), used by a built server. */
const prebuiltBundle = builtServer ? fileURLToPath(new URL('../../workflow-bundle.js', import.meta.url)) : undefined;

export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has stopped (after `worker.shutdown()`), connection closed. */
  done: Promise<void>;
}

let runtimeInstalled = false;

/**
 * Sends the Temporal SDK's own log (bundler output, worker state, and its native core's, which it
 * would otherwise print to the console as coloured text) to our logger at warn and above; and,
 * with `metricsAddress`, serves the worker's own Prometheus metrics there. The SDK allows one
 * Runtime per process, so only the first call takes effect.
 */
export function installTemporalLogging(logger: Logger, metricsAddress?: string): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const levels: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };
  Runtime.install({
    // The process stops its roles in order on SIGINT/SIGTERM (main.ts); the worker must not stop itself first.
    shutdownSignals: [],
    logger: new DefaultLogger('WARN', ({ level, message, meta }) => {
      // A worker stopped at the end of its drain budget is the budget at work (the stop has said what
      // was left), not a failure: the SDK's "Worker failed" for it is a warning here.
      const forced = meta?.error instanceof GracefulShutdownPeriodExpiredError;
      logger[forced ? 'warn' : levels[level]]({ temporal: meta }, message);
    }),
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      ...(metricsAddress ? { metrics: { prometheus: { bindAddress: metricsAddress } } } : {}),
    },
  });
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const bundle = options.workflowBundlePath ?? (prebuiltBundle && existsSync(prebuiltBundle) ? prebuiltBundle : undefined);
  const connection = await NativeConnection.connect({ address: options.address });
  const worker = await Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: options.activities,
    maxCachedWorkflows: MAX_CACHED_WORKFLOWS,
    shutdownGraceTime: options.drainMs - Math.min(1_000, options.drainMs / 2),
    shutdownForceTime: options.drainMs,
    ...(bundle ? { workflowBundle: { codePath: bundle } } : { workflowsPath }),
  });
  // Stopped at the end of its drain (shutdownForceTime) is how the budget ends, not a failure: the
  // caller has logged what was left.
  const done = worker
    .run()
    .catch((err: unknown) => {
      if (!(err instanceof GracefulShutdownPeriodExpiredError)) throw err;
    })
    .finally(() => connection.close());
  return { worker, done };
}
