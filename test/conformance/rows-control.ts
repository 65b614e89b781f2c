// Control of runs: cancel (before the command starts, while it runs, and a command that ignores
// SIGTERM), capacity, SIGTERM to the agent, the agent restarted mid-job with and without its state
// directory, a gateway draining with GoAway, and the server's start and run deadlines. What a run
// did is read from its own records and pids, so "stopped" means the processes are gone.
import type { JobDetail } from '../../generated/sdk/index.js';
import { sleep } from '../faults/processes.js';
import type { Org, Row, RowContext } from './kit.js';
import { eventTypes, processAlive } from './kit.js';
import { requeueAfterMs, settings } from './settings.js';

async function cancel(ctx: RowContext, org: Org, jobId: string, reason: string): Promise<boolean> {
  const { response } = await org.api.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId } }, body: { reason } });
  return ctx.check(response.status === 202, `cancel answered ${response.status}`);
}

/** A job taken by the agent proves its slot is free again: one that stays queued means a stuck slot. */
async function probe(ctx: RowContext, org: Org): Promise<void> {
  const jobId = await ctx.submit(org, 'echo probe');
  const done = await ctx.until(org, jobId, (j) => j.status === 'succeeded' || j.status === 'failed', 'taken and run by the idle agent');
  if (done) ctx.check(done.status === 'succeeded', `a new job then ${done.status}`);
}

/** Pids a run of attempt `attempt` left alive, polled until attempt `next` has started. */
function aliveAt(pids: number[]): number[] {
  return pids.filter(processAlive);
}

/** The attempt-1-then-quick script of the restart and SIGTERM rows; attempt 1 writes its pids. */
function firstAttemptHangs(pidFile: string, options: { ignorePipe?: boolean } = {}): string {
  return [
    `if [ "$JOB_ATTEMPT" = 1 ]; then`,
    // Ignoring SIGPIPE keeps an orphaned run alive after its agent died, so only the agent can stop it.
    options.ignorePipe ? `  trap '' PIPE` : '',
    `  sleep 600 & echo "$$ $!;" > ${pidFile}`,
    `  for i in $(seq 1 600); do echo "first $i"; sleep 0.1; done`,
    `else`,
    // Seen from inside the next run: which of attempt 1's processes are still alive as it starts.
    `  alive=''; for p in $(tr -d ';' < ${pidFile}); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && alive="$alive $p"; done`,
    `  echo "attempt $JOB_ATTEMPT starts; attempt 1 alive:\${alive:- none}"; sleep 1`,
    `fi`,
  ].join('\n');
}

