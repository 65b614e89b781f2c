// The Temporal side of the JobWorkflows port: starts a job's workflow (workflow id = job id) and
// delivers cancellation requests as signals.
import { ActivityCancelledError, ActivityNotFoundError, Client, Connection, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import type { CompletionResult, JobStepCompletions, JobWorkflows } from '../services/workflow-ports.js';
import { AGENT_LOST_FAILURE, AGENT_REJECTED_FAILURE, JOB_WORKFLOW_TYPE, jobSignals, type CancelRequest, type JobWorkflowInput } from './shared.js';

/**
 * With `traced`, starting and signalling a workflow makes a span (in the caller's active trace) and
 * hands its context to the workflow in the call's Temporal headers.
 */
export async function connectTemporal(address: string, namespace: string, traced = false): Promise<Client> {
  const connection = await Connection.connect({ address });
  return new Client({ connection, namespace, ...(traced ? { interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] } } : {}) });
}

export function createJobWorkflows(client: Client, taskQueue: string): JobWorkflows {
  // A job has one life: never a second run under its id, even after the first one ended.
  const once = { workflowIdReusePolicy: 'REJECT_DUPLICATE', workflowIdConflictPolicy: 'USE_EXISTING' } as const;
  return {
    async start(input: JobWorkflowInput) {
      try {
        await client.workflow.start(JOB_WORKFLOW_TYPE, { workflowId: input.jobId, taskQueue, args: [input], ...once });
      } catch (err) {
        if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      }
    },
    /**
     * Signals the cancel, starting the workflow first if the outbox has not yet (signal-with-start).
     * Resolves false when the workflow already ended: nothing is waiting for the signal any more.
     */
    async requestCancel(input: JobWorkflowInput, reason: string) {
      try {
        await client.workflow.signalWithStart(JOB_WORKFLOW_TYPE, {
          workflowId: input.jobId,
          taskQueue,
          args: [input],
          signal: jobSignals.cancel,
          signalArgs: [{ reason } satisfies CancelRequest],
          workflowIdReusePolicy: 'REJECT_DUPLICATE',
        });
        return true;
      } catch (err) {
        if (err instanceof WorkflowExecutionAlreadyStartedError || err instanceof WorkflowNotFoundError) return false;
        throw err;
      }
    },
  };
}

/** Completion of the claim and execute activities by task token, for the agent gateway. */
export function createJobStepCompletions(client: Client): JobStepCompletions {
  const token = (base64: string) => Buffer.from(base64, 'base64');
  // An activity the workflow stopped waiting for (cancelled, timed out, already completed) is gone,
  // which the caller treats as "the workflow has moved on", never as a failure to retry.
  const settle = async (operation: () => Promise<void>): Promise<CompletionResult> => {
    try {
      await operation();
      return 'done';
    } catch (err) {
      if (err instanceof ActivityNotFoundError || err instanceof ActivityCancelledError) return 'gone';
      throw err;
    }
  };
  return {
    completeClaim: (taskToken, claim) => settle(() => client.activity.complete(token(taskToken), claim)),
    completeExecution: (taskToken, outcome) => settle(() => client.activity.complete(token(taskToken), outcome)),
    failExecution: (taskToken, { kind, reason }) =>
      settle(() =>
        client.activity.fail(token(taskToken), ApplicationFailure.create({ type: kind === 'rejected' ? AGENT_REJECTED_FAILURE : AGENT_LOST_FAILURE, message: reason, nonRetryable: true })),
      ),
    heartbeatExecution: (taskToken) => settle(() => client.activity.heartbeat(token(taskToken))),
    async signalClaim(jobId, claim) {
      try {
        await client.workflow.getHandle(jobId).signal(jobSignals.claimed, claim);
        return 'done';
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return 'gone';
        throw err;
      }
    },
  };
}
