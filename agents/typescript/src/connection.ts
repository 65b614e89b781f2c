// The agent's one Connect stream, kept open: Hello first, Welcome awaited, heartbeats on the
// server's interval, GoAway honoured by moving to a new stream, and after any loss a new stream
// after a jittered exponential backoff. Statuses that a retry cannot fix (a revoked token, for
// instance) end the agent instead. What the messages mean is the SessionHandler's business.
import { credentials, Metadata, status, type ChannelOptions, type ClientDuplexStream, type StatusObject } from '@grpc/grpc-js';
import { AgentServiceClient, type AgentMessage, type Heartbeat, type Hello, type ServerMessage, type Welcome } from '../generated/agent/v1/agent.js';
import { agentLog } from './agent-log.js';
import { DEFAULT_BACKOFF, fullJitterDelayMs, goAwayDelayMs, type BackoffPolicy } from './backoff.js';
import type { ServerTarget } from './cli-options.js';
import { durationToMs, formatMs } from './durations.js';
import { AgentLease } from './lease.js';

export type AgentPayload = NonNullable<AgentMessage['payload']>;
export type ServerPayload = NonNullable<ServerMessage['payload']>;
/** Server messages the handler sees; Welcome, GoAway and HeartbeatAck are the connection's own. */
export type SessionPayload = Exclude<ServerPayload, { $case: 'welcome' | 'goAway' | 'heartbeatAck' }>;

/** Where the handler writes: one welcomed stream. */
export interface OutboundChannel {
  /** Distinguishes streams, so the handler knows what it has already sent on this one. */
  readonly sessionNumber: number;
  /**
   * Queues a message; false means the stream's buffer is full and the caller should wait for drain.
   * onWritten runs once the message has left for the server; never if the stream ends first.
   */
  write(payload: AgentPayload, onWritten?: () => void): boolean;
  onceDrained(listener: () => void): void;
}

export interface SessionHandler {
  /** The Hello for a stream about to open: built fresh each time, since it lists the jobs held now. */
  hello(): Hello;
  heartbeat(): Heartbeat;
  welcomed(welcome: Welcome, channel: OutboundChannel): void;
  /**
   * The server answered what the agent sent at `sentAt` (AgentLease.now()): a Hello (by its
   * Welcome) or a Heartbeat (by its HeartbeatAck). `leaseMs` is the lease that stream's Welcome
   * named; undefined for a server from before leases.
   */
  answered(sentAt: number, leaseMs: number | undefined): void;
  received(payload: SessionPayload, channel: OutboundChannel): void;
  /** The stream the handler was writing to is gone; keep everything until the next welcomed(). */
  disconnected(): void;
}

export interface ConnectionSettings {
  target: ServerTarget;
  token: string;
  /** Heartbeat interval until (or unless) Welcome names one. */
  heartbeatFallbackMs: number;
  backoff?: BackoffPolicy;
}

export type ConnectionEnd = { kind: 'stopped' } | { kind: 'fatal'; code: status; message: string };

/** Retrying cannot fix these: the token is bad or revoked, the Hello is wrong, or the agent id is another organisation's. */
const FATAL_STATUSES = new Set<status>([status.UNAUTHENTICATED, status.INVALID_ARGUMENT, status.PERMISSION_DENIED]);
/** Streams in a row ended by a protocol error, never welcomed, after which the address is taken for not gRPC at all. */
const PROTOCOL_ERRORS_BEFORE_GIVING_UP = 3;
/** A stream that gets no Welcome in this time is given up and retried. */
const WELCOME_TIMEOUT_MS = 30_000;
/** A session that lasted this long was healthy: the next failure starts the backoff from the bottom. */
const STABLE_SESSION_MS = 10_000;
/** How long a polite close waits for the server to end the stream before cutting it. */
const CLOSE_TIMEOUT_MS = 3_000;

// NATs and load balancers drop quiet connections; pings keep them open and notice a dead peer.
const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
};

class StreamSession implements OutboundChannel {
  welcomedAt: number | undefined;
  goingAway = false;
  /** Closed by us because a newer stream took over. */
  replaced = false;
  /** We have half-closed it (stopping): nothing more may be written. */
  halfClosed = false;
  ended = false;
  heartbeatTimer: NodeJS.Timeout | undefined;
  welcomeTimer: NodeJS.Timeout | undefined;
  /** When the Hello went out, and each unanswered Heartbeat (by seq), on the lease's clock. */
  helloSentAt = 0;
  readonly heartbeatsSentAt = new Map<number, number>();
  private lastHeartbeatSeq = 0;
  /** The lease the Welcome named. */
  leaseMs: number | undefined;

  constructor(
    readonly sessionNumber: number,
    readonly client: AgentServiceClient,
    readonly call: ClientDuplexStream<AgentMessage, ServerMessage>,
  ) {}