export const controlRows: Row[] = [
  {
    id: 'cancel-before-start',
    scenario: "cancel while the agent is still cloning (the clone URL never answers), before the command starts",
    expected: 'the clone is abandoned; cancelled; the command never runs; the agent then takes new work',
    async run(ctx) {
      const org = await ctx.org();
      const repoId = await ctx.repository(org, { name: 'hanging-clone', cloneUrl: ctx.shared.hangingCloneUrl });
      await ctx.agent(org);
      const jobId = await ctx.submit(org, 'echo should never run', { repoId });
      if (!(await ctx.until(org, jobId, (j) => j.status === 'assigned', 'assigned'))) return;
      // Time for the agent to accept and be well into its clone.
      await sleep(1_500);
      if (!(await cancel(ctx, org, jobId, 'conformance: cancel before start'))) return;
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'cancelled', `job ${ctx.describe(done)}`);
      ctx.check(ctx.runs(jobId).length === 0, ctx.runs(jobId).length === 0 ? 'command never ran' : 'the command ran');
      await probe(ctx, org);
    },
  },
  {
    id: 'cancel-running',
    scenario: 'cancel a running command that has a child of its own',
    expected: 'cancelled, with the reason given; the command and its child are gone by the time the job shows cancelled',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, `sleep 300 & echo "$$ $!;" > ${pidFile}; echo running; wait`);
      const pids = await ctx.pids(pidFile);
      if (!(await ctx.untilPrinted(org, jobId, 'running'))) return;
      const reason = 'conformance: no longer needed';
      if (!(await cancel(ctx, org, jobId, reason))) return;
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      const alive = aliveAt(pids);
      ctx.check(done.status === 'cancelled' && done.failureReason === reason, `job ${ctx.describe(done)}`);
      ctx.check(alive.length === 0, alive.length === 0 ? 'command and child gone when it showed cancelled' : `pids ${alive.join(' ')} alive after it showed cancelled`);
    },
  },
  {
    id: 'cancel-ignores-sigterm',
    scenario: 'cancel a command that ignores SIGTERM (the job created with cancelGraceSeconds 1)',
    expected: 'killed (SIGKILL) once the 1 s grace is over; cancelled; the process is gone',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, `trap '' TERM; echo "$$;" > ${pidFile}; echo stubborn; while true; do sleep 0.2; done`, { cancelGraceSeconds: 1 });
      const pids = await ctx.pids(pidFile);
      if (!(await ctx.untilPrinted(org, jobId, 'stubborn'))) return;
      const cancelledAt = Date.now();
      if (!(await cancel(ctx, org, jobId, 'conformance: stubborn'))) return;
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      const alive = aliveAt(pids);
      ctx.check(done.status === 'cancelled', `job ${ctx.describe(done)} ${((Date.now() - cancelledAt) / 1000).toFixed(1)} s after the cancel`);
      ctx.check(alive.length === 0, alive.length === 0 ? 'the process is gone' : `pid ${alive.join(' ')} alive after it showed cancelled`);
      const run = ctx.runs(jobId)[0];
      ctx.note(run?.end ? `the command exited ${run.end.code} (not by SIGKILL?)` : 'no exit record: killed by SIGKILL');
    },
  },
  {
    id: 'capacity',
    scenario: 'an agent with --capacity 2 and five 3-second jobs queued at once',
    expected: 'never more than 2 commands at once (2 at some point); all five succeed as attempt 1 with no requeue (no rejection loop)',
    async run(ctx) {
      const org = await ctx.org();
      const agent = await ctx.agent(org, { capacity: 2 });
      const record = await ctx.agentRecord(org, agent.name);
      ctx.check(record?.capacity === 2, `server sees capacity ${record?.capacity}`);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push(await ctx.submit(org, `echo job ${i}; sleep 3`));
      const jobs: JobDetail[] = [];
      for (const id of ids) {
        const done = await ctx.untilEnded(org, id);
        if (done) jobs.push(done);
      }
      if (jobs.length < 5) return;
      const runs = ids.flatMap((id) => ctx.runs(id));
      const edges = runs.flatMap((run) => [{ at: run.startedAt, d: 1 }, { at: run.end?.at ?? Date.now(), d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
      let now = 0;
      let most = 0;
      for (const edge of edges) most = Math.max(most, (now += edge.d));
      ctx.check(most === 2, `at most ${most} at once (${runs.length} runs)`);
      const bad = jobs.filter((j) => j.status !== 'succeeded' || j.attempt !== 1 || j.events.some((e) => e.type === 'requeued'));
      ctx.check(bad.length === 0, bad.length === 0 ? 'all five succeeded as attempt 1, none requeued' : `${bad.map((j) => `${j.status}/attempt ${j.attempt}: ${eventTypes(j)}`).join('; ')}`);
    },
  },
  {
    id: 'sigterm',
    scenario: 'SIGTERM to the agent while it runs a job; a second agent is started once it has exited',
    expected: 'the agent stops the command, gives the job back and exits 0; the job runs again as attempt 2 on the second agent and succeeds',
    async run(ctx) {
      const org = await ctx.org();
      const first = await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, firstAttemptHangs(pidFile));
      const pids = await ctx.pids(pidFile);
      if (!(await ctx.untilPrinted(org, jobId, 'first 5'))) return;
      first.signal('SIGTERM');
      const exit = await Promise.race([first.exited(), sleep(settings.exitWithinMs).then(() => 'running' as const)]);
      if (exit === 'running') return ctx.fail(`still running ${settings.exitWithinMs / 1000} s after SIGTERM`);
      ctx.check(exit?.code === 0, `agent exited ${exit?.code ?? exit?.signal}`);
      const alive = aliveAt(pids);
      ctx.check(alive.length === 0, alive.length === 0 ? 'command and child gone when it exited' : `pids ${alive.join(' ')} outlived the agent`);
      const requeued = await ctx.until(org, jobId, (j) => j.status !== 'running', 'given back');
      if (requeued) ctx.note(`then ${requeued.status} (attempt ${requeued.attempt})`);
      const second = await ctx.agent(org);
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      const secondId = (await ctx.agentRecord(org, second.name))?.id;
      ctx.check(done.status === 'succeeded' && done.attempt === 2 && done.agentId === secondId, `job ${ctx.describe(done)}${done.agentId === secondId ? ' on the second agent' : ' not on the second agent'}`);
    },
  },
  {
    id: 'restart-with-state',
    scenario: 'the agent kill -9 mid-job (its command ignoring SIGPIPE, with a child), restarted at once with the same --state-dir',
    expected: "the restarted agent kills the previous run's processes before the job runs again; attempt 1 is not kept alive (its output is gone), so the job runs again as attempt 2 and succeeds",
    async run(ctx) {
      const org = await ctx.org();
      const agent = await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, firstAttemptHangs(pidFile, { ignorePipe: true }));
      const pids = await ctx.pids(pidFile);
      if (!(await ctx.untilPrinted(org, jobId, 'first 5'))) return;
      await agent.crash();
      ctx.check(aliveAt(pids).length === pids.length, `agent killed; its ${pids.length} run processes live on`);
      await ctx.restartAgent(org, agent);
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'succeeded' && done.attempt === 2, `job ${ctx.describe(done)}`);
      const seen = (await ctx.stdout(org, jobId)).find((line) => line.startsWith('attempt 2 starts'));
      ctx.check(seen?.endsWith('alive: none') ?? false, seen ? `${seen} (no two runs at once)` : 'attempt 2 never said what it found');
      const left = aliveAt(pids);
      ctx.check(left.length === 0, left.length === 0 ? "previous run's processes gone" : `pids ${left.join(' ')} of attempt 1 still alive`);
    },
  },
  {
    id: 'restart-fresh-state',
    scenario: 'the agent kill -9 mid-job; a new agent started at once with a fresh --state-dir (it knows nothing of the run)',
    expected: `the job is requeued only under the lease rule (after lease + grace + margin, about ${requeueAfterMs / 1000} s) and succeeds as attempt 2 on the new agent`,
    async run(ctx) {
      const org = await ctx.org();
      const agent = await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, firstAttemptHangs(pidFile));
      const pids = await ctx.pids(pidFile);
      if (!(await ctx.untilPrinted(org, jobId, 'first 5'))) return;
      const killedAt = Date.now();
      await agent.crash();
      // Nothing of this agent's is left to stop the orphan's child: the kit does, as an operator would.
      ctx.onDispose(() => pids.forEach((pid) => processAlive(pid) && process.kill(pid, 'SIGKILL')));
      await ctx.agent(org);
      const run2 = await ctx.untilRun(jobId, 2);
      if (run2) ctx.note(`attempt 2 started ${((run2.startedAt - killedAt) / 1000).toFixed(1)} s after the kill`);
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'succeeded' && done.attempt === 2, `job ${ctx.describe(done)}`);
      // No agent is left that knows the orphan: whether it lives on is the pipe's doing, not the agent's.
      const seen = (await ctx.stdout(org, jobId)).find((line) => line.startsWith('attempt 2 starts'));
      if (seen) ctx.note(`${seen} (for information: the child of a killed agent's run can only be stopped by the operator)`);
      const requeue = done.events.find((e) => e.type === 'requeued');
      ctx.note(requeue ? `requeued: "${requeue.detail ?? ''}"` : 'no requeued event');
    },
  },
  {
    id: 'gateway-drain',
    // In embedded mode the drain restarts the whole system, under every other row.
    exclusive: (sut) => sut.mode === 'embedded',
    scenario: "the agent's gateway is stopped gracefully (SIGTERM: GoAway, then a drain window) mid-job; the load balancer sends new connections to the other gateway",
    expected: 'the agent moves to the other gateway and the run goes on: attempt 1 succeeds, every line stored once, in order',
    async run(ctx) {
      const org = await ctx.org();
      const embedded = ctx.sut.mode === 'embedded';
      const agent = await ctx.agent(org, { gateway: embedded ? 'gateway' : 'gateway2' });
      const jobId = await ctx.submit(org, 'for i in $(seq 1 100); do echo "line $i"; sleep 0.1; done');
      if (!(await ctx.untilPrinted(org, jobId, 'line 10'))) return;
      const draining = ctx.sut.gateway(embedded ? 'gateway' : 'gateway2');
      if (!embedded) agent.link.setTargets([ctx.sut.gatewayAddress('gateway')]);
      const exit = await draining.stop(settings.drainTimeoutMs + 10_000);
      ctx.note(`${embedded ? 'the server' : 'gateway2'} stopped (${exit?.code ?? exit?.signal})`);
      if (embedded) {
        // One process is the whole system: the drain is a restart, and the agent comes back to it.
        await draining.start(settings.processReadyMs);
        ctx.note('the server restarted');
      }
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'succeeded' && done.attempt === 1, `job ${ctx.describe(done)}`);
      const lines = await ctx.stdout(org, jobId);
      const expected = Array.from({ length: 100 }, (_, i) => `line ${i + 1}`);
      const same = lines.length === expected.length && lines.every((line, i) => line === expected[i]);
      ctx.check(same, same ? 'all 100 lines stored once, in order' : `${lines.length} stdout lines stored, 100 printed; ${expected.filter((l) => !lines.includes(l)).length} missing`);
      if (!embedded) {
        const replica = (await ctx.agentRecord(org, agent.name))?.replica;
        ctx.check(replica === ctx.sut.replicaOf('gateway'), `agent now on ${replica}`);
      }
    },
  },
  {
    id: 'start-deadline',
    needsDeadlines: true,
    scenario: `a job (maxAttempts 1) created with a ${settings.shortStartTimeoutMs / 1000} s start deadline whose clone never answers`,
    expected: 'the server tells the agent to drop the attempt at the deadline; the job fails (attempts used up); the command never runs; the agent then takes new work',
    async run(ctx) {
      const org = await ctx.org();
      const repoId = await ctx.repository(org, { name: 'hanging-clone', cloneUrl: ctx.shared.hangingCloneUrl });
      await ctx.agent(org);
      const jobId = await ctx.submit(org, 'echo should never run', { repoId, maxAttempts: 1, shortDeadlines: true });
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'failed' && done.attempt === 1, `job ${ctx.describe(done)}`);
      ctx.check(ctx.runs(jobId).length === 0, ctx.runs(jobId).length === 0 ? 'command never ran' : 'the command ran');
      await probe(ctx, org);
    },
  },
  {
    id: 'run-deadline',
    needsDeadlines: true,
    scenario: `a job created with a ${settings.shortRunTimeoutMs / 1000} s run deadline whose command (with a child) runs forever`,
    expected: 'the server cancels the run at the deadline; the agent stops it; the job ends timed_out; its processes are gone',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const pidFile = ctx.file('pids');
      const jobId = await ctx.submit(org, `sleep 600 & echo "$$ $!;" > ${pidFile}; echo running; wait`, { shortDeadlines: true });
      const pids = await ctx.pids(pidFile);
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'timed_out', `job ${ctx.describe(done)}`);
      const alive = await ctx.untilGone(pids, 0);
      ctx.check(alive.length === 0, alive.length === 0 ? 'its processes are gone' : `pids ${alive.join(' ')} alive after it showed timed_out`);
    },
  },
];
