// A lean agent.v1 agent for benchmarks: a real gRPC client over loopback with the generated stubs, on a
// connection of its own (as an agent on another machine has), that answers every assignment at once
// with accepted, started and finished (succeeded, exit 0): a job whose command is `true`, without
// spawning it, so the figures are the control plane's. It heartbeats at the interval Welcome names.
import { randomUUID } from 'node:crypto';
import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { AgentServiceClient, JobOutcome, type AgentMessage, type JobAssignment, type ServerMessage } from '../../generated/proto/agent/v1/agent.js';

export interface BenchAgentOptions {
  capacity?: number;
  labels?: string[];
  /** Called when an assignment arrives, before it is answered (performance.now() time). */
  onAssignment?: (jobId: string, at: number) => void;
  /** No Welcome within this long fails connect(). */
  welcomeTimeoutMs?: number;
}

// Without a local pool grpc-js would multiplex every agent of this process on one HTTP/2 connection;
// real agents each hold their own, and the server's per-connection cost is part of what is measured.
const CHANNEL_OPTIONS = { 'grpc.use_local_subchannel_pool': 1 };
const HEARTBEAT_FALLBACK_MS = 10_000;

export class BenchAgent {
  readonly agentId = randomUUID();
  /** Jobs reported finished and acknowledged by the server. */
  finishedAcks = 0;
  /** Anything the server objected to (notices), or how the stream ended unasked: a benchmark bug. */
  readonly problems: string[] = [];
  private readonly client: AgentServiceClient;
  private readonly stream: ClientDuplexStream<AgentMessage, ServerMessage>;
  private heartbeats: NodeJS.Timeout | undefined;
  private closing = false;

  private constructor(address: string, token: string, private readonly options: BenchAgentOptions) {
    this.client = new AgentServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    this.stream = this.client.connect(metadata);
  }

  /** Connects, says Hello and resolves once the server's Welcome arrived. */
  static async connect(address: string, token: string, options: BenchAgentOptions = {}): Promise<BenchAgent> {
    const agent = new BenchAgent(address, token, options);
    try {
      await agent.open();
      return agent;
    } catch (err) {
      agent.close();
      throw err;
    }
  }

  close(): void {
    this.closing = true;
    clearInterval(this.heartbeats);
    this.stream.cancel();
    this.client.close();
  }

  private open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no Welcome in time')), this.options.welcomeTimeoutMs ?? 30_000);
      this.stream.on('data', (message: ServerMessage) => {
        const payload = message.payload;
        switch (payload?.$case) {
          case 'welcome': {
            clearTimeout(timer);
            const interval = payload.value.heartbeatInterval;
            const everyMs = interval ? interval.seconds * 1000 + interval.nanos / 1e6 : HEARTBEAT_FALLBACK_MS;
            this.heartbeats = setInterval(() => this.send({ $case: 'heartbeat', value: { runningJobs: [] } }), everyMs);
            this.heartbeats.unref();
            resolve();
            return;
          }
          case 'assignment':
            return this.run(payload.value);
          case 'finishedAck':
            this.finishedAcks += 1;
            return;
          case 'notice':
            this.problems.push(`notice ${payload.value.code} for job ${payload.value.jobId}: ${payload.value.detail}`);
            return;
          case 'cancel':
            this.problems.push(`unexpected cancel of job ${payload.value.jobId}: ${payload.value.reason}`);
            return;
          default:
            return;
        }
      });
      this.stream.on('error', (err: ServiceError) => {
        clearTimeout(timer);
        clearInterval(this.heartbeats);
        if (!this.closing) this.problems.push(`stream ended: ${err.message}`);
        reject(err);
      });
      this.stream.on('end', () => clearInterval(this.heartbeats));
      this.send({
        $case: 'hello',
        value: { agentId: this.agentId, name: `bench-${this.agentId.slice(0, 8)}`, version: 'bench', labels: this.options.labels ?? [], capacity: this.options.capacity ?? 1, runningJobs: [] },
      });
    });
  }

  private run(assignment: JobAssignment): void {
    const { jobId, attempt } = assignment;
    this.options.onAssignment?.(jobId, performance.now());
    this.send({ $case: 'accepted', value: { jobId, attempt } });
    this.send({ $case: 'started', value: { jobId, attempt, startedAt: new Date() } });
    this.send({ $case: 'finished', value: { jobId, attempt, outcome: JobOutcome.JOB_OUTCOME_SUCCEEDED, exitCode: 0, failureReason: '', finishedAt: new Date(), lastSeq: 0 } });
  }

  private send(payload: AgentMessage['payload']): void {
    if (!this.closing) this.stream.write({ payload });
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
