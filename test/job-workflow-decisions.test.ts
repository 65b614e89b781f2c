// The job workflow's own decisions when its steps misbehave in ways the full system only shows on a
// busy machine. The workflow runs on the real Temporal server; the test plays its activities, so it
// can order events exactly as they happened in the incident each test is named for.
import { randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { JOB_WORKFLOW_TYPE, jobSignals, type FinishJobInput, type JobActivities, type JobWorkflowInput } from '../src/temporal/shared.js';

let connection: NativeConnection;
let client: Client;
beforeAll(async () => {
  connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
});
afterAll(async () => {
  await connection.close();
  await client.connection.close();
});

function defer<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const input = (jobId: string): JobWorkflowInput => ({
  jobId,
  maxAttempts: 3,
  timeouts: { queueMs: 600_000, startMs: 600_000, runMs: 600_000, agentSilenceMs: 600_000, cancelGraceMs: 30_000 },
});

describe('the job workflow', () => {
  it('ends a job cancelled when its claim step fails against the job the cancel already ended', async () => {
    const taskQueue = `decisions-${randomUUID()}`;
    const jobId = randomUUID();
    const claimRunning = defer();
    const claimMayFail = defer();
    const finished: FinishJobInput[] = [];
    const activities: Partial<JobActivities> = {
      async claimJob(id) {
        claimRunning.resolve();
        await claimMayFail.promise;
        // What awaitClaim answers for a job that is already cancelled.
        throw ApplicationFailure.create({ type: 'ConflictError', message: `Job ${id} is cancelled, not queued`, nonRetryable: true });
      },
      async finishJob(request) {
        finished.push(request);
      },
      // The job is still queued: the cancel ends it.
      async cancelIfQueued({ jobId: id, reason }) {
        finished.push({ jobId: id, status: 'cancelled', reason });
        return null;
      },
    };
    // The claim step runs on a worker of its own; workflow workers only run the local bookkeeping,
    // so one can be stopped while the claim step is in flight.
    const activityWorker = await Worker.create({ connection, taskQueue, activities });
    const workflowWorker = () =>
      Worker.create({ connection, taskQueue, activities, enableNonLocalActivities: false, stickyQueueScheduleToStartTimeout: '1s', workflowBundle: { codePath: inject('workflowBundlePath') } });
    const activityRun = activityWorker.run();

    const first = await workflowWorker();
    const firstRun = first.run();
    const handle = await client.workflow.start(JOB_WORKFLOW_TYPE, { taskQueue, workflowId: jobId, args: [input(jobId)] });
    await claimRunning.promise;
    // The workflow's worker is gone (its task outlived its timeout), so the cancel and the claim
    // step's failure reach the workflow together, in the task the next worker takes.
    first.shutdown();
    await firstRun;
    await handle.signal(jobSignals.cancel, { reason: 'wrong repository' });
    claimMayFail.resolve();
    for (;;) {
      const { events } = await handle.fetchHistory();
      if (events?.some((e) => e.activityTaskFailedEventAttributes)) break;
      await new Promise((r) => setTimeout(r, 50));
    }

    const second = await workflowWorker();
    const ended = await second.runUntil(handle.result().catch((err: unknown) => (err instanceof WorkflowFailedError ? err : Promise.reject(err))));
    activityWorker.shutdown();
    await activityRun;

    expect(ended).toBe('cancelled');
    expect(finished).toEqual([{ jobId, status: 'cancelled', reason: 'wrong repository' }]);
  });
  it('stops the run of an agent that claimed the job as the cancel arrived, and ends the job cancelled only once the agent reports', async () => {
    const taskQueue = `decisions-${randomUUID()}`;
    const jobId = randomUUID();
    const steps: string[] = [];
    const reported = defer();
    const claimWaiting = defer();
    const activities: Partial<JobActivities> = {
      // The dispatcher's claim never reaches the claim step before the cancel does.
      // (Waits for its cancellation, so the worker can shut down when the test ends.)
      async claimJob() {
        claimWaiting.resolve();
        await Context.current().cancelled;
        throw new Error('cancelled');
      },
      async cancelIfQueued() {
        steps.push('cancelIfQueued: held by agent-1');
        return { agentId: 'agent-1', attempt: 1 };
      },
      async cancelOnAgent({ graceMs }) {
        steps.push(`cancelOnAgent grace ${graceMs}`);
        if (graceMs > 0) reported.resolve();
      },
      async executeJob() {
        await reported.promise;
        steps.push('the agent reports its run cancelled');
        return { kind: 'cancelled', reason: 'stopped' };
      },
      async attemptStartedAt() {
        return Date.now();
      },
      async finishJob(request) {
        steps.push(`finishJob ${request.status}`);
      },
    };
    const worker = await Worker.create({ connection, taskQueue, activities, workflowBundle: { codePath: inject('workflowBundlePath') } });
    const ended = await worker.runUntil(async () => {
      const handle = await client.workflow.start(JOB_WORKFLOW_TYPE, { taskQueue, workflowId: jobId, args: [input(jobId)] });
      await claimWaiting.promise;
      await handle.signal(jobSignals.cancel, { reason: 'wrong repository' });
      return handle.result();
    });
    expect(ended).toBe('cancelled');
    expect(steps).toEqual(['cancelIfQueued: held by agent-1', 'cancelOnAgent grace 30000', 'the agent reports its run cancelled', 'finishJob cancelled']);
  });
});
