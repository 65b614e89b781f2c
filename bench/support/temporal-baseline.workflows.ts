// The dispatch benchmark's baseline: a bare Temporal workflow of two activities, with nothing of ours
// in it. Bundled on its own (temporal-baseline.ts), so it may import only @temporalio/workflow.
import { proxyActivities } from '@temporalio/workflow';

export interface BaselineActivities {
  /** Marks the moment the first activity runs: the baseline's "agent holds the assignment". */
  first(): Promise<void>;
  second(): Promise<void>;
}

const { first, second } = proxyActivities<BaselineActivities>({ startToCloseTimeout: '1 minute' });

export async function baselineWorkflow(): Promise<void> {
  await first();
  await second();
}
