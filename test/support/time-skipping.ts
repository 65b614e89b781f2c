// Temporal's time-skipping test server, for tests of deadlines that operators set in minutes and
// hours. scripts/install-temporal-test-server.sh installs it (.ci/run does, and exports
// TEMPORAL_TEST_SERVER_PATH); without that variable the suites that need it are skipped, and the run's
// summary says so.
//
// The server skips time only while nothing is in flight, and it counts a scheduled activity as in
// flight until the activity closes. A job's workflow spends every wait (in the queue, for the start,
// for the run) on one activity that completes asynchronously, when an agent acts: to the server that
// is work in progress, so its clock runs at wall-clock speed. skipToNextDeadline moves the clock on
// all the same, and safely: once the workflow waits on the named activity and nothing else, and the
// test knows nothing will complete it meanwhile, it lifts that activity's hold on the clock for the
// span up to just before the earliest deadline the workflow has armed (the server takes the hold
// back at the end of the span, before any deadline can fire), so the deadline itself fires at
// wall-clock speed, `marginMs` later, as it would in production.
import { Client, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { pino } from 'pino';
import { afterAll, beforeAll, expect } from 'vitest';
import type { JobActivities } from '../../src/temporal/shared.js';
import { installTemporalLogging } from '../../src/temporal/worker.js';

/** The installed test server's launcher, or undefined (then the suites that need it are skipped). */
export const testServerPath: string | undefined = process.env.TEMPORAL_TEST_SERVER_PATH || undefined;

/** A deadline the workflow has armed on Temporal's clock, as its history and pending activity show it. */
export interface Deadline {
  /** What arms it: a workflow timer (a sleep, a condition's timeout), or a timeout of the pending activity. */
  kind: 'timer' | 'activity schedule-to-close' | 'activity start-to-close' | 'activity heartbeat';
  /** Its length as the workflow set it. */
  afterMs: number;
  /** When it fires, on Temporal's clock (epoch ms). */
  at: number;
  /** The history event that armed it (a timer started, an activity scheduled). */
  eventId: number;
}

interface Armed {
  deadlines: Deadline[];
  /** No workflow task is scheduled or running. */
  settled: boolean;
  /**
   * Settled, and `waitingOn` is pending, handed to its worker; any other pending activity is one the
   * workflow gave up (cancel requested: the test server keeps it until it times out).
   */
  quiet: boolean;
  /** The pending activities, each of which holds the server's clock. */
  holds: number;
  /** What a failure message shows. */
  shown: { history: string[]; pendingActivities: string[] };
}

type Timestamp = { seconds?: { toNumber(): number } | number | string | null; nanos?: number | null } | null | undefined;

function ms(value: Timestamp): number {
  if (!value) return 0;
  const seconds = typeof value.seconds === 'object' && value.seconds !== null ? value.seconds.toNumber() : Number(value.seconds ?? 0);
  return seconds * 1000 + Math.floor((value.nanos ?? 0) / 1e6);
}

const { EventType, PendingActivityState } = proto.api.enums.v1;

async function armedDeadlines(handle: WorkflowHandle, waitingOn: keyof JobActivities): Promise<Armed> {
  const [history, description] = await Promise.all([handle.fetchHistory(), handle.describe()]);
  const events = history.events ?? [];
  const timers = new Map<number, Deadline>();
  const activities = new Map<number, proto.api.history.v1.IActivityTaskScheduledEventAttributes & { scheduledAt: number }>();
  let lastTaskScheduled = -1;
  let lastTaskCompleted = -1;
  for (const [index, event] of events.entries()) {
    const eventId = Number(event.eventId);
    const at = ms(event.eventTime as Timestamp);
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        lastTaskScheduled = index;
        break;
      case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        lastTaskCompleted = index;
        break;
      case EventType.EVENT_TYPE_TIMER_STARTED: {
        const afterMs = ms(event.timerStartedEventAttributes?.startToFireTimeout as Timestamp);
        timers.set(eventId, { kind: 'timer', afterMs, at: at + afterMs, eventId });
        break;
      }
      case EventType.EVENT_TYPE_TIMER_FIRED:
        timers.delete(Number(event.timerFiredEventAttributes?.startedEventId));
        break;
      case EventType.EVENT_TYPE_TIMER_CANCELED:
        timers.delete(Number(event.timerCanceledEventAttributes?.startedEventId));
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        activities.set(eventId, { ...event.activityTaskScheduledEventAttributes, scheduledAt: at });
        break;
      default: {
        const closed =
          event.activityTaskCompletedEventAttributes ??
          event.activityTaskFailedEventAttributes ??
          event.activityTaskTimedOutEventAttributes ??
          event.activityTaskCanceledEventAttributes;
        if (closed) activities.delete(Number(closed.scheduledEventId));
      }
    }
  }

  const deadlines = [...timers.values()];
  const pending = description.raw.pendingActivities ?? [];
  for (const [eventId, scheduled] of activities) {
    const scheduleToClose = ms(scheduled.scheduleToCloseTimeout as Timestamp);
    if (scheduleToClose > 0) deadlines.push({ kind: 'activity schedule-to-close', afterMs: scheduleToClose, at: scheduled.scheduledAt + scheduleToClose, eventId });
    const state = pending.find((p) => p.activityId === scheduled.activityId);
    if (state?.state !== PendingActivityState.PENDING_ACTIVITY_STATE_STARTED) continue;
    const startedAt = ms(state.lastStartedTime as Timestamp);
    const startToClose = ms(scheduled.startToCloseTimeout as Timestamp);
    if (startToClose > 0) deadlines.push({ kind: 'activity start-to-close', afterMs: startToClose, at: startedAt + startToClose, eventId });
    const heartbeat = ms(scheduled.heartbeatTimeout as Timestamp);
    if (heartbeat > 0) deadlines.push({ kind: 'activity heartbeat', afterMs: heartbeat, at: Math.max(startedAt, ms(state.lastHeartbeatTime as Timestamp)) + heartbeat, eventId });
  }
  deadlines.sort((a, b) => a.at - b.at);

  const settled = lastTaskCompleted > lastTaskScheduled;
  const waiting = pending.filter((p) => p.activityType?.name === waitingOn && p.state === PendingActivityState.PENDING_ACTIVITY_STATE_STARTED);
  const givenUp = pending.filter((p) => p.state === PendingActivityState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED);
  return {
    deadlines,
    settled,
    quiet: settled && waiting.length === 1 && waiting.length + givenUp.length === pending.length,
    holds: pending.length,
    shown: {
      history: events.map((e) => EventType[e.eventType ?? 0]?.replace('EVENT_TYPE_', '') ?? String(e.eventType)),
      pendingActivities: pending.map((p) => `${p.activityType?.name} ${PendingActivityState[p.state ?? 0]}`),
    },
  };
}