  write(payload: AgentPayload, onWritten?: () => void): boolean {
    if (this.ended || this.halfClosed) return true; // a later stream resends what matters
    if (!onWritten) return this.call.write({ payload });
    return this.call.write({ payload }, (err: Error | null | undefined) => {
      if (!err && !this.ended) onWritten();
    });
  }

  onceDrained(listener: () => void): void {
    this.call.once('drain', listener);
  }

  sendHeartbeat(heartbeat: Heartbeat): void {
    const seq = ++this.lastHeartbeatSeq;
    this.heartbeatsSentAt.set(seq, AgentLease.now());
    this.write({ $case: 'heartbeat', value: { ...heartbeat, seq } });
  }
}

export class AgentConnection {
  /** The welcomed stream the handler writes to. */
  private current: StreamSession | undefined;
  /** A stream opened but not yet welcomed (a reconnect, or the replacement after a GoAway). */
  private opening: StreamSession | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private failedAttempts = 0;
  private sessionCount = 0;
  private stopping = false;
  private ended = false;
  /** Some stream of this agent was welcomed once: the address does speak the protocol. */
  private everWelcomed = false;
  /** Streams in a row that ended in an HTTP/2 protocol error before any Welcome. */
  private protocolErrors = 0;
  /** The lease the last Welcome named: reconnects are tried often enough to come back well within it. */
  private leaseMs: number | undefined;
  private resolveEnd: (end: ConnectionEnd) => void = () => {};
  private readonly endPromise = new Promise<ConnectionEnd>((resolve) => {
    this.resolveEnd = resolve;
  });

  constructor(
    private readonly settings: ConnectionSettings,
    private readonly handler: SessionHandler,
  ) {}

  /** Connects and keeps connecting; resolves when stopped or refused for good. */
  run(): Promise<ConnectionEnd> {
    this.open();
    return this.endPromise;
  }

  get connected(): boolean {
    return this.current !== undefined;
  }

  /** Closes politely: half-closes the stream, gives the server a moment to end it, then cuts it. */
  async stop(): Promise<void> {
    if (this.ended) return;
    this.stopping = true;
    clearTimeout(this.reconnectTimer);
    this.opening?.call.cancel();
    const current = this.current;
    if (current && !current.ended) {
      clearInterval(current.heartbeatTimer);
      current.halfClosed = true;
      current.call.end();
      const cut = setTimeout(() => current.call.cancel(), CLOSE_TIMEOUT_MS);
      await new Promise<void>((resolve) => current.call.once('status', () => resolve()));
      clearTimeout(cut);
    }
    this.finish({ kind: 'stopped' });
  }

