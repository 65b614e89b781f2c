// A running job whose log a test writes line by line: a scripted agent over real gRPC takes the job,
// starts it, prints batches the gateway acknowledges and finishes it, so viewers of the log (the
// WebSocket client, the browser page) can be checked against exactly what was printed.
import { expect } from 'vitest';
import { JobOutcome, LogStream } from '../../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './factories.js';
import { LogStreamViewer } from './log-stream-client.js';
import { ProtocolClient } from './protocol-client.js';
import type { TestSystem } from './system.js';

/** A fresh organisation with a repository and one scripted agent (capacity 1 unless set) that has its Welcome; the caller closes it through `clients`. */
export async function orgWithAgent(t: TestSystem, clients: ProtocolClient[], capacity = 1) {
  const org = await createOrg(t);
  const repo = await createRepository(org.admin, org.orgId);
  const token = await createAgentToken(org.admin, org.orgId);
  const agent = new ProtocolClient(t.grpcAddress, token.secret);
  clients.push(agent);
  agent.hello({ capacity });
  await agent.next('welcome');
  return { ...org, repo, agent };
}

/** Starts a job on a scripted agent (closed by the caller through `clients`) and returns its printer. */
export async function runningJob(t: TestSystem, clients: ProtocolClient[]) {
  const { agent, repo, ...org } = await orgWithAgent(t, clients);
  const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'print a lot' });
  await agent.next('assignment');
  agent.start(job.id, 1);
  await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');

  let printed = 0;
  return {
    org,
    job,
    /** Sends lines printed+1 .. printed+count (`line <seq>`) in batches of `batch`, and waits for their acks. */
    async print(count: number, options: { batch?: number; width?: number; stream?: LogStream } = {}) {
      const batch = options.batch ?? 250;
      const pad = 'x'.repeat(options.width ?? 0);
      const stream = options.stream ?? LogStream.LOG_STREAM_STDOUT;
      for (let sent = 0; sent < count; sent += batch) {
        const firstSeq = printed + sent + 1;
        const size = Math.min(batch, count - sent);
        const at = new Date();
        const lines = Array.from({ length: size }, (_, i) => ({ at, stream, text: `line ${firstSeq + i}${pad}` }));
        agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq, lines } });
        expect((await agent.next('logAck')).ackedSeq).toBe(firstSeq + size - 1);
      }
      printed += count;
    },
    async finish() {
      agent.finish(job.id, 1, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, lastSeq: printed });
      await agent.next('finishedAck');
      await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'succeeded');
    },
    viewer(options: { after?: number; paused?: boolean; on?: TestSystem } = {}) {
      return new LogStreamViewer((options.on ?? t).url, org.orgId, job.id, { token: org.tokens.member, ...options });
    },
  };
}
