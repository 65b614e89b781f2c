// The Temporal worker: hosts the job workflow and its activities on the jobs task queue.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry';
import { DefaultLogger, GracefulShutdownPeriodExpiredError, NativeConnection, Runtime, Worker, type LogLevel, type WorkerOptions as SdkWorkerOptions } from '@temporalio/worker';
import type { Logger } from 'pino';
import type { Tracing } from '../observability/tracing.js';
import type { JobActivities } from './shared.js';

export interface WorkerOptions {
  address: string;
  namespace: string;
  taskQueue: string;
  activities: JobActivities;
  /**
   * A prebuilt workflow bundle (tests build it once); otherwise the workflows are bundled at start.
   * Not used when tracing: the workflows then need the tracing interceptors in their bundle.
   */
  workflowBundlePath?: string | undefined;
  /** Traces workflows and activities in the trace their start carried (observability/tracing.ts). */
  tracing?: Tracing | undefined;
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
/** The workflow interceptor module a tracing worker bundles with the workflows. */
export const tracingInterceptorsPath = fileURLToPath(new URL(`./workflows/tracing.interceptors${builtServer ? '.js' : '.ts'}`, import.meta.url));
/** The bundles `npm run build` precompiles (scripts/build-server.ts), used by a built server: without and with tracing. */
const prebuiltBundle = builtServer ? fileURLToPath(new URL('../../workflow-bundle.js', import.meta.url)) : undefined;
const prebuiltTracedBundle = builtServer ? fileURLToPath(new URL('../../workflow-bundle-traced.js', import.meta.url)) : undefined;

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
  const { tracing } = options;
  const exists = (file: string | undefined) => (file && existsSync(file) ? file : undefined);
  const bundle = tracing ? exists(prebuiltTracedBundle) : (options.workflowBundlePath ?? exists(prebuiltBundle));
  const connection = await NativeConnection.connect({ address: options.address });
  const traced: Partial<SdkWorkerOptions> = tracing
    ? {
        interceptors: {
          // Only read when the workflows are bundled at start; a prebuilt traced bundle has it already.
          workflowModules: bundle ? [] : [tracingInterceptorsPath],
          activity: [(ctx) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) })],
        },
        sinks: { exporter: makeWorkflowExporter(tracing.processor, tracing.resource) },
      }
    : {};
  const worker = await Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: options.activities,
    maxCachedWorkflows: MAX_CACHED_WORKFLOWS,
    shutdownGraceTime: options.drainMs - Math.min(1_000, options.drainMs / 2),
    shutdownForceTime: options.drainMs,
    ...(bundle ? { workflowBundle: { codePath: bundle } } : { workflowsPath }),
    ...traced,
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
