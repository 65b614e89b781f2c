// The dispatch rules and slot accounting on their own, with claims served from a list: which agent
// is asked, in what turn, how many runs each may hold, and what the agent's own reports do to that.
import { describe, expect, it } from 'vitest';
import type { AgentSessionRef, Assignment } from './agent-gateway.service.js';
import { Dispatcher } from './dispatcher.js';

const ORG = '3f1c9a52-5a8e-4c1e-9a53-1d2c3b4a5e6f';

function agentRef(n: number, capacity = 1, labels: string[] = []): AgentSessionRef {
  return { agentId: `agent-${n}`, sessionId: `s-${n}`, orgId: ORG, tokenId: 't', labels, capacity };
}

function assignment(jobId: string, attempt = 1): Assignment {
  const timeouts = { queueMs: 1, startMs: 1, runMs: 1, agentSilenceMs: 1, cancelGraceMs: 1 };
  return { jobId, attempt, prompt: '', labels: [], queueType: 'backlog', revisesJobId: null, repository: { id: 'r', name: 'r', cloneUrl: 'u', defaultBranch: 'main' }, timeouts, revises: null, trace: null };
}

/** Queued jobs in dispatch order; a claim takes the first that fits the agent's labels. */
function queue(...jobs: { id: string; labels?: string[] }[]) {
  const claims: string[] = [];
  const claimNext = async (agent: AgentSessionRef) => {
    const index = jobs.findIndex((job) => (job.labels ?? []).every((label) => agent.labels.includes(label)));
    if (index < 0) return undefined;
    const [job] = jobs.splice(index, 1);
    claims.push(`${agent.agentId}:${job!.id}`);
    return assignment(job!.id);
  };
  return { claimNext, claims, jobs };
}

function delivered() {
  const got: string[] = [];
  return { got, sink: { deliver: (a: Assignment) => void got.push(a.jobId) } };
}

const noErrors = (err: unknown) => {
  throw err;
};

describe('dispatch', () => {
  it('never gives an agent more runs than its capacity, and gives it more as the agent reports runs ended', async () => {
    const q = queue({ id: 'a' }, { id: 'b' }, { id: 'c' });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const out = delivered();
    const slots = dispatcher.open(agentRef(1, 2), out.sink);
    await slots.pump();
    expect(out.got).toEqual(['a', 'b']);
    await slots.pump();
    expect(out.got).toEqual(['a', 'b']);
    slots.released({ jobId: 'a', attempt: 1 });
    await slots.pump();
    expect(out.got).toEqual(['a', 'b', 'c']);
  });

  it('takes a heartbeat as the truth about slots, but keeps those of assignments the agent has not answered yet', async () => {
    const q = queue({ id: 'a' }, { id: 'b' }, { id: 'c' });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const out = delivered();
    const slots = dispatcher.open(agentRef(1, 2), out.sink);
    await slots.pump();
    slots.accepted({ jobId: 'a', attempt: 1 });
    // The agent lists nothing: it dropped 'a'. 'b' is still on its way to it.
    slots.reconcile([]);
    await slots.pump();
    expect(out.got).toEqual(['a', 'b', 'c']);
    expect([...slots.running.keys()].sort()).toEqual(['b', 'c']);
    expect(slots.owedRuns).toEqual([{ jobId: 'a', attempt: 1 }]);
  });

  it('offers an announced job to one agent at a time, in turn, until it is claimed', async () => {
    const q = queue({ id: 'older' }, { id: 'announced' });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const outs = [delivered(), delivered(), delivered()];
    outs.forEach((out, i) => dispatcher.open(agentRef(i + 1), out.sink));
    await dispatcher.offer(ORG, 'announced');
    // The first agent asked claimed the older job first, so the offer went on to the next one; the third was not asked.
    expect(q.claims).toHaveLength(2);
    expect(q.claims.map((c) => c.split(':')[1])).toEqual(['older', 'announced']);
    expect(outs.filter((out) => out.got.length === 0)).toHaveLength(1);
  });

  it('asks agents with other labels only when a claim by one label set finds nothing', async () => {
    const q = queue({ id: 'gpu-job', labels: ['gpu'] });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const plain = [delivered(), delivered()];
    const gpu = delivered();
    plain.forEach((out, i) => dispatcher.open(agentRef(i + 1), out.sink));
    dispatcher.open(agentRef(9, 1, ['gpu']), gpu.sink);
    await dispatcher.offer(ORG, 'gpu-job');
    expect(gpu.got).toEqual(['gpu-job']);
    // One claim for the plain label set found nothing; its other agent was not asked.
    expect(q.claims).toEqual(['agent-9:gpu-job']);
  });

  it('gives no new work to an agent that is draining or gone', async () => {
    const q = queue({ id: 'a' });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const out = delivered();
    const slots = dispatcher.open(agentRef(1), out.sink);
    slots.drain();
    await dispatcher.sweep(ORG);
    expect(out.got).toEqual([]);
    dispatcher.close(slots);
    expect(dispatcher.organisations.size).toBe(0);
  });

  it('offers a job an agent declined to the other agents first, and to that agent again after', async () => {
    const q = queue({ id: 'declined' });
    const dispatcher = new Dispatcher(q.claimNext, noErrors);
    const a = delivered();
    const b = delivered();
    const slotsA = dispatcher.open(agentRef(1), a.sink);
    await slotsA.pump();
    dispatcher.open(agentRef(2), b.sink);
    // Agent 1 declines; the job is back in the queue and announced.
    slotsA.declinedRun({ jobId: 'declined', attempt: 1 });
    q.jobs.push({ id: 'declined' });
    await dispatcher.offer(ORG, 'declined');
    expect(b.got).toEqual(['declined']);
    // Had nobody taken it, agent 1 could have it again now.
    q.jobs.push({ id: 'declined' });
    await dispatcher.sweep(ORG);
    expect(a.got).toEqual(['declined', 'declined']);
  });
});
