// What every benchmark agent does the same way: a real agent.v1 Connect stream over loopback on a
// connection of its own (as an agent on another machine has), Hello → Welcome, heartbeats at the
// interval Welcome names, and any notice, cancel or unasked end of the stream kept as a problem (a
// benchmark bug). Subclasses answer the rest: assignments, acks.
import { randomUUID } from 'node:crypto';
import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { AgentServiceClient, type AgentMessage, type Hello, type RunningJob, type ServerMessage, type Welcome } from '../../generated/proto/agent/v1/agent.js';

// Without a local pool grpc-js would multiplex every agent of this process on one HTTP/2 connection;
// real agents each hold their own, and the server's per-connection cost is part of what is measured.
const CHANNEL_OPTIONS = { 'grpc.use_local_subchannel_pool': 1 };
const HEARTBEAT_FALLBACK_MS = 10_000;

export type ServerPayload = NonNullable<ServerMessage['payload']>;

export abstract class BenchStreamAgent {
  readonly agentId = randomUUID();
  /** Anything the server objected to (notices), or how the stream ended unasked: a benchmark bug. */
  readonly problems: string[] = [];
  protected readonly stream: ClientDuplexStream<AgentMessage, ServerMessage>;
  private readonly client: AgentServiceClient;
  private heartbeats: NodeJS.Timeout | undefined;
  private closing = false;

  protected constructor(address: string, token: string) {
    this.client = new AgentServiceClient(address, credentials.createInsecure(), CHANNEL_OPTIONS);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    this.stream = this.client.connect(metadata);
  }

  close(): void {
    this.closing = true;
    clearInterval(this.heartbeats);
    this.stream.cancel();
    this.client.close();
  }

  /** Every server message but Welcome, notices and cancels. */
  protected abstract handle(payload: ServerPayload): void;

  /** Welcome arrived; its limits are for the subclass to take. */
  protected welcomed(_welcome: Welcome): void {}

  /** What each heartbeat reports as held. */
  protected runningJobs(): RunningJob[] {
    return [];
  }

  /** Says Hello and resolves once Welcome arrived; on failure the stream is closed. */
  protected async open(hello: Pick<Hello, 'name' | 'labels' | 'capacity'>, welcomeTimeoutMs: number): Promise<void> {
    try {
      await this.handshake(hello, welcomeTimeoutMs);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** False when the stream's buffer is full: wait for 'drain' before writing more. */
  protected write(payload: AgentMessage['payload']): boolean {
    if (this.closing) return true;
    return this.stream.write({ payload });
  }

  private handshake(hello: Pick<Hello, 'name' | 'labels' | 'capacity'>, welcomeTimeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no Welcome in time')), welcomeTimeoutMs);
      this.stream.on('data', (message: ServerMessage) => {
        const payload = message.payload;
        if (!payload) return;
        switch (payload.$case) {
          case 'welcome': {
            clearTimeout(timer);
            const interval = payload.value.heartbeatInterval;
            const everyMs = interval ? interval.seconds * 1000 + interval.nanos / 1e6 : HEARTBEAT_FALLBACK_MS;
            this.welcomed(payload.value);
            let seq = 0;
            this.heartbeats = setInterval(() => this.write({ $case: 'heartbeat', value: { seq: ++seq, runningJobs: this.runningJobs() } }), everyMs);
            this.heartbeats.unref();
            resolve();
            return;
          }
          case 'notice':
            this.problems.push(`notice ${payload.value.code} for job ${payload.value.jobId}: ${payload.value.detail}`);
            return;
          case 'cancel':
            this.problems.push(`unexpected cancel of job ${payload.value.jobId}: ${payload.value.reason}`);
            return;
          default:
            this.handle(payload);
        }
      });
      this.stream.on('error', (err: ServiceError) => {
        clearTimeout(timer);
        clearInterval(this.heartbeats);
        if (!this.closing) this.problems.push(`stream ended: ${err.message}`);
        reject(err);
      });
      this.stream.on('end', () => clearInterval(this.heartbeats));
      this.write({ $case: 'hello', value: { ...hello, agentId: this.agentId, version: 'bench', runningJobs: [] } });
    });
  }
}
