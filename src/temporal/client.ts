// The Temporal side of the JobWorkflows port: starts a job's workflow (workflow id = job id) and
// delivers cancellation requests as signals.
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import type { JobWorkflows } from '../services/jobs.service.js';
import { JOB_WORKFLOW_TYPE, jobSignals, type CancelRequest, type JobWorkflowInput } from './shared.js';

export async function connectTemporal(address: string, namespace: string): Promise<Client> {
  const connection = await Connection.connect({ address });
  return new Client({ connection, namespace });
}

export function createJobWorkflows(client: Client, taskQueue: string): JobWorkflows {
  return {
    async start(input: JobWorkflowInput) {
      await client.workflow.start(JOB_WORKFLOW_TYPE, {
        workflowId: input.jobId,
        taskQueue,
        args: [input],
        // A retried create must not start a second life for the same job.
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
    },
    async requestCancel(jobId: string, reason: string) {
      try {
        await client.workflow.getHandle(jobId).signal<[CancelRequest]>(jobSignals.cancel, { reason });
        return true;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      }
    },
  };
}
