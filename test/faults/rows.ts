// The faults of issue 9, one row each, on a fresh job that prints numbered lines. Each row says
// what it injects and what must survive it; the invariants every row is held to (no line lost or
// stored twice, never two live runs of a job, no finished run thrown away, no run going on after its
// job ended, attempts marked in the log, no stuck slot afterwards) are judged in scenario.ts.
import type { Agent } from './agents.js';
import { killEverything200 } from './bulk-row.js';
import { cancelJob, type Tenant } from './client.js';
import type { JobWatch } from './observer.js';
import { pollUntil } from './processes.js';
import type { Expectation, Row, RowContext, RowResult } from './scenario.js';
import { requeueAfterMs, settings } from './settings.js';
import type { RoleName } from './system.js';
import { seconds } from './table.js';
import { FollowingViewer } from './viewer.js';

const silence = settings.silenceTimeoutMs;
/** Longer than the silence timeout, which is also an agent's lease. */
const pastSilence = silence + settings.marginMs;
/** Longer than the server waits before it gives a silent agent's job to another agent. */
const pastRequeue = requeueAfterMs + settings.marginMs;

interface Injected {
  /** When the fault was over (the part restored), for the recovery time. */
  faultEnd: number;
  /** The row's expectation when it depends on what the fault turned out to be (a slow restart). */
  expectation?: Expectation;
}

interface SingleJob {
  lines: number;
  /** The fault is injected once the command has printed this line. */
  faultAtLine: number;
  expectation: Expectation;
  inject(ctx: RowContext, job: { tenant: Tenant; jobId: string; watch: JobWatch; agents: Agent[] }): Promise<Injected>;
  /** Checks of the row's own, once the job has ended. */
  after?(ctx: RowContext, watch: JobWatch, injected: Injected): Promise<void> | void;
}

/** The shape of most rows: an agent, a job, the fault at line n, the end, a probe job, the verdict. */
async function singleJob(ctx: RowContext, spec: SingleJob): Promise<RowResult> {
  const tenant = await ctx.tenant();
  const agents = [await ctx.agent(tenant, 'a')];
  const jobId = await ctx.submit(tenant, spec.lines);
  const watch = ctx.watch(tenant, jobId);
  let injected: Injected | undefined;
  if (await ctx.printed(jobId, spec.faultAtLine)) {
    injected = await spec.inject(ctx, { tenant, jobId, watch, agents });
    ctx.log(`fault over; waiting for the job to end`);
    if (await ctx.untilTerminal(watch, injected.faultEnd)) {
      await spec.after?.(ctx, watch, injected);
      await ctx.probe(tenant);
    }
  }
  const measures = await ctx.measure(tenant, watch);
  return ctx.judge(injected?.expectation ?? spec.expectation, measures, injected ? watch.progressAfter(injected.faultEnd) : undefined);
}

const succeededOnce: Expectation = { status: 'succeeded', attempts: [1] };
const succeededOnRetry: Expectation = { status: 'succeeded', attempts: [2] };
const succeededEither: Expectation = { status: 'succeeded', attempts: [1, 2] };

/** Restarts a role and notes how long it was down (from `since`). */
async function restart(ctx: RowContext, name: RoleName, since: number): Promise<number> {
  await ctx.sut.role(name).start(settings.roleReadyTimeoutMs);
  const now = Date.now();
  ctx.note(`${name} down ${seconds(now - since)}`);
  return now;
}

/**
 * Proof that a gateway fault reached the agent: its stream dropped and it was welcomed again (by the
 * restarted gateway). Without it a row could pass on a fault that never happened.
 */
async function reconnected(ctx: RowContext, agent: Agent, before: number, since: number): Promise<void> {
  if (await pollUntil(() => agent.connections() > before, Math.min(20_000, ctx.deadline - Date.now()))) ctx.note(`agent welcomed again ${seconds(Date.now() - since)} after the gateway was back`);
  else ctx.fail('the agent was not welcomed again within 20 s of the gateway coming back');
}

/**
 * Log storage must keep going while only Temporal is away (liveness never waits on it): no pause in
 * it longer than this (three heartbeats; the lines come every 100 ms and are polled every 250 ms).
 */
const allowedStorageStall = Math.max(3 * settings.heartbeatIntervalMs, 2_000);

function storageKeptGoing(ctx: RowContext, watch: JobWatch, from: number, to: number): void {
  const stall = watch.longestStall(from, Math.min(to, watch.terminalAt ?? to));
  ctx.note(`longest pause in log storage during the outage ${seconds(stall)}`);
  if (stall > allowedStorageStall) ctx.fail(`log storage stopped for ${seconds(stall)} while Temporal was down`);
}