export interface TimeSkippingServer {
  /** host:port, for the system under test's TEMPORAL_ADDRESS. */
  readonly address: string;
  /**
   * Waits until the workflow waits on the activity `waitingOn` and nothing else (the test must know
   * that nothing completes it meanwhile; activities the workflow gave up may linger), moves Temporal's clock to `marginMs` before the earliest
   * deadline the workflow has armed, and resolves with that deadline once it has fired and the
   * workflow has acted on it.
   */
  skipToNextDeadline(workflowId: string, waitingOn: keyof JobActivities, marginMs?: number): Promise<Deadline>;
}

/** One time-skipping test server for the enclosing describe block's tests, which run one at a time. */
export function useTimeSkippingServer(): TimeSkippingServer {
  let env: TestWorkflowEnvironment | undefined;
  let client: Client | undefined;
  beforeAll(async () => {
    if (!testServerPath) throw new Error('TEMPORAL_TEST_SERVER_PATH is unset (scripts/install-temporal-test-server.sh installs the server)');
    // The SDK allows one runtime per process: made here first, it must be the one the system installs.
    installTemporalLogging(pino({ level: process.env.TEST_LOG_LEVEL ?? 'error' }));
    // --enable-time-skipping: nothing holds the clock but the server's own work in flight. The test
    // lifts only the holds it knows to be waits, and nothing else lifts any (this client never
    // awaits a workflow's result, which would).
    env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: testServerPath }, extraArgs: ['--enable-time-skipping'] } });
    client = new Client({ connection: env.connection });
  });
  afterAll(async () => {
    await env?.teardown();
  });
  /** Every workflow skipped on: the earlier ones must have ended, and may leave holds behind. */
  const seen = new Set<string>();
  /**
   * The holds that the earlier workflows' activities still keep: the test server keeps an activity
   * that a workflow gave up (cancel requested) until it times out, and one of a workflow that ended
   * holds the clock for good. Their timeouts change nothing, so a skip may pass them.
   */
  const leftoverHolds = async (client: Client, current: string): Promise<number> => {
    let holds = 0;
    for (const workflowId of seen) {
      if (workflowId === current) continue;
      const { status, raw } = await client.workflow.getHandle(workflowId).describe();
      if (status.name === 'RUNNING') throw new Error(`workflow ${workflowId} still runs: the tests on one time-skipping server must end each job before the next skips time`);
      holds += raw.pendingActivities?.length ?? 0;
    }
    return holds;
  };
  const started = () => {
    if (!env || !client) throw new Error('the time-skipping server is used before beforeAll started it');
    return { env, client };
  };
  return {
    get address() {
      return started().env.address;
    },
    async skipToNextDeadline(workflowId, waitingOn, marginMs = 500) {
      const { env, client } = started();
      const handle = client.workflow.getHandle(workflowId);
      seen.add(workflowId);
      let armed: Armed | undefined;
      // The system starts the workflow in its own time (through its outbox): not found yet is not quiet.
      const look = async () => (armed = await armedDeadlines(handle, waitingOn).catch((err: unknown) => (err instanceof WorkflowNotFoundError ? undefined : Promise.reject(err))));
      const explain = (what: string) => (err: unknown) => {
        throw new Error(`workflow ${workflowId} ${what}: ${JSON.stringify(armed?.shown)}`, { cause: err });
      };
      await expect.poll(async () => (await look())?.quiet).toBe(true).catch(explain(`does not come to wait on ${waitingOn} and nothing else`));
      const next = armed!.deadlines[0];
      if (!next) throw new Error(`workflow ${workflowId} waits on ${waitingOn} with no deadline armed`);
      const holds = armed!.holds + (await leftoverHolds(client, workflowId));
      // Skipping up to the deadline, not past it: a deadline that closed the activity while its hold
      // was lifted would release that hold a second time. The sleep lifts one hold for its span and
      // takes it back at the end; the others are lifted around it.
      const skipMs = next.at - marginMs - (await env.currentTimeMs());
      const testService = env.connection.testService!;
      if (skipMs > 0) {
        for (let i = 1; i < holds; i++) await testService.unlockTimeSkipping({});
        await env.sleep(skipMs);
        for (let i = 1; i < holds; i++) await testService.lockTimeSkipping({});
      }
      // Resolved once the workflow has taken the deadline in (its workflow task completed), so that
      // what the test makes the agent do next cannot race that task. (The test server, unlike
      // Temporal, rejects a task that asks to cancel an activity completed while the task ran.)
      const taken = (now: Armed | undefined) => now !== undefined && now.settled && !now.deadlines.some((d) => d.eventId === next.eventId && d.kind === next.kind);
      await expect.poll(async () => taken(await look())).toBe(true).catch(explain(`did not take in its ${next.kind} deadline`));
      return next;
    },
  };
}
