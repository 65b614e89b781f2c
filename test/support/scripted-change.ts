// Jobs that end with a change, reported by a scripted agent over real gRPC (no git): for tests of
// what the server does with changes (the API, rework rules, the diff download, the end frame).
// What real agents make of a real repository is tested in agent-cli/changes.test.ts.
import { createHash } from 'node:crypto';
import { JobOutcome, type JobAssignment, type RunChange } from '../../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, waitForJob, type Org } from './factories.js';
import { ProtocolClient } from './protocol-client.js';
import type { TestSystem } from './system.js';

/** A made-up commit id, the same for the same seed. */
export function commitId(seed: string): string {
  return createHash('sha1').update(seed).digest('hex');
}

/** A change of one commit on `branch`, with a patch of `patch` bytes, unless overridden. */
export function changeOf(overrides: Partial<RunChange> = {}, patch?: Uint8Array): RunChange {
  const base = overrides.baseCommit ?? commitId('base');
  const head = overrides.headCommit ?? commitId(`head of ${base}`);
  return {
    branch: 'agent-jobs/scripted',
    pushed: true,
    baseCommit: base,
    headCommit: head,
    commits: [{ sha: head, subject: 'Do the thing' }],
    commitCount: 1,
    diffStat: { filesChanged: 1, insertions: 2, deletions: 1 },
    summary: '',
    pullRequestUrl: '',
    patchSize: patch?.byteLength ?? 0,
    ...overrides,
  };
}

/** One scripted agent of an organisation: takes each job it is given and ends it as told. */
export async function scriptedAgent(t: TestSystem, org: Org, clients: ProtocolClient[], labels: string[] = []) {
  const token = await createAgentToken(org.admin, org.orgId);
  const agent = new ProtocolClient(t.grpcAddress, token.secret);
  clients.push(agent);
  agent.hello({ capacity: 1, labels });
  await agent.next('welcome');
  return {
    agent,
    /**
     * Submits a job and runs it to success with `change` (its patch sent first, in chunks of
     * `chunkBytes`). Resolves with the job and the assignment the agent was given.
     */
    async succeed(job: Parameters<typeof createJob>[2], change: RunChange | undefined, patch?: Uint8Array, chunkBytes = 1024 * 1024): Promise<{ jobId: string; assignment: JobAssignment }> {
      const created = await createJob(org.member, org.orgId, job);
      const assignment = await agent.next('assignment');
      agent.start(assignment.jobId, assignment.attempt);
      for (let offset = 0; patch && offset < patch.byteLength; offset += chunkBytes) {
        agent.sendPatch(assignment.jobId, assignment.attempt, offset, patch.subarray(offset, offset + chunkBytes));
        await agent.next('patchAck');
      }
      agent.finish(assignment.jobId, assignment.attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change });
      await agent.next('finishedAck');
      await waitForJob(org.member, org.orgId, created.id, (j) => j.status === 'succeeded');
      return { jobId: created.id, assignment };
    },
  };
}

/**
 * A job of `repoId` that succeeded with a pushed change, so it can be reworked: run by a scripted
 * agent that disconnects afterwards (it takes nothing else of the organisation's).
 */
export async function reworkableJob(t: TestSystem, org: Org, repoId: string): Promise<string> {
  const clients: ProtocolClient[] = [];
  try {
    const maker = await scriptedAgent(t, org, clients);
    return (await maker.succeed({ repoId, prompt: 'the change to rework' }, changeOf())).jobId;
  } finally {
    for (const client of clients) client.close();
  }
}
