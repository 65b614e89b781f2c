// The Temporal worker: hosts the job workflow and its activities on the jobs task queue.
import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { JobActivities } from './shared.js';

export interface WorkerOptions {
  address: string;
  namespace: string;
  taskQueue: string;
  activities: JobActivities;
  /** A prebuilt workflow bundle (tests build it once); otherwise the workflows are bundled at start. */
  workflowBundlePath?: string | undefined;
}

// Run from source (tsx) the entry is index.ts; from a build, index.js beside this file.
export const workflowsPath = fileURLToPath(new URL(`./workflows/index${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has stopped (after `worker.shutdown()`), connection closed. */
  done: Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const connection = await NativeConnection.connect({ address: options.address });
  const worker = await Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: options.taskQueue,
    activities: options.activities,
    ...(options.workflowBundlePath ? { workflowBundle: { codePath: options.workflowBundlePath } } : { workflowsPath }),
  });
  const done = worker.run().finally(() => connection.close());
  return { worker, done };
}
