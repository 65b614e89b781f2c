// Who gets which job: the dispatch rules and every connected agent's slots, with no transport in
// them. The gateway (src/grpc) carries messages; it opens an AgentSlots for each welcomed agent and
// tells it what the agent says, and the dispatcher decides when to claim work and for whom. The
// claim itself (one statement, dispatch order kept) is the gateway service's claimNext.
import type { AgentSessionRef, Assignment, RunRef } from './agent-gateway.service.js';

/** How long a decline keeps its job from the agent when no requeue announcement comes to lift it. */
const DECLINE_LAPSES_MS = 60_000;

/** What the dispatcher needs of an agent's connection: a way to hand it an assignment. */
export interface AssignmentSink {
  deliver(assignment: Assignment): void;
}

/** Claims the next job that fits the agent, other than the ones named. */
export type ClaimNext = (agent: AgentSessionRef, exclude: readonly string[]) => Promise<Assignment | undefined>;

/**
 * How a dispatch pass for one agent ended: it took work until it was full ('claimed'), it looked and
 * nothing queued fits it ('empty'), or it took nothing because it had no room or is gone ('full').
 */
export type PumpResult = 'claimed' | 'empty' | 'full';

/** One dispatch pass for an agent: how it ended, and the jobs it claimed. */
export interface PumpPass {
  result: PumpResult;
  claimed: string[];
}

/**
 * One connected agent's slots, counted as agent.proto counts them: the runs its last Heartbeat (or
 * Hello) listed plus the assignments sent since that it has not answered. Built from the agent's own
 * reports on its stream, so a new stream rebuilds it from the agent's Hello.
 */
export class AgentSlots {
  /** Job id → attempt of every run that takes a slot. */
  readonly running = new Map<string, number>();
  /** Assignments sent that the agent has not answered yet (JobAccepted or JobRejected). */
  private readonly unanswered = new Map<string, number>();
  /** Runs the agent accepted, or kept at Hello: every later Heartbeat must list them. */
  private readonly owed = new Map<string, number>();
  /**
   * Jobs the agent declined (job id → when): left out of its claims until the offer that follows
   * the job's requeue is over, so other agents get the job first and a decline never comes straight
   * back to the agent that made it. After that the job is like any queued job (the sweep may give it
   * back to this agent if no other took it).
   */
  private readonly declined = new Map<string, number>();
  private pumping: Promise<PumpPass> | undefined;
  private pumpAgain = false;
  private open = true;
  private draining = false;

  constructor(
    readonly agent: AgentSessionRef,
    private readonly sink: AssignmentSink,
    private readonly claimNext: ClaimNext,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Runs the agent still held when it said Hello. */
  kept(runs: readonly RunRef[]): void {
    for (const run of runs) {
      this.running.set(run.jobId, run.attempt);
      this.owed.set(run.jobId, run.attempt);
    }
  }

  /** The agent took an assignment: from now on its heartbeats must list the run. */
  accepted(run: RunRef): void {
    if (this.unanswered.get(run.jobId) !== run.attempt) return;
    this.unanswered.delete(run.jobId);
    this.owed.set(run.jobId, run.attempt);
  }

  /** The agent declined the run: it goes back to the queue, for other agents first. */
  declinedRun(run: RunRef): void {
    this.declined.set(run.jobId, Date.now());
    this.released(run);
  }

  /** The job's requeue has been offered to every agent: this one may take it again. */
  forgetDecline(jobId: string): void {
    this.declined.delete(jobId);
  }

  /** The run no longer takes a slot (the agent ended or declined it, or the server took it back). */
  released(run: RunRef): void {
    if (this.unanswered.get(run.jobId) === run.attempt) this.unanswered.delete(run.jobId);
    if (this.owed.get(run.jobId) === run.attempt) this.owed.delete(run.jobId);
    if (this.running.get(run.jobId) !== run.attempt) return;
    this.running.delete(run.jobId);
    void this.pump();
  }

  /** Whether the run was assigned on this stream and the agent has not yet said whether it takes it. */
  awaitsAnswer(run: RunRef): boolean {
    return this.unanswered.get(run.jobId) === run.attempt;
  }

  /** Whether the agent holds this run as far as its slots go. */
  holds(run: RunRef): boolean {
    return this.running.get(run.jobId) === run.attempt;
  }

  /** The runs the agent owes in every heartbeat. */
  get owedRuns(): RunRef[] {
    return [...this.owed].map(([jobId, attempt]) => ({ jobId, attempt }));
  }

  /** A heartbeat's list (less the runs the server told it to drop) is the truth about its slots. */
  reconcile(listed: readonly RunRef[]): void {
    // A decline whose requeue was never announced here (the notification was lost) lapses.
    for (const [jobId, at] of this.declined) if (Date.now() - at > DECLINE_LAPSES_MS) this.declined.delete(jobId);
    this.running.clear();
    for (const run of listed) this.running.set(run.jobId, run.attempt);
    for (const [jobId, attempt] of this.unanswered) this.running.set(jobId, attempt);
    void this.pump();
  }

  /** Takes no new work (GoAway sent); its runs still count. */
  drain(): void {
    this.draining = true;
  }

  close(): void {
    this.open = false;
  }

  /** A dispatch pass for this agent is under way. */
  get pumpingNow(): boolean {
    return this.pumping !== undefined;
  }

  /** Slots free for new jobs: none while closed or draining. */
  get freeSlots(): number {
    return this.open && !this.draining ? Math.max(0, this.agent.capacity - this.running.size) : 0;
  }

  /** The agent takes work now: open, not draining, below its capacity. */
  get hasRoom(): boolean {
    return this.open && !this.draining && this.running.size < this.agent.capacity;
  }

  /**
   * Claims work for this agent until it is full or nothing queued fits it; a request while a pass
   * runs folds into one more pass. Ends 'empty' when the last claim found nothing, which tells the
   * dispatcher that agents with the same labels would find nothing either. Never rejects.
   */
  pump(): Promise<PumpPass> {
    if (this.pumping) {
      this.pumpAgain = true;
      return this.pumping;
    }
    if (!this.hasRoom) return Promise.resolve({ result: 'full', claimed: [] });
    const claimed: string[] = [];
    this.pumping = (async (): Promise<PumpPass> => {
      let result: PumpResult = 'full';
      do {
        this.pumpAgain = false;
        while (this.hasRoom) {
          const excluded = [...this.declined.keys()];
          const assignment = await this.claimNext(this.agent, excluded);
          if (!assignment) {
            // Nothing for this agent; with jobs left out for it, agents like it may still find one.
            result = excluded.length ? 'full' : 'empty';
            break;
          }
          claimed.push(assignment.jobId);
          if (!this.open) break; // the workflow's start deadline takes the job back
          result = 'claimed';
          this.running.set(assignment.jobId, assignment.attempt);
          this.unanswered.set(assignment.jobId, assignment.attempt);
          this.sink.deliver(assignment);
        }
      } while (this.pumpAgain);
      return { result, claimed };
    })()
      .catch((err: unknown): PumpPass => {
        this.onError(err);
        return { result: 'full', claimed };
      })
      .finally(() => {
        this.pumping = undefined;
      });
    return this.pumping;
  }
}

/**
 * The dispatch rules over the agents connected to this replica: which agent is asked for an
 * announced job, in what turn, and how the sweep looks for work no announcement brought.
 */
export class Dispatcher {
  private readonly agents = new Map<string, AgentSlots>();
  /** Organisations whose agents the sweep is asking for work now. */
  private readonly sweeping = new Set<string>();
  /** Which agent of a group is asked first next time, so work spreads over them. */
  private turn = 0;

