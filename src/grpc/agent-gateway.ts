// The agent gateway of one replica: serves agent.v1 AgentService, keeps the sessions whose streams
// this replica holds, and reacts to what other replicas announce through PostgreSQL NOTIFY (a job
// queued, a cancel for one of our agents, a revoked token, an agent that reconnected elsewhere).
import { status, type Server } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { AgentServiceService, type AgentServiceServer } from '../../generated/proto/agent/v1/agent.js';
import type { AgentGatewayService } from '../services/agent-gateway.service.js';
import type { EventBus } from '../services/notifications.js';
import { AgentSession, type AgentStream, type SessionSettings } from './agent-session.js';

export interface AgentGatewayOptions extends SessionSettings {
  /** How often every session looks for work even without a notification (a lost NOTIFY costs at most this). */
  sweepIntervalMs: number;
}

export class AgentGateway {
  private readonly sessions = new Map<string, AgentSession>();
  private readonly pending = new Set<AgentSession>();
  /** Organisations whose agents the sweep is asking for work now. */
  private readonly draining = new Set<string>();
  /** Which agent of a group is asked first next time, so work spreads over them. */
  private turn = 0;
  private unsubscribe: (() => Promise<void>)[] = [];
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly service: AgentGatewayService,
    private readonly bus: EventBus,
    private readonly options: AgentGatewayOptions,
    private readonly log: Logger,
  ) {}

  register(server: Server): void {
    const implementation: AgentServiceServer = { connect: (call) => this.open(call) };
    server.addService(AgentServiceService, implementation);
  }

  async start(): Promise<void> {
    const { bus } = this;
    this.unsubscribe.push(
      await bus.subscribe('job_queued', ({ orgId, jobId }) => {
        this.offer(orgId, jobId).catch((err: unknown) => this.log.error({ err, orgId }, 'dispatch failed'));
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

  /** Tells every agent to reconnect elsewhere, then stops listening. */
  async stop(): Promise<void> {
    clearInterval(this.sweep);
    for (const session of [...this.sessions.values(), ...this.pending]) session.goAway('replica shutting down', 1000);
    await Promise.all(this.unsubscribe.map((u) => u().catch(() => {})));
    this.unsubscribe = [];
  }

  get connectedAgents(): number {
    return this.sessions.size;
  }

  private open(call: AgentStream): void {
    const session = new AgentSession(
      call,
      this.service,
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
      },
      this.log,
    );
    this.pending.add(session);
    void session.start();
  }

  /**
   * A job was announced: agents with room claim, one at a time and in turn so work spreads over
   * them, until one of them has claimed the announced job. A claim takes the first job in line,
   * which may be an older one (its own announcement is still being handled, or was lost): then the
   * next agent claims, so the announced job is not left for the sweep. One whose claim finds nothing
   * means agents with its labels would find nothing either (another replica took the job, or it
   * needs labels they lack), so the next label set is asked. Announcements are handled side by
   * side, so a burst of jobs is claimed in parallel. (Asking every agent of the organisation, as
   * each announcement once did, cost a claim transaction per idle agent per job.)
   */
  private async offer(orgId: string, jobId: string): Promise<void> {
    for (const group of this.agentsWithRoom(orgId)) {
      const inTurn = this.inTurn(group);
      // An agent claiming already is asked last: joining it only queues one more pass, and what it
      // claimed may be other jobs.
      for (const session of [...inTurn.filter((s) => !s.pumpingNow), ...inTurn.filter((s) => s.pumpingNow)]) {
        const pass = await session.pump();
        if (pass.claimed.includes(jobId)) return;
        if (pass.result === 'empty') break;
        // Full by now, or it claimed other jobs: the next agent of the group is asked.
      }
    }
  }

  /**
   * The sweep's search for work no announcement brought (one was lost): per label set, agents with
   * room claim one after another until a claim finds nothing. With nothing queued that is one claim
   * per label set, not one per agent. One search per organisation at a time.
   */
  private async drain(orgId: string): Promise<void> {
    if (this.draining.has(orgId)) return;
    this.draining.add(orgId);
    try {
      for (const group of this.agentsWithRoom(orgId)) {
        for (const session of this.inTurn(group)) if ((await session.pump()).result === 'empty') break;
      }
    } finally {
      this.draining.delete(orgId);
    }
  }

  /** The group starting at the next agent in turn, so work spreads over them. */
  private inTurn(group: AgentSession[]): AgentSession[] {
    const first = this.turn++ % group.length;
    return [...group.slice(first), ...group.slice(0, first)];
  }

  /** The organisation's agents that take work now, grouped by label set: a job fits an agent that has all its labels. */
  private agentsWithRoom(orgId: string): AgentSession[][] {
    const byLabels = new Map<string, AgentSession[]>();
    for (const session of this.sessions.values()) {
      if (session.ref?.orgId !== orgId || !session.hasRoom) continue;
      const key = [...session.ref.labels].sort().join('\n');
      const group = byLabels.get(key);
      if (group) group.push(session);
      else byLabels.set(key, [session]);
    }
    return [...byLabels.values()];
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
      for (const orgId of new Set([...this.sessions.values()].map((s) => s.ref?.orgId))) {
        if (orgId) this.drain(orgId).catch((err: unknown) => this.log.error({ err, orgId }, 'dispatch failed'));
      }
    } catch (err) {
      this.log.warn({ err }, 'gateway sweep failed');
    }
  }
}
