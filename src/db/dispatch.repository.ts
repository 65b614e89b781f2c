// The SQL of dispatch: the one place a queued job becomes an agent's. The claim is one UPDATE whose
// target is chosen and locked by FOR UPDATE, so dispatchers on any number of replicas never hand one
// job to two agents.
//
// Not SKIP LOCKED: the rows a claim would skip are not only other dispatchers' (which are about to
// stop being queued) but also a queued job whose workflow is recording its claim step at that
// instant. Skipping that one hands out the job behind it, breaking the dispatch order (rework first,
// oldest first). Waiting costs little: every lock on a queued row lasts one short statement or
// transaction, and a claim that waited on a row another dispatcher took re-checks it (PostgreSQL's
// READ COMMITTED re-evaluation), finds it no longer queued and locks the next one in order.
import { and, arrayContained, asc, eq, notInArray, sql } from 'drizzle-orm';
import type { Executor } from './client.js';
import { transitionWhere } from './jobs.repository.js';
import { jobs, logLines, type JobRow } from './schema/index.js';

export interface DispatchCandidate {
  agentId: string;
  orgId: string;
  labels: readonly string[];
}

/**
 * Claims the next job for the agent, in one statement: rework before backlog, oldest first, among
 * the queued jobs whose labels the agent has. Returns the assigned job. If its workflow's claim step is already
 * waiting, the row carries that step's task token for the caller to complete; if not, the claim
 * step finds the job assigned when it starts and completes at once.
 */
export async function claimNextJob(db: Executor, agent: DispatchCandidate, exclude: readonly string[] = []): Promise<JobRow | undefined> {
  // An agent without labels takes only jobs that ask for none.
  const labelsFit = agent.labels.length ? arrayContained(jobs.labels, [...agent.labels]) : sql`cardinality(${jobs.labels}) = 0`;
  // Jobs this agent just declined go to other agents first.
  const notDeclined = exclude.length ? notInArray(jobs.id, [...exclude]) : undefined;
  const next = db
    .select({ id: jobs.id })
    .from(jobs)
    .where(and(eq(jobs.orgId, agent.orgId), eq(jobs.status, 'queued'), labelsFit, notDeclined))
    .orderBy(sql`(${jobs.queueType} = 'rework') desc`, asc(jobs.createdAt), asc(jobs.id))
    .limit(1)
    .for('update');
  return transitionWhere(
    db,
    eq(jobs.id, sql`(${next})`),
    ['queued'],
    'assigned',
    {
      agentId: agent.agentId,
      attempt: sql`${jobs.attempt} + 1`,
      assignedAt: sql`now()`,
      logSeqBase: sql`(select coalesce(max(${logLines.seq}), 0) from ${logLines} where ${logLines.jobId} = ${jobs.id})`,
    },
    { type: 'assigned' },
  );
}