async function stopTemporalFor(ctx: RowContext, outageMs: number): Promise<Injected> {
  const started = Date.now();
  await ctx.sut.temporal.stop();
  ctx.log(`Temporal stopped in ${seconds(Date.now() - started)}`);
  await ctx.hold(started + outageMs - Date.now());
  await ctx.sut.temporal.start(settings.roleReadyTimeoutMs);
  const faultEnd = Date.now();
  ctx.note(`Temporal down ${seconds(faultEnd - started)}`);
  return { faultEnd };
}

export const rows: Row[] = [
  {
    id: 'agent-kill',
    fault: 'agent kill -9 mid-job, restarted at once',
    expected: 'the restarted agent stops the orphaned run before anything else runs; the job runs again as attempt 2',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 80,
        faultAtLine: 15,
        expectation: succeededOnRetry,
        async inject(c, { agents: [agent] }) {
          const killedAt = Date.now();
          await agent!.process.kill();
          await agent!.process.start(settings.roleReadyTimeoutMs);
          c.note(`agent back in ${seconds(Date.now() - killedAt)}`);
          return { faultEnd: Date.now() };
        },
      }),
  },
  {
    id: 'agent-kill-lease',
    fault: 'agent kill -9 mid-job, restarted after the lease',
    expected: 'requeued once the lease is over; attempt 2 runs when the agent is back',
    deadlineMs: 80_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 80,
        faultAtLine: 15,
        expectation: succeededOnRetry,
        async inject(c, { agents: [agent] }) {
          const killedAt = Date.now();
          await agent!.process.kill();
          await c.hold(pastRequeue);
          await agent!.process.start(settings.roleReadyTimeoutMs);
          c.note(`agent down ${seconds(Date.now() - killedAt)}`);
          return { faultEnd: Date.now() };
        },
      }),
  },
  {
    id: 'gateway-kill-fast',
    fault: 'the only gateway kill -9, restarted at once',
    expected: 'a restart shorter than the silence timeout requeues nothing: attempt 1 finishes',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 100,
        faultAtLine: 15,
        expectation: succeededOnce,
        async inject(c, { agents: [agent] }) {
          const before = agent!.connections();
          const killedAt = Date.now();
          await c.sut.role('gateway').kill();
          const faultEnd = await restart(c, 'gateway', killedAt);
          await reconnected(c, agent!, before, faultEnd);
          if (faultEnd - killedAt < silence) return { faultEnd };
          // The row must not depend on a restart being fast: one this slow is judged as the slow row.
          c.note('the restart took longer than the silence timeout on this machine, so either attempt count is right');
          return { faultEnd, expectation: succeededEither };
        },
      }),
  },
  {
    id: 'gateway-kill-slow',
    fault: 'the only gateway kill -9, restarted after longer than the silence timeout',
    expected: 'the agent stops its run when its lease ends and says so; no two runs; the job ends succeeded',
    deadlineMs: 100_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 150,
        faultAtLine: 15,
        expectation: succeededEither,
        async inject(c, { agents: [agent] }) {
          const before = agent!.connections();
          const killedAt = Date.now();
          await c.sut.role('gateway').kill();
          await c.hold(pastSilence);
          const faultEnd = await restart(c, 'gateway', killedAt);
          await reconnected(c, agent!, before, faultEnd);
          return { faultEnd };
        },
      }),
  },
  {
    id: 'gateway-kill-two',
    fault: "two gateways behind a proxy, the agent's gateway kill -9",
    expected: 'the agent moves to the other gateway and attempt 1 finishes there',
    deadlineMs: 60_000,
    async run(ctx) {
      await ctx.sut.role('gateway2').start(settings.roleReadyTimeoutMs);
      const both = [ctx.sut.gatewayAddress('gateway'), ctx.sut.gatewayAddress('gateway2')];
      const tenant = await ctx.tenant();
      const agent = await ctx.agent(tenant, 'a', { gateways: both });
      const jobId = await ctx.submit(tenant, 100);
      const watch = ctx.watch(tenant, jobId);
      let faultEnd: number | undefined;
      if (await ctx.printed(jobId, 15)) {
        const held = [...agent.link.connectionsByTarget().keys()][0];
        const victim = held === both[1] ? 'gateway2' : 'gateway';
        const before = agent.connections();
        faultEnd = Date.now();
        await ctx.sut.role(victim).kill();
        if (await pollUntil(() => agent.connections() > before, ctx.deadline - Date.now())) ctx.note(`agent on the other gateway ${seconds(Date.now() - faultEnd)} after the kill`);
        else ctx.fail('the agent never reconnected to the other gateway');
        if (await ctx.untilTerminal(watch)) await ctx.probe(tenant);
      }
      return ctx.judge(succeededOnce, await ctx.measure(tenant, watch), faultEnd === undefined ? undefined : watch.progressAfter(faultEnd));
    },
  },
  {
    id: 'gateway-freeze',
    fault: 'the only gateway SIGSTOP for longer than the silence timeout, then SIGCONT',
    expected: 'no two runs, nothing lost; afterwards the idle agent takes new work at once',
    deadlineMs: 90_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 200,
        faultAtLine: 15,
        expectation: succeededEither,
        async inject(c) {
          if (!c.sut.role('gateway').freeze()) c.fail('the gateway could not be frozen');
          await c.hold(pastSilence + 1_000);
          c.sut.role('gateway').thaw();
          c.note(`gateway frozen ${seconds(pastSilence + 1_000)}`);
          return { faultEnd: Date.now() };
        },
      }),
  },
  {
    id: 'worker-kill',
    fault: 'the worker kill -9 as the job finishes, restarted 4 s later',
    expected: 'the finished run is kept once the worker is back: attempt 1 succeeded',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 60,
        faultAtLine: 50,
        expectation: succeededOnce,
        async inject(c) {
          const killedAt = Date.now();
          await c.sut.role('worker').kill();
          await c.hold(4_000);
          return { faultEnd: await restart(c, 'worker', killedAt) };
        },
      }),
  },
  {
    id: 'api-kill',
    fault: 'the API kill -9 with a WebSocket viewer following, restarted at once',
    expected: 'the viewer resumes with `after` and gets every line once; the job is untouched',
    deadlineMs: 60_000,
    async run(ctx) {
      const tenant = await ctx.tenant();
      await ctx.agent(tenant, 'a');
      const jobId = await ctx.submit(tenant, 80);
      const watch = ctx.watch(tenant, jobId);
      const viewer = new FollowingViewer(tenant, jobId);
      viewer.start();
      ctx.onDispose(() => viewer.stop());
      let faultEnd: number | undefined;
      if (await ctx.printed(jobId, 20)) {
        const killedAt = Date.now();
        await ctx.sut.role('api').kill();
        faultEnd = await restart(ctx, 'api', killedAt);
        if (await ctx.untilTerminal(watch)) {
          if (!(await pollUntil(() => viewer.done, ctx.deadline - Date.now()))) ctx.fail('the viewer never got the end frame');
          const { duplicates, gaps } = viewer.problems();
          ctx.note(`viewer: ${viewer.seqs.length} lines, ${viewer.reconnects} reconnect(s), ${gaps} missing, ${duplicates} repeated`);
          if (viewer.reconnects === 0) ctx.fail('the viewer was never disconnected: the fault did not happen');
          if (gaps > 0 || duplicates > 0) ctx.fail(`the viewer missed ${gaps} and repeated ${duplicates} line(s)`);
          if (viewer.endedWith && viewer.endedWith.lastSeq !== viewer.lastSeq) ctx.fail(`the end frame says last seq ${viewer.endedWith.lastSeq}, the viewer's last is ${viewer.lastSeq}`);
          await ctx.probe(tenant);
        }
      }
      return ctx.judge(succeededOnce, await ctx.measure(tenant, watch), faultEnd === undefined ? undefined : watch.progressAfter(faultEnd));
    },
  },
  {
    id: 'temporal-short',
    fault: 'the Temporal dev server stopped longer than a heartbeat interval, shorter than the silence timeout',
    expected: 'log storage and heartbeats go on; nothing requeued: attempt 1 succeeded',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 120,
        faultAtLine: 15,
        expectation: succeededOnce,
        async inject(c, { watch }) {
          const from = Date.now();
          // Well past a heartbeat, and past the longest storage pause allowed, so a full stall shows.
          const injected = await stopTemporalFor(c, Math.max(silence / 2, allowedStorageStall + 2_000));
          storageKeptGoing(c, watch, from, injected.faultEnd);
          return injected;
        },
      }),
  },
  {
    id: 'temporal-long',
    fault: 'the Temporal dev server stopped longer than the silence timeout',
    expected: 'the agent was heard all along, so nothing is requeued when Temporal is back: attempt 1 succeeded',
    deadlineMs: 90_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: Math.ceil((pastSilence + 12_000) / 1000 / settings.lineIntervalS),
        faultAtLine: 15,
        expectation: succeededOnce,
        async inject(c, { watch }) {
          const from = Date.now();
          const injected = await stopTemporalFor(c, pastSilence);
          storageKeptGoing(c, watch, from, injected.faultEnd);
          return injected;
        },
      }),
  },
  {
    id: 'postgres-restart',
    fault: 'PostgreSQL restarted mid-ingest',
    expected: 'the roles reconnect; no line lost or stored twice; attempt 1 succeeded',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 100,
        faultAtLine: 20,
        expectation: succeededOnce,
        async inject(c) {
          const started = Date.now();
          const restartCluster = c.sut.restartPostgresCluster;
          if (restartCluster) {
            await restartCluster();
            c.note(`pg_ctlcluster restart took ${seconds(Date.now() - started)}`);
          } else {
            // The machine's only cluster is shared with other work, so by default the restart is
            // what the roles see of one: every connection reset at once and none accepted for 3 s.
            const cut = c.sut.databaseProxy.sever();
            if (cut === 0) c.fail('no database connection was open to reset: the fault did not happen');
            await c.hold(3_000);
            c.sut.databaseProxy.restore();
            c.note(`${cut} database connections reset, none accepted for 3 s (FAULTS_PG_RESTART=cluster restarts the real cluster)`);
          }
          return { faultEnd: Date.now() };
        },
      }),
  },
  {
    id: 'agent-link-cut',
    fault: "an agent's link cut (proxy dropped) for longer than the lease, a second agent idle",
    expected: 'the cut-off agent stops its run when its lease ends; only then does the other agent run attempt 2',
    deadlineMs: 90_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 200,
        faultAtLine: 15,
        expectation: succeededOnRetry,
        async inject(c, { tenant, agents: [agent], watch }) {
          await c.agent(tenant, 'b');
          const cutAt = Date.now();
          if (agent!.link.sever() === 0) c.fail('the agent had no open link to cut: the fault did not happen');
          await c.hold(pastRequeue);
          agent!.link.restore();
          c.note(`link cut ${seconds(Date.now() - cutAt)}`);
          const second = watch.statuses.find((s) => s.at > cutAt && s.value.attempt >= 2);
          if (second) c.note(`attempt 2 seen ${seconds(second.at - cutAt)} after the cut`);
          return { faultEnd: Date.now() };
        },
      }),
  },
  {
    id: 'cancel-gateway-down',
    fault: 'cancel while the only gateway is down (kill -9), gateway back 4 s later',
    expected: 'the job is not shown cancelled while its command may still run; then cancelled, every printed line stored',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 300,
        faultAtLine: 15,
        expectation: { status: 'cancelled', attempts: [1] },
        async inject(c, { tenant, jobId, agents: [agent] }) {
          const before = agent!.connections();
          const killedAt = Date.now();
          await c.sut.role('gateway').kill();
          const status = await cancelJob(tenant, jobId, 'fault suite: cancel while the gateway is down');
          c.note(`cancel request: ${status}`);
          if (status !== 202) c.fail(`the cancel request got ${status}, expected 202`);
          await c.hold(4_000);
          const faultEnd = await restart(c, 'gateway', killedAt);
          await reconnected(c, agent!, before, faultEnd);
          return { faultEnd };
        },
        after: noteWhenStopped,
      }),
  },
  {
    id: 'cancel-temporal-down',
    fault: 'cancel while the Temporal dev server is stopped, Temporal back 4 s later',
    expected: 'the cancel is accepted and kept, reaches the run once Temporal is back, and the job ends cancelled',
    deadlineMs: 60_000,
    run: (ctx) =>
      singleJob(ctx, {
        lines: 300,
        faultAtLine: 15,
        expectation: { status: 'cancelled', attempts: [1] },
        async inject(c, { tenant, jobId }) {
          const stoppedAt = Date.now();
          await c.sut.temporal.stop();
          const status = await cancelJob(tenant, jobId, 'fault suite: cancel while Temporal is down');
          c.note(`cancel request: ${status}`);
          if (status !== 202) c.fail(`the cancel request got ${status}, expected 202`);
          await c.hold(stoppedAt + 4_000 - Date.now());
          await c.sut.temporal.start(settings.roleReadyTimeoutMs);
          const faultEnd = Date.now();
          c.note(`Temporal down ${seconds(faultEnd - stoppedAt)}`);
          return { faultEnd };
        },
        after: noteWhenStopped,
      }),
  },
  killEverything200,
];

/** For the cancel rows: the command must have stopped before the job was shown ended. */
function noteWhenStopped(ctx: RowContext, watch: JobWatch): void {
  const runs = ctx.shared.ledger.runsOf(watch.jobId);
  const stoppedAt = Math.max(...runs.map((run) => ctx.shared.ledger.lastAlive(run, Date.now())));
  const shownAt = watch.terminalAt!;
  if (shownAt >= stoppedAt) ctx.note(`command stopped ${seconds(shownAt - stoppedAt)} before the job was shown ${watch.status}`);
  else ctx.note(`job shown ${watch.status} ${seconds(stoppedAt - shownAt)} before its command stopped`);
}
