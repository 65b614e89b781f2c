// A gateway that stops (a deploy, a scale-in) hands its agents over without a gap: GoAway, a stream
// that keeps working while the agent opens a new one elsewhere, no new streams here, and an end
// once the agent has moved or the drain budget (GATEWAY_DRAIN_TIMEOUT) is spent.
import { status } from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { LogStream } from '../generated/proto/agent/v1/agent.js';
import { createAgentToken, createJob, createOrg, createRepository, waitForJob } from './support/factories.js';
import { ProtocolClient } from './support/protocol-client.js';
import { drivers, dropTestDatabases, startTestSystem } from './support/system.js';

const driver = drivers[0]!;

describe(`a gateway going away on ${driver}`, () => {
  const clients: ProtocolClient[] = [];
  afterAll(async () => {
    for (const c of clients) c.close();
    await dropTestDatabases();
  });

  async function systemWithRunningJob(drain: string) {
    const t = await startTestSystem({ driver, captureLog: true, env: { GATEWAY_DRAIN_TIMEOUT: drain, AGENT_HEARTBEAT_INTERVAL: '1s', AGENT_SILENCE_TIMEOUT: '60s' } });
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const token = await createAgentToken(org.admin, org.orgId);
    const agent = new ProtocolClient(t.grpcAddress, token.secret);
    clients.push(agent);
    agent.hello({ capacity: 2 });
    await agent.next('welcome');
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    await agent.next('assignment');
    agent.start(job.id, 1);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');
    return { t, agent, token, job };
  }

  it('keeps the stream working after GoAway, refuses new streams, and stops once the agent has moved', async () => {
    // A drain window far longer than the test: the stop ends because the agent moved, not because time ran out.
    const { t, agent, token, job } = await systemWithRunningJob('5m');
    const stopped = t.stop();
    expect(await agent.next('goAway')).toMatchObject({ reason: 'replica shutting down', reconnectAfter: { seconds: 1, nanos: 0 } });

    // Still carried: a log batch is stored and acknowledged, a heartbeat answered.
    agent.send({ $case: 'logBatch', value: { jobId: job.id, attempt: 1, firstSeq: 1, lines: [{ at: new Date(), stream: LogStream.LOG_STREAM_STDOUT, text: 'during the drain' }] } });
    expect(await agent.next('logAck')).toMatchObject({ ackedSeq: 1 });
    const seq = agent.heartbeat();
    while ((await agent.next('heartbeatAck')).seq !== seq);

    // This replica takes no new stream: the agent's next one must go elsewhere.
    const refused = new ProtocolClient(t.grpcAddress, token.secret);
    clients.push(refused);
    refused.hello();
    const ended = await refused.closed();
    expect(ended !== 'ok' && ended.code).toBe(status.UNAVAILABLE);

    // The agent has a new stream elsewhere and closes this one: the replica finishes stopping.
    agent.close();
    await stopped;
  });

  it('ends a stream whose agent does not move with UNAVAILABLE once the drain budget is spent, and says so', async () => {
    const { t, agent } = await systemWithRunningJob('1s');
    const stopped = t.stop();
    await agent.next('goAway');
    const ended = await agent.closed();
    expect(ended !== 'ok' && ended.code).toBe(status.UNAVAILABLE);
    await stopped;
    // Cutting what was left is the budget at work: a warning that counts it, no error.
    expect(t.logLines.filter((line) => line.msg === 'gateway drain budget spent: cut what was left')).toMatchObject([{ level: 40, left: { agents: 1 } }]);
    expect(t.logLines.filter((line) => line.level >= 50)).toEqual([]);
  });
});