  constructor(
    private readonly claimNext: ClaimNext,
    private readonly onError: (err: unknown, context: { orgId?: string; agentId?: string }) => void,
  ) {}

  /** A welcomed agent: its slots, registered for dispatch (replacing an older stream's). */
  open(agent: AgentSessionRef, sink: AssignmentSink): AgentSlots {
    const slots = new AgentSlots(agent, sink, this.claimNext, (err) => this.onError(err, { agentId: agent.agentId }));
    this.agents.get(agent.agentId)?.close();
    this.agents.set(agent.agentId, slots);
    return slots;
  }

  close(slots: AgentSlots): void {
    slots.close();
    if (this.agents.get(slots.agent.agentId) === slots) this.agents.delete(slots.agent.agentId);
  }

  /** Organisations with agents here. */
  get organisations(): Set<string> {
    return new Set([...this.agents.values()].map((slots) => slots.agent.orgId));
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
  async offer(orgId: string, jobId: string): Promise<void> {
    try {
      await this.offerInTurn(orgId, jobId);
    } finally {
      for (const slots of this.agents.values()) slots.forgetDecline(jobId);
    }
  }

  private async offerInTurn(orgId: string, jobId: string): Promise<void> {
    for (const group of this.agentsWithRoom(orgId)) {
      const inTurn = this.inTurn(group);
      // An agent claiming already is asked last: joining it only queues one more pass, and what it
      // claimed may be other jobs.
      for (const slots of [...inTurn.filter((s) => !s.pumpingNow), ...inTurn.filter((s) => s.pumpingNow)]) {
        const pass = await slots.pump();
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
  async sweep(orgId: string): Promise<void> {
    if (this.sweeping.has(orgId)) return;
    this.sweeping.add(orgId);
    try {
      for (const group of this.agentsWithRoom(orgId)) {
        for (const slots of this.inTurn(group)) if ((await slots.pump()).result === 'empty') break;
      }
    } finally {
      this.sweeping.delete(orgId);
    }
  }

  /** The group starting at the next agent in turn, so work spreads over them. */
  private inTurn(group: AgentSlots[]): AgentSlots[] {
    const first = this.turn++ % group.length;
    return [...group.slice(first), ...group.slice(0, first)];
  }

  /** The organisation's agents that take work now, grouped by label set: a job fits an agent that has all its labels. */
  private agentsWithRoom(orgId: string): AgentSlots[][] {
    const byLabels = new Map<string, AgentSlots[]>();
    for (const slots of this.agents.values()) {
      if (slots.agent.orgId !== orgId || !slots.hasRoom) continue;
      const key = [...slots.agent.labels].sort().join('\n');
      const group = byLabels.get(key);
      if (group) group.push(slots);
      else byLabels.set(key, [slots]);
    }
    return [...byLabels.values()];
  }
}
