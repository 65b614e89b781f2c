// The Temporal baseline of the dispatch benchmark: temporal-baseline.workflows.ts on its own task queue, run by
// a Worker of its own in this process, on the same Temporal server as the system under test. It says
// when each workflow's first activity began, for the start → first activity latency.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import type { BaselineActivities, baselineWorkflow } from './temporal-baseline.workflows.js';
import { Arrivals } from './arrivals.js';

const workflowsPath = fileURLToPath(new URL(`./temporal-baseline.workflows${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));
const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error: console.error, log() {} };

export interface TemporalBaseline {
  /** performance.now() of each workflow's first activity, by workflow id. */
  firstActivity: Arrivals<number>;
  /** Starts a workflow and resolves once it is started (not finished). */
  start(workflowId?: string): Promise<{ workflowId: string; result(): Promise<void> }>;
  /** Starts a workflow and resolves once it completed. */
  execute(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTemporalBaseline(client: Client, address: string, namespace: string): Promise<TemporalBaseline> {
  const taskQueue = `bench-baseline-${randomUUID()}`;
  const firstActivity = new Arrivals<number>();
  const activities: BaselineActivities = {
    async first() {
      // Always set for an activity of a workflow (only standalone activities lack it).
      const execution = Context.current().info.workflowExecution;
      if (execution) firstActivity.record(execution.workflowId, performance.now());
    },
    async second() {},
  };
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: quietLogger });
  const connection = await NativeConnection.connect({ address });
  const worker = await Worker.create({ connection, namespace, taskQueue, activities, workflowBundle: { code } });
  const running = worker.run().finally(() => connection.close());
  const start = async (workflowId: string = randomUUID()) => {
    const handle = await client.workflow.start<typeof baselineWorkflow>('baselineWorkflow', { workflowId, taskQueue, args: [] });
    return { workflowId, result: () => handle.result() };
  };
  return {
    firstActivity,
    start,
    execute: () => client.workflow.execute<typeof baselineWorkflow>('baselineWorkflow', { workflowId: randomUUID(), taskQueue, args: [] }),
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    },
  };
}
