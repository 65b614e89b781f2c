// A lean agent.v1 agent for benchmarks (its stream in bench-stream-agent.ts) that answers every
// assignment at once with accepted, started and finished (succeeded, exit 0): a job whose command is
// `true`, without spawning it, so the figures are the control plane's.
import { JobOutcome, type JobAssignment } from '../../generated/proto/agent/v1/agent.js';
import { BenchStreamAgent, type ServerPayload } from './bench-stream-agent.js';

export interface BenchAgentOptions {
  capacity?: number;
  labels?: string[];
  /** Called when an assignment arrives, before it is answered (performance.now() time). */
  onAssignment?: (jobId: string, at: number) => void;
  /** No Welcome within this long fails connect(). */
  welcomeTimeoutMs?: number;
}

export class BenchAgent extends BenchStreamAgent {
  /** Jobs reported finished and acknowledged by the server. */
  finishedAcks = 0;

  private constructor(address: string, token: string, private readonly options: BenchAgentOptions) {
    super(address, token);
  }

  /** Connects, says Hello and resolves once the server's Welcome arrived. */
  static async connect(address: string, token: string, options: BenchAgentOptions = {}): Promise<BenchAgent> {
    const agent = new BenchAgent(address, token, options);
    const hello = { name: `bench-${agent.agentId.slice(0, 8)}`, labels: options.labels ?? [], capacity: options.capacity ?? 1 };
    await agent.open(hello, options.welcomeTimeoutMs ?? 30_000);
    return agent;
  }

  protected handle(payload: ServerPayload): void {
    if (payload.$case === 'assignment') this.run(payload.value);
    else if (payload.$case === 'finishedAck') this.finishedAcks += 1;
  }

  private run(assignment: JobAssignment): void {
    const { jobId, attempt } = assignment;
    this.options.onAssignment?.(jobId, performance.now());
    this.write({ $case: 'accepted', value: { jobId, attempt } });
    this.write({ $case: 'started', value: { jobId, attempt, startedAt: new Date() } });
    this.write({ $case: 'finished', value: { jobId, attempt, outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED, exitCode: 0, failureReason: '', finishedAt: new Date(), lastSeq: 0, change: undefined } });
  }
}

/** Connects `count` agents, at most `parallel` handshakes at a time; each handshake's ms go to `handshakes`. */
export async function connectAgents(address: string, token: string, count: number, options: BenchAgentOptions & { parallel?: number; handshakes?: number[] } = {}): Promise<BenchAgent[]> {
  const agents: BenchAgent[] = [];
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(options.parallel ?? 20, count) }, async () => {
        while (next < count) {
          next += 1;
          const t0 = performance.now();
          agents.push(await BenchAgent.connect(address, token, options));
          options.handshakes?.push(performance.now() - t0);
        }
      }),
    );
    return agents;
  } catch (err) {
    for (const a of agents) a.close();
    throw err;
  }
}
