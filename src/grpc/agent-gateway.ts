// The agent gateway of one replica: serves agent.v1 AgentService, keeps the sessions whose streams
// this replica holds, and carries what other replicas announce through the event bus to them (a
// cancel or a drop for one of our agents, a revoked token, an agent that reconnected elsewhere).
// Which agent gets which job is the dispatcher's business (src/services/dispatcher.ts).
import { Metadata, status, type Server } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AgentServiceService, type AgentServiceServer } from '../../generated/proto/agent/v1/agent.js';
import type { AgentGatewayService } from '../services/agent-gateway.service.js';
import { Dispatcher } from '../services/dispatcher.js';
import type { EventBus } from '../services/notifications.js';
import { AgentSession, type AgentStream, type SessionSettings } from './agent-session.js';
import { InboundBudget } from './inbound-budget.js';
import type { AgentCapacity } from '../observability/metrics.js';

export interface AgentGatewayOptions extends SessionSettings {
  /** How often every session looks for work even without a notification (a lost NOTIFY costs at most this). */
  sweepIntervalMs: number;
}

/**
 * How long after its assignment a job's claim or its agent's report may take to reach the workflow
 * before the sweep delivers it again (the process that should have died in between).
 */
const STALLED_STEP_MS = 15_000;

/** Log text and patch bytes read from all agents and not yet stored, at most (about; see InboundBudget). */
const MAX_UNSTORED_BYTES_PER_PROCESS = 8 * 1024 * 1024;

export class AgentGateway {
  private readonly sessions = new Map<string, AgentSession>();
  private readonly pending = new Set<AgentSession>();
  private readonly inbound = new InboundBudget(MAX_UNSTORED_BYTES_PER_PROCESS);
  private readonly dispatcher: Dispatcher;
  private unsubscribe: (() => Promise<void>)[] = [];
  private sweep: NodeJS.Timeout | undefined;
  private stopping = false;
  /** A sweep's redelivery is under way (it talks to Temporal, which may be slow): the next sweep skips it. */
  private redelivering = false;

  constructor(
    private readonly service: AgentGatewayService,
    private readonly bus: EventBus,
    private readonly options: AgentGatewayOptions,
    private readonly log: Logger,
  ) {
    this.dispatcher = new Dispatcher(
      (agent, exclude) => service.claimNext(agent, exclude),
      (err, context) => log.error({ err, ...context }, 'dispatch failed'),
    );
  }

  register(server: Server): void {
    const implementation: AgentServiceServer = { connect: (call) => this.open(call) };
    server.addService(AgentServiceService, implementation);
  }

  async start(): Promise<void> {
    const { bus } = this;
    this.unsubscribe.push(
      await bus.subscribe('job_queued', ({ orgId, jobId }) => {
        this.dispatcher.offer(orgId, jobId).catch((err: unknown) => this.log.error({ err, orgId }, 'dispatch failed'));
      }),
      await bus.subscribe('agent_cancel', ({ agentId, jobId, attempt, reason, graceMs }) => this.sessions.get(agentId)?.sendCancel(jobId, attempt, reason, graceMs)),
      await bus.subscribe('agent_drop', ({ agentId, jobId, attempt, reason }) => this.sessions.get(agentId)?.sendDrop(jobId, attempt, reason)),
      await bus.subscribe('agent_token_revoked', ({ tokenId }) => this.endSessionsOfToken(tokenId)),
      await bus.subscribe('agent_session_opened', ({ agentId, sessionId }) => {
        const session = this.sessions.get(agentId);
        if (session?.ref && session.ref.sessionId !== sessionId) session.end(status.ABORTED, 'superseded by a newer stream of the same agent');
      }),
    );
    // Before any agent is welcomed: agents that were connected to a gateway that went away get a
    // fresh silence period from now to find this one (see the lease rule in agent.proto).
    await this.service.gatewayStarted(this.options.replica);
    this.sweep = setInterval(() => void this.sweepSessions(), this.options.sweepIntervalMs);
    this.sweep.unref();
  }

  /**
   * Tells every agent to move to a new stream, refuses new ones, and waits until each has closed its
   * stream here (the caller bounds the wait: endStreams).
   */
  async stop(): Promise<void> {
    clearInterval(this.sweep);
    this.stopping = true;
    await Promise.all([...this.sessions.values(), ...this.pending].map((session) => session.goAway('replica shutting down', 1000)));
    await Promise.all(this.unsubscribe.map((u) => u().catch(() => {})));
    this.unsubscribe = [];
  }

  /** Ends every stream still open here (UNAVAILABLE: the agent reconnects elsewhere); says how many. */
  endStreams(reason: string): number {
    const open = [...this.sessions.values(), ...this.pending];
    for (const session of open) session.end(status.UNAVAILABLE, `server going away: ${reason}`);
    return open.length;
  }

  get connectedAgents(): number {
    return this.sessions.size;
  }

  /** What this process's agents offer, for the metrics. */
  capacity(): AgentCapacity {
    let freeSlots = 0;
    for (const session of this.sessions.values()) freeSlots += session.slots?.freeSlots ?? 0;
    return { connected: this.sessions.size, freeSlots };
  }

  private open(call: AgentStream): void {
    // A stopping gateway takes no new stream: the agent's next try reaches another replica.
    if (this.stopping) {
      call.emit('error', { code: status.UNAVAILABLE, details: 'server going away: replica shutting down', metadata: new Metadata() });
      return;
    }
    const session = new AgentSession(
      call,
      this.service,
      this.dispatcher,
      this.options,
      {
        opened: (s) => {
          this.pending.delete(s);
          const agentId = s.agentId!;
          this.sessions.get(agentId)?.end(status.ABORTED, 'superseded by a newer stream of the same agent');
          this.sessions.set(agentId, s);
          void this.bus
            .publish('agent_session_opened', { agentId, sessionId: s.ref!.sessionId })
            .catch((err: unknown) => this.log.warn({ err }, 'could not announce agent session'));
        },
        closed: (s) => {
          this.pending.delete(s);
          if (s.agentId && this.sessions.get(s.agentId) === s) this.sessions.delete(s.agentId);
        },
        inbound: this.inbound,
      },
      this.log,
    );
    this.pending.add(session);
    void session.start();
  }

  private endSessionsOfToken(tokenId: string): void {
    for (const session of this.sessions.values()) {
      if (session.ref?.tokenId === tokenId) session.end(status.UNAUTHENTICATED, 'the agent token was revoked');
    }
  }

  /** The safety net behind notifications: look for work, and drop sessions whose token was revoked. */
  private async sweepSessions(): Promise<void> {
    try {
      const tokenIds = [...new Set([...this.sessions.values()].map((s) => s.ref?.tokenId).filter((id): id is string => !!id))];
      for (const revoked of await this.service.revokedTokens(tokenIds)) this.endSessionsOfToken(revoked);
      for (const orgId of this.dispatcher.organisations) {
        this.dispatcher.sweep(orgId).catch((err: unknown) => this.log.error({ err, orgId }, 'dispatch failed'));
      }
      // A claim lost between the database and Temporal (its gateway died in between) is completed again.
      if (!this.redelivering) {
        this.redelivering = true;
        try {
          const claims = await this.service.recoverStalledClaims(STALLED_STEP_MS);
          const reports = await this.service.redeliverReports(STALLED_STEP_MS);
          if (claims || reports) this.log.info({ claims, reports }, 'delivered claims and agent reports again that may not have reached their workflows');
        } finally {
          this.redelivering = false;
        }
      }
    } catch (err) {
      this.log.warn({ err }, 'gateway sweep failed');
    }
  }
}
