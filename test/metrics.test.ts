// What /metrics tells an on-call engineer, checked against what the system was made to do: jobs
// created, finished and requeued, how long they waited and ran, the agents and their free slots,
// the log and patch bytes stored. A scripted agent over real gRPC does the work.
import { afterAll, describe, expect, it } from 'vitest';
import { JobOutcome, LogStream } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { closeClients, ProtocolClient } from './support/protocol-client.js';
import { metricSample, scrapeMetrics } from './support/metrics.js';
import { changeOf } from './support/scripted-change.js';
import { useTestSystem } from './support/system.js';

describe('the metrics an operator reads', () => {
  const t = useTestSystem({ driver: 'pglite' });
  const clients: ProtocolClient[] = [];
  afterAll(() => closeClients(clients));

  const scrape = () => scrapeMetrics(t);
  const sample = metricSample;

  it('counts jobs as they are created, wait, run, end and go back to the queue, and what their agents store', async () => {
    const before = await scrape();
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = new ProtocolClient(t.grpcAddress, token.secret);
    clients.push(agent);
    agent.hello({ capacity: 2 });
    await agent.next('welcome');
    expect(sample(await scrape(), 'agent_jobs_agents_connected')).toBe(1);
    expect(sample(await scrape(), 'agent_jobs_agent_free_slots')).toBe(2);

    // One declined (back to the queue, not counted), then taken and run to success with a change.
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const first = await agent.next('assignment');
    agent.send({ $case: 'rejected', value: { jobId: job.id, attempt: first.attempt, reason: 'not now' } });
    await waitForJob(org.member, org.orgId, job.id, (j) => j.events.some((e) => e.type === 'requeued'));
    const second = await agent.next('assignment');
    agent.start(job.id, second.attempt);
    expect(sample(await scrape(), 'agent_jobs_agent_free_slots')).toBe(1);
    const at = new Date();
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: second.attempt, firstSeq: 1, lines: ['one', 'three'].map((text) => ({ at, stream: LogStream.LOG_STREAM_STDOUT, text })) } });
    await agent.next('logAck');
    const patch = Buffer.from('diff --git a/x b/x\n');
    agent.sendPatch(job.id, second.attempt, 0, patch);
    await agent.next('patchAck');
    agent.finish(job.id, second.attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: 2, change: changeOf({}, patch) });
    await agent.next('finishedAck');
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');

    // And one cancelled while queued (a label no agent has keeps it there).
    const queued = await createJob(org.member, org.orgId, { repoId: repo.id, labels: ['nobody-has-this'] });
    await org.member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: queued.id } } });
    await waitForJob(org.member, org.orgId, queued.id, (j) => j.status === 'cancelled');

    const after = await scrape();
    const grew = (name: string, labels: Record<string, string> = {}) => sample(after, name, labels) - sample(before, name, labels);
    expect(grew('agent_jobs_jobs_created_total', { queue: 'backlog' })).toBe(2);
    expect(grew('agent_jobs_jobs_finished_total', { status: 'succeeded', queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_jobs_finished_total', { status: 'cancelled', queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_job_requeues_total', { reason: 'declined' })).toBe(1);
    expect(grew('agent_jobs_job_queue_wait_seconds_count', { queue: 'backlog' })).toBe(1);
    expect(grew('agent_jobs_job_run_seconds_count', { status: 'succeeded' })).toBe(1);
    expect(grew('agent_jobs_log_lines_stored_total')).toBe(2);
    expect(grew('agent_jobs_log_bytes_stored_total')).toBe('onethree'.length);
    expect(grew('agent_jobs_patch_bytes_stored_total')).toBe(patch.byteLength);
    expect(sample(after, 'agent_jobs_agent_free_slots')).toBe(2);
    // Every workflow start was delivered: the outbox, sampled every sweep, is empty again.
    await expect.poll(async () => sample(await scrape(), 'agent_jobs_workflow_starts_pending', {})).toBe(0);
    expect(after).toMatch(/^agent_jobs_workflow_starts_pending \d+$/m);
  });
});
