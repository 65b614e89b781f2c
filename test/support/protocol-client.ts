// A scriptable agent.v1 client for protocol tests: speaks the generated stubs over real gRPC and
// lets a test read the server's messages one by one. It also checks the server's side of the
// protocol as a conforming agent would notice it (Welcome first and once, never more assignments than
// the capacity, acks only for what it sent), and lists what the server got wrong in `violations`.
import { randomUUID } from 'node:crypto';
import { credentials, Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { AgentServiceClient, type AgentMessage, type JobOutcome, type RunChange, type ServerMessage } from '../../generated/proto/agent/v1/agent.js';

type Payload = NonNullable<ServerMessage['payload']>;
type Case = Payload['$case'];
export type MessageOf<C extends Case> = Extract<Payload, { $case: C }>['value'];

export class ProtocolClient {
  readonly agentId: string;
  private readonly client: AgentServiceClient;
  private readonly stream: ClientDuplexStream<AgentMessage, ServerMessage>;
  private readonly inbox: Payload[] = [];
  private waiters: (() => void)[] = [];
  /** The status the stream ended with, once it has. */
  ended: ServiceError | 'ok' | undefined;
  private heartbeats: NodeJS.Timeout | undefined;
  private heartbeatSeq = 0;
  /**
   * The runs this client holds, as a conforming agent lists them in every Heartbeat: named in Hello,
   * or accepted since, until rejected, dropped, or their JobFinished is acknowledged.
   */
  readonly held = new Map<string, { attempt: number; lastSeq: number }>();
  /** Where the server broke agent.proto, as this client saw it; tests expect it empty. */
  readonly violations: string[] = [];
  private capacity = 0;
  private welcomed = false;
  /** Assignments not yet answered with JobAccepted or JobRejected, as `jobId/attempt`. */
  private readonly unanswered = new Set<string>();
  /** Runs whose JobFinished was sent, as `jobId/attempt`: a JobFinishedAck names one of them. */
  private readonly reportedFinished = new Set<string>();

  /** `authorization` replaces the `Bearer <token>` header as a whole (to send malformed ones). */
  constructor(address: string, token: string | undefined, agentId: string = randomUUID(), authorization?: string) {
    this.agentId = agentId;
    this.client = new AgentServiceClient(address, credentials.createInsecure());
    const metadata = new Metadata();
    const header = authorization ?? (token ? `Bearer ${token}` : undefined);
    if (header !== undefined) metadata.set('authorization', header);
    this.stream = this.client.connect(metadata);
    this.stream.on('data', (message: ServerMessage) => {
      if (message.payload) {
        this.check(message.payload);
        this.inbox.push(message.payload);
        this.track(message.payload);
      }
      this.wake();
    });
    this.stream.on('error', (err: ServiceError) => {
      clearInterval(this.heartbeats);
      this.ended = err;
      this.wake();
    });
    this.stream.on('end', () => {
      this.ended ??= 'ok';
      this.wake();
    });
  }

  send(payload: AgentMessage['payload']): void {
    switch (payload?.$case) {
      case 'hello':
        this.capacity = payload.value.capacity;
        break;
      case 'finished':
        this.reportedFinished.add(`${payload.value.jobId}/${payload.value.attempt}`);
        break;
    }
    if (payload?.$case === 'accepted' || payload?.$case === 'rejected') this.unanswered.delete(`${payload.value.jobId}/${payload.value.attempt}`);
    switch (payload?.$case) {
      case 'accepted':
        if (this.held.get(payload.value.jobId)?.attempt !== payload.value.attempt) this.held.set(payload.value.jobId, { attempt: payload.value.attempt, lastSeq: 0 });
        break;
      case 'logBatch': {
        const run = this.held.get(payload.value.jobId);
        if (run?.attempt === payload.value.attempt) run.lastSeq = Math.max(run.lastSeq, payload.value.firstSeq + payload.value.lines.length - 1);
        break;
      }
      case 'rejected':
        if (this.held.get(payload.value.jobId)?.attempt === payload.value.attempt) this.held.delete(payload.value.jobId);
        break;
    }
    this.stream.write({ payload });
  }

  /** Starts an assigned run as a conforming agent does: JobAccepted (unless already sent), then JobStarted. */
  start(jobId: string, attempt: number): void {
    if (this.held.get(jobId)?.attempt !== attempt) this.send({ $case: 'accepted', value: { jobId, attempt } });
    this.send({ $case: 'started', value: { jobId, attempt, startedAt: new Date() } });
  }

  /** Sends a Heartbeat listing what this client holds, numbered as the protocol asks. */
  heartbeat(): number {
    const seq = ++this.heartbeatSeq;
    this.send({ $case: 'heartbeat', value: { seq, runningJobs: [...this.held].map(([jobId, run]) => ({ jobId, attempt: run.attempt, lastSeq: run.lastSeq })) } });
    return seq;
  }

  /** What a conforming agent would find wrong with this server message. */
  private check(payload: Payload): void {
    const violation = (what: string) => this.violations.push(`${payload.$case}: ${what}`);
    if (!this.welcomed && payload.$case !== 'welcome') violation('arrived before Welcome');
    if (this.welcomed && payload.$case === 'welcome') violation('a second Welcome on one stream');
    if (payload.$case === 'welcome') this.welcomed = true;
    if (payload.$case === 'heartbeatAck' && payload.value.seq > this.heartbeatSeq) violation(`acks heartbeat ${payload.value.seq}, never sent`);
    if (payload.$case === 'finishedAck' && !this.reportedFinished.has(`${payload.value.jobId}/${payload.value.attempt}`)) violation('acks a JobFinished never sent');
    if (payload.$case === 'assignment') {
      // The server counts the runs the agent holds and the assignments it has not answered.
      const busy = new Set([...[...this.held].map(([jobId, run]) => `${jobId}/${run.attempt}`), ...this.unanswered]).size;
      if (busy >= this.capacity) violation(`beyond capacity ${this.capacity} (${busy} held or unanswered)`);
      this.unanswered.add(`${payload.value.jobId}/${payload.value.attempt}`);
    }
  }

  private track(payload: Payload): void {
    const forget = (jobId: string, attempt?: number) => {
      if (attempt === undefined || this.held.get(jobId)?.attempt === attempt) this.held.delete(jobId);
    };
    if (payload.$case === 'finishedAck' || payload.$case === 'drop') {
      forget(payload.value.jobId, payload.value.attempt);
      this.unanswered.delete(`${payload.value.jobId}/${payload.value.attempt}`);
    }
    if (payload.$case === 'welcome') for (const jobId of payload.value.cancelJobIds) forget(jobId);
  }

  /** Says Hello, then heartbeats every `heartbeatMs` as a live agent does (0: stay silent). */
  hello(options: { labels?: string[]; capacity?: number; runningJobs?: { jobId: string; attempt: number; lastSeq: number }[]; heartbeatMs?: number } = {}): void {
    const heartbeatMs = options.heartbeatMs ?? 500;
    for (const run of options.runningJobs ?? []) this.held.set(run.jobId, { attempt: run.attempt, lastSeq: run.lastSeq });
    if (heartbeatMs > 0) {
      this.heartbeats = setInterval(() => {
        if (!this.ended) this.heartbeat();
      }, heartbeatMs);
    }
    this.send({
      $case: 'hello',
      value: { agentId: this.agentId, name: `test-${this.agentId.slice(0, 8)}`, version: 'test', labels: options.labels ?? [], capacity: options.capacity ?? 1, runningJobs: options.runningJobs ?? [] },
    });
  }

  /** Reports a run's end, as an agent does once all its lines are sent. */
  finish(jobId: string, attempt: number, outcome: JobOutcome, details: { exitCode?: number; failureReason?: string; lastSeq?: number; change?: RunChange } = {}): void {
    this.send({
      $case: 'finished',
      value: {
        jobId,
        attempt,
        outcome,
        ...(details.exitCode === undefined ? {} : { exitCode: details.exitCode }),
        failureReason: details.failureReason ?? '',
        finishedAt: new Date(),
        lastSeq: details.lastSeq ?? 0,
        change: details.change,
      },
    });
  }

  /** Sends bytes of a run's patch from `offset`. */
  sendPatch(jobId: string, attempt: number, offset: number, data: Uint8Array): void {
    this.send({ $case: 'patchChunk', value: { jobId, attempt, offset, data: Buffer.from(data) } });
  }

  /** The next server message of this kind; others before it are skipped. */
  async next<C extends Case>(kind: C, timeoutMs = 20_000): Promise<MessageOf<C>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.inbox.findIndex((m) => m.$case === kind);
      if (index >= 0) return this.inbox.splice(index, 1)[0]!.value as MessageOf<C>;
      if (this.ended) throw new Error(`stream ended (${this.ended === 'ok' ? 'ok' : this.ended.message}) before a ${kind} arrived`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${kind} within ${timeoutMs} ms; inbox: ${JSON.stringify(this.inbox.map((m) => m.$case))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The messages of this kind received and not yet taken by next(). */
  received<C extends Case>(kind: C): MessageOf<C>[] {
    return this.inbox.filter((m) => m.$case === kind).map((m) => m.value as MessageOf<C>);
  }

  /** Resolves with the status the server ended the stream with. */
  async closed(timeoutMs = 20_000): Promise<ServiceError | 'ok'> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('the stream did not end');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.ended;
  }

  close(): void {
    clearInterval(this.heartbeats);
    this.stream.cancel();
    this.client.close();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Closes every client a test opened, and returns where the server broke agent.proto as they saw it
 * (ProtocolClient.violations): a protocol suite's afterEach expects it empty, whatever the test did.
 */
export function closeClients(clients: ProtocolClient[]): string[] {
  const violations = clients.flatMap((c) => c.violations);
  for (const c of clients.splice(0)) c.close();
  return violations;
}