  private open(): void {
    if (this.stopping || this.ended) return;
    const sessionNumber = ++this.sessionCount;
    // A new client per stream means a new connection, which a load balancer may send to another
    // replica: what a GoAway asks for.
    const channelCredentials = this.settings.target.tls ? credentials.createSsl() : credentials.createInsecure();
    const client = new AgentServiceClient(this.settings.target.address, channelCredentials, CHANNEL_OPTIONS);
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${this.settings.token}`);
    const session = new StreamSession(sessionNumber, client, client.connect(metadata));
    this.opening = session;
    agentLog.info('connecting', { server: this.settings.target.address, stream: sessionNumber });

    session.call.on('data', (message: ServerMessage) => this.onMessage(session, message));
    // Every end is reported once through 'status'; 'error' needs a listener or it would throw.
    session.call.on('error', () => {});
    session.call.on('status', (streamStatus: StatusObject) => this.onEnded(session, streamStatus));
    session.welcomeTimer = setTimeout(() => {
      agentLog.warn('no Welcome from the server; trying again', { stream: sessionNumber, waited: formatMs(WELCOME_TIMEOUT_MS) });
      session.call.cancel();
    }, WELCOME_TIMEOUT_MS);
    session.helloSentAt = AgentLease.now();
    session.write({ $case: 'hello', value: this.handler.hello() });
  }

  private onMessage(session: StreamSession, message: ServerMessage): void {
    const payload = message.payload;
    if (!payload) {
      agentLog.debug('ignoring a server message of a kind this agent does not know', { stream: session.sessionNumber });
      return;
    }
    if (payload.$case === 'welcome') return this.onWelcome(session, payload.value);
    if (session.welcomedAt === undefined) {
      agentLog.warn('the server spoke before its Welcome; ignoring', { stream: session.sessionNumber, message: payload.$case });
      return;
    }
    if (payload.$case === 'goAway') return this.onGoAway(session, payload.value.reason, durationToMs(payload.value.reconnectAfter) ?? 0);
    if (payload.$case === 'heartbeatAck') {
      const sentAt = session.heartbeatsSentAt.get(payload.value.seq);
      // Acks come in order: every heartbeat up to this one is answered or never will be.
      for (const seq of session.heartbeatsSentAt.keys()) if (seq <= payload.value.seq) session.heartbeatsSentAt.delete(seq);
      if (sentAt !== undefined) this.handler.answered(sentAt, session.leaseMs);
      return;
    }
    // Messages from a stream being replaced are still true (acks, cancels), so they count too.
    this.handler.received(payload, session);
  }

  private onWelcome(session: StreamSession, welcome: Welcome): void {
    if (session.welcomedAt !== undefined) {
      agentLog.warn('a second Welcome on one stream; ignoring', { stream: session.sessionNumber });
      return;
    }
    clearTimeout(session.welcomeTimer);
    session.welcomedAt = Date.now();
    const previous = this.current;
    this.current = session;
    if (this.opening === session) this.opening = undefined;
    const heartbeatMs = durationToMs(welcome.heartbeatInterval) || this.settings.heartbeatFallbackMs;
    session.leaseMs = durationToMs(welcome.leaseDuration) || undefined;
    this.leaseMs = session.leaseMs;
    this.everWelcomed = true;
    agentLog.info('connected', {
      stream: session.sessionNumber,
      session: welcome.sessionId,
      replica: welcome.replica,
      heartbeat: formatMs(heartbeatMs),
      lease: session.leaseMs !== undefined ? formatMs(session.leaseMs) : 'none',
      maxLogBatchLines: welcome.maxLogBatchLines,
    });
    session.heartbeatTimer = setInterval(() => session.sendHeartbeat(this.handler.heartbeat()), heartbeatMs);
    this.handler.answered(session.helloSentAt, session.leaseMs);
    this.handler.welcomed(welcome, session);
    // After a GoAway the old stream is closed only now that the new one carries the session.
    if (previous && !previous.ended) {
      previous.replaced = true;
      previous.call.cancel();
    }
  }

  private onGoAway(session: StreamSession, reason: string, hintMs: number): void {
    if (session !== this.current || session.goingAway) return;
    session.goingAway = true;
    const delayMs = goAwayDelayMs(hintMs);
    agentLog.info('server is going away; moving to a new stream', { reason, reconnectIn: formatMs(delayMs) });
    // Already on the way to a new stream (a reconnect is pending or being opened).
    if (this.opening || this.reconnectTimer) return;
    this.openAfter(delayMs);
  }

  private onEnded(session: StreamSession, streamStatus: StatusObject): void {
    session.ended = true;
    clearTimeout(session.welcomeTimer);
    clearInterval(session.heartbeatTimer);
    session.client.close();
    const lived = session.welcomedAt !== undefined ? Date.now() - session.welcomedAt : 0;
    if (lived >= STABLE_SESSION_MS) this.failedAttempts = 0;
    if (this.opening === session) this.opening = undefined;
    if (this.current === session) {
      this.current = undefined;
      this.handler.disconnected();
    }
    if (this.stopping || this.ended) return;

    const code = streamStatus.code;
    // A server that answers but does not speak gRPC (the HTTP port, say) will never welcome this
    // agent: after a few tries in a row, say so and stop rather than retry forever.
    if (!this.everWelcomed && /protocol error/i.test(streamStatus.details ?? '')) this.protocolErrors++;
    else this.protocolErrors = 0;
    if (this.protocolErrors >= PROTOCOL_ERRORS_BEFORE_GIVING_UP) {
      const message = `${this.settings.target.address} does not speak gRPC (${streamStatus.details}): is it the control plane's gRPC port (GRPC_PORT, 50051 by default) rather than its HTTP port?`;
      agentLog.error('not a gRPC endpoint; not retrying', { server: this.settings.target.address });
      this.finish({ kind: 'fatal', code, message });
      return;
    }
    if (FATAL_STATUSES.has(code)) {
      const message = streamStatus.details || status[code];
      agentLog.error('the server refused this agent; not retrying', { code: status[code], message });
      this.opening?.call.cancel();
      this.current?.call.cancel();
      clearTimeout(this.reconnectTimer);
      this.finish({ kind: 'fatal', code, message });
      return;
    }
    if (session.replaced) {
      agentLog.info('closed the replaced stream', { stream: session.sessionNumber });
      return;
    }
    agentLog.warn('stream ended', { stream: session.sessionNumber, code: status[code], message: streamStatus.details });
    // Someone is already on the way to a new stream: a reconnect being opened, or a GoAway's timer.
    if (this.opening || this.reconnectTimer) return;
    // An old stream ended after its replacement took over: nothing to do.
    if (this.current && !this.current.goingAway) return;
    const policy = this.settings.backoff ?? DEFAULT_BACKOFF;
    // Runs go on only while the lease holds: a server back within it must hear from the agent in time.
    const capMs = this.leaseMs !== undefined ? Math.min(policy.capMs, Math.max(policy.baseMs, Math.floor(this.leaseMs / 4))) : policy.capMs;
    const delayMs = fullJitterDelayMs(this.failedAttempts++, { ...policy, capMs });
    agentLog.info('reconnecting', { in: formatMs(delayMs), failedAttempts: this.failedAttempts });
    this.openAfter(delayMs);
  }

  private openAfter(delayMs: number): void {
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.open();
    }, delayMs);
  }

  private finish(end: ConnectionEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.resolveEnd(end);
  }
}
