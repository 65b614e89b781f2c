// The crash of everything at once: 200 jobs, some running and most queued, and every server process
// (API, gateway, worker) kill -9 together, then started again. Each job must run exactly once (one
// run in the records) and succeed, with the same line invariants as the other rows.
import { downloadLog, getJob, listJobStatuses, terminalStatuses } from './client.js';
import { measureJob, type JobMeasures } from './measures.js';
import { sleep } from './processes.js';
import type { Row, RowContext } from './scenario.js';
import { requeueAfterMs, settings } from './settings.js';
import { seconds } from './table.js';

const JOBS = 200;
const AGENTS = 4;
const CAPACITY = 5;
const LINES = 3;
/** The crash comes once this many jobs have finished, so some are mid-run and most still queued. */
const FINISHED_BEFORE_CRASH = 20;
/**
 * With no job ending for this long the row stops waiting: past the start timeout and the requeue
 * delay, every server timer that could still move a stuck job has had its turn.
 */
const QUIET_GIVE_UP_MS = settings.startTimeoutMs + requeueAfterMs + settings.marginMs;

function countBy<T>(values: readonly T[]): string {
  const counts = new Map<T, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return [...counts].map(([value, n]) => `${n}× ${String(value)}`).join(', ');
}

async function inBatches<T, R>(items: readonly T[], size: number, each: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(each))));
  return results;
}

async function run(ctx: RowContext) {
  const { ledger } = ctx.shared;
  const tenant = await ctx.tenant();
  // Queued first, then the agents: the crash then finds most jobs still waiting, as in the issue.
  const jobIds = await inBatches(Array.from({ length: JOBS }), 10, () => ctx.submit(tenant, LINES));
  await Promise.all(Array.from({ length: AGENTS }, (_, i) => ctx.agent(tenant, String.fromCharCode(97 + i), { capacity: CAPACITY })));
  const ours = new Set(jobIds);
  const runsOfOurs = () => [...ledger.runs()].filter(([jobId]) => ours.has(jobId)).flatMap(([, runs]) => runs);

  while (runsOfOurs().filter((r) => r.end).length < FINISHED_BEFORE_CRASH && Date.now() < ctx.deadline) await sleep(100);
  const killedAt = Date.now();
  const roles = ['api', 'gateway', 'worker'] as const;
  await Promise.all(roles.map((name) => ctx.sut.role(name).kill()));
  const atCrash = runsOfOurs();
  ctx.note(`crash with ${atCrash.filter((r) => r.end).length} runs finished and ${atCrash.filter((r) => !r.end).length} running`);
  // The API first, as at the first start; then the others together.
  await ctx.sut.role('api').start(settings.roleReadyTimeoutMs);
  await Promise.all([ctx.sut.role('gateway').start(settings.roleReadyTimeoutMs), ctx.sut.role('worker').start(settings.roleReadyTimeoutMs)]);
  const restartedAt = Date.now();
  ctx.note(`every role back ${seconds(restartedAt - killedAt)} after the kill`);

  // When each job was first seen ended, for "no run went on after its job ended".
  const endedAt = new Map<string, number>();
  let lastEnded = restartedAt;
  while (endedAt.size < JOBS && Date.now() < ctx.deadline && Date.now() - lastEnded < QUIET_GIVE_UP_MS) {
    const statuses = await listJobStatuses(tenant, JOBS);
    const now = Date.now();
    for (const [jobId, { status }] of statuses ?? []) {
      if (!terminalStatuses.has(status) || endedAt.has(jobId)) continue;
      endedAt.set(jobId, now);
      lastEnded = now;
    }
    if (endedAt.size < JOBS) await sleep(1_000);
  }
  const allEnded = endedAt.size === JOBS ? Math.max(...endedAt.values()) : undefined;
  if (allEnded === undefined) ctx.fail(`${JOBS - endedAt.size} job(s) had not ended when the row gave up (${seconds(Date.now() - lastEnded)} with no job ending)`);
  else ctx.note(`all ${JOBS} ended ${seconds(allEnded - restartedAt)} after the restart`);

  await sleep(1_000);
  const now = Date.now();
  const measured = await inBatches(jobIds, 5, async (jobId): Promise<(JobMeasures & { jobId: string }) | undefined> => {
    const job = await getJob(tenant, jobId);
    const stored = await downloadLog(tenant, jobId).catch(() => undefined);
    if (!job || !stored) return undefined;
    const m = measureJob({ runs: ledger.runsOf(jobId), lastAlive: (r) => ledger.lastAlive(r, now), stored, finalStatus: job.status, finalAttempt: job.attempt, ended: terminalStatuses.has(job.status), terminalAt: endedAt.get(jobId) });
    return { ...m, jobId };
  });
  const all = measured.filter((m): m is JobMeasures & { jobId: string } => m !== undefined);
  // A few job ids per failure, so the servers' logs (kept in the scratch folder) can be searched.
  const examples = (jobs: typeof all) => ` (e.g. ${jobs.slice(0, 2).map((m) => `${m.jobId} ${m.finalStatus} attempt ${m.attempts}`).join(', ')})`;
  if (all.length < JOBS) ctx.fail(`${JOBS - all.length} job(s) could not be read back`);
  const sum = (field: 'linesLost' | 'linesDuplicated' | 'concurrentRuns') => all.reduce((total, m) => total + m[field], 0);

  const kinds: [keyof JobMeasures, string][] = [
    ['linesLost', 'lost lines'],
    ['linesDuplicated', 'stored a line twice'],
    ['concurrentRuns', 'had two runs alive at once'],
    ['finishedRunsDiscarded', 'had a finished run discarded'],
    ['ranAfterEndMs', 'had a run going on after the job ended'],
    ['unmarkedAttemptChanges', 'changed attempts unmarked in the log'],
    ['interleavedAttempts', 'had attempts interleaved in the log'],
  ];
  for (const [field, what] of kinds) {
    const jobs = all.filter((m) => Number(m[field]) > 0);
    if (jobs.length > 0) ctx.fail(`${jobs.length} job(s) ${what}${examples(jobs)}`);
  }
  const notOnce = all.filter((m) => m.runs !== 1);
  if (notOnce.length > 0) ctx.fail(`${notOnce.length} job(s) did not run exactly once (runs per job: ${countBy(all.map((m) => m.runs))})${examples(notOnce)}`);
  const notSucceeded = all.filter((m) => m.finalStatus !== 'succeeded');
  if (notSucceeded.length > 0) ctx.fail(`${notSucceeded.length} job(s) did not succeed${examples(notSucceeded)}`);
  // The attempt number may rise without a second run: a job claimed in the instant of the crash
  // never reached its agent, and every assignment takes a new run number. What must hold is above:
  // one run per job, and its outcome kept.

  return ctx.report({
    linesLost: sum('linesLost'),
    linesDuplicated: sum('linesDuplicated'),
    concurrentRuns: sum('concurrentRuns'),
    finalState: countBy(all.map((m) => m.finalStatus)),
    attempts: countBy(all.map((m) => m.attempts)),
    recoveryMs: allEnded === undefined ? undefined : allEnded - restartedAt,
  });
}

export const killEverything200: Row = {
  id: 'kill-all-200',
  fault: `${JOBS} jobs queued or running on ${AGENTS} agents; API, gateway and worker all kill -9 at once, then restarted`,
  expected: 'every job runs exactly once (one run) and succeeds',
  deadlineMs: 180_000,
  run,
};
