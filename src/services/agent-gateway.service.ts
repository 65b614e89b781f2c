// What agents do, as the domain sees it: authenticate, say hello, take work, report progress, send
// logs, finish. Every report is checked against what the database says the agent holds; a report
// about a job the agent does not hold changes nothing and is answered with an error.
import { randomUUID } from 'node:crypto';
import { context, SpanStatusCode } from '@opentelemetry/api';
import type { Database } from '../db/client.js';
import * as agentsRepo from '../db/agents.repository.js';
import * as changesRepo from '../db/changes.repository.js';
import { claimNextJob } from '../db/dispatch.repository.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as logsRepo from '../db/logs.repository.js';
import * as reposRepo from '../db/repositories.repository.js';
import { isTerminalStatus, type JobRow, type LogStream, type ReportedOutcome, type StopRequest } from '../db/schema/index.js';
import { ConflictError, InvalidArgumentError, NotFoundError, PermissionDeniedError, UnauthenticatedError } from '../errors.js';
import { InvalidChangeError, normaliseChange, type ReportedChange } from '../domain/change.js';
import type { JobOutcome, JobTimeouts, JobTraceContext } from '../domain/job.js';
import type { Metrics } from '../observability/metrics.js';
import { jobTraceParent, traceContextOf, tracer } from '../observability/tracing.js';
import { hashAgentSecret } from './agent-tokens.service.js';
import type { CompletionResult, JobStepCompletions } from './workflow-ports.js';

export interface AgentCredentials {
  tokenId: string;
  orgId: string;
}

export interface AgentHello {
  agentId: string;
  name: string;
  version: string;
  labels: string[];
  capacity: number;
  runningJobs: { jobId: string; attempt: number }[];
}

/** One connected agent, as the gateway's session knows it. */
export interface AgentSessionRef extends AgentCredentials {
  agentId: string;
  sessionId: string;
  labels: readonly string[];
  capacity: number;
}

export interface Assignment {
  jobId: string;
  attempt: number;
  prompt: string;
  labels: string[];
  queueType: JobRow['queueType'];
  revisesJobId: string | null;
  repository: { id: string; name: string; cloneUrl: string; defaultBranch: string };
  timeouts: JobTimeouts;
  /** For a rework job, the parent's change it continues (agent.proto, RevisedChange). */
  revises: { branch: string; headCommit: string; summary: string } | null;
  /** The assignment's span in the job's trace, for the agent's run to continue (null when not tracing). */
  trace: JobTraceContext | null;
}

export interface Reconciliation {
  /**
   * Jobs the agent keeps, with the last log line (in the attempt's numbering) already stored, and
   * the stop it was asked for while away, if any.
   */
  keep: { jobId: string; attempt: number; ackedSeq: number; stop: StopRequest | null }[];
  /** Jobs the agent still runs but no longer holds: it must stop them. */
  cancel: string[];
}

export interface LogBatchInput {
  jobId: string;
  attempt: number;
  firstSeq: number;
  lines: { at: Date; stream: LogStream; text: string }[];
}

/** What a gateway tells the agents it welcomes (recorded with each agent: the lease rule counts with them). */
export interface GatewayTerms {
  replica: string;
  leaseMs: number;
  leaseMarginMs: number;
}

/** A run, as the agent names it. */
export interface RunRef {
  jobId: string;
  attempt: number;
}

/** What the agent's Heartbeat says, with what its stream knows. */
export interface HeartbeatReport {
  /** The runs the agent lists. */
  runs: RunRef[];
  /** Runs the agent accepted (or kept at Hello) on this stream: it must list each until it ends. */
  owed: RunRef[];
}

/** What the gateway does about a heartbeat, once it is recorded. */
export interface HeartbeatVerdict {
  /** False: the session is no longer the agent's current one (a newer stream took over). */
  current: boolean;
  /** Listed runs that are no longer the agent's: it must drop them. */
  drop: (RunRef & { reason: string })[];
  /** Runs the agent must stop that it may not have been told about (or a cancel it missed). */
  stop: (RunRef & StopRequest)[];
  /** Owed runs the agent no longer lists: given back to the queue as lost. */
  lost: RunRef[];
  /** The execute-step task tokens of the runs the agent holds, to heartbeat on Temporal. */
  executeTokens: string[];
}

export interface FinishedInput {
  jobId: string;
  attempt: number;
  outcome: JobOutcome;
  /** The run's last log line (its number of lines): the outcome is recorded once all are stored. */
  lastSeq: number;
  /** What a successful run changed (and the size of its patch, stored before the outcome is). */
  change: ReportedChange | undefined;
}

/** PatchChunks of one run that follow one another: `pieces` are the chunks' bytes, from `offset`. */
export interface PatchChunksInput {
  jobId: string;
  attempt: number;
  offset: number;
  pieces: readonly Uint8Array[];
}

/** A PatchChunk that starts past what is stored, or a JobFinished that came before its whole patch. */
export class PatchGapError extends ConflictError {
  constructor(
    readonly jobId: string,
    readonly attempt: number,
    readonly storedBytes: number,
    detail: string,
  ) {
    super(detail);
  }
}

/** A JobFinished whose lines are not all stored yet: the outcome waits for them. */
export class LogIncompleteError extends ConflictError {
  constructor(
    readonly jobId: string,
    readonly ackedSeq: number,
    lastSeq: number,
  ) {
    super(`JobFinished for job ${jobId} says its last line is ${lastSeq} but only lines up to ${ackedSeq} are stored; resend from ${ackedSeq + 1}: the outcome is recorded once they are`);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const MAX_AGENT_CAPACITY = 256;
const MAX_LABELS = 32;

export class LogSequenceGapError extends ConflictError {
  constructor(
    readonly jobId: string,
    readonly ackedSeq: number,
    firstSeq: number,
  ) {
    super(`Log batch for job ${jobId} starts at ${firstSeq} but only lines up to ${ackedSeq} are stored; resend from ${ackedSeq + 1}`);
  }
}

/** How often one job's stalled claim or report is delivered again, at most. */
const REDELIVERY_INTERVAL_MS = 30_000;

/** How a workflow step completion is retried in the background while Temporal is away. */
const COMPLETION_RETRY_MS = [500, 1000, 2000, 5000, 10_000, 20_000, 30_000];

export class AgentGatewayService {
  /** Temporal heartbeats under way, by task token: one at a time each, so an outage piles none up. */
  private readonly pulsing = new Set<string>();
  /**
   * When this process last delivered a stalled claim or report again, by job: each is retried at
   * most every REDELIVERY_INTERVAL_MS, so a slow workflow (its worker down, say) is not flooded with
   * signals that each cost it a workflow task.
   */
  private readonly redelivered = new Map<string, number>();

  constructor(private readonly deps: { db: Database; completions: JobStepCompletions; log: (msg: string, err?: unknown) => void; maxPatchBytes: number; metrics: Metrics }) {}

  /** The largest patch this server stores (Welcome.max_patch_bytes). */
  get maxPatchBytes(): number {
    return this.deps.maxPatchBytes;
  }

  async authenticate(secret: string | undefined): Promise<AgentCredentials> {
    if (!secret) throw new UnauthenticatedError('Missing agent token (metadata "authorization: Bearer <token>")');
    const token = await agentsRepo.findLiveTokenByHash(this.deps.db, hashAgentSecret(secret));
    if (!token) throw new UnauthenticatedError('The agent token is unknown or revoked');
    await agentsRepo.touchAgentToken(this.deps.db, token.id);
    return { tokenId: token.id, orgId: token.orgId };
  }

  /** The token ids among these that have been revoked. */
  async revokedTokens(tokenIds: string[]): Promise<string[]> {
    return tokenIds.length ? agentsRepo.revokedTokenIds(this.deps.db, tokenIds) : [];
  }

  validateHello(hello: AgentHello): void {
    const problems: { pointer: string; message: string }[] = [];
    if (!UUID.test(hello.agentId)) problems.push({ pointer: '/hello/agent_id', message: 'must be a uuid the agent keeps across restarts' });
    if (!hello.name.trim()) problems.push({ pointer: '/hello/name', message: 'must not be empty' });
    // 0 is an agent that is shutting down: it reports on what it holds but takes nothing new.
    if (hello.capacity < 0 || hello.capacity > MAX_AGENT_CAPACITY) problems.push({ pointer: '/hello/capacity', message: `must be between 0 and ${MAX_AGENT_CAPACITY}` });
    if (hello.labels.length > MAX_LABELS || hello.labels.some((l) => !/^[a-z0-9][a-z0-9._:/-]{0,63}$/.test(l))) {
      problems.push({ pointer: '/hello/labels', message: `at most ${MAX_LABELS} labels of lowercase letters, digits and ._:/-` });
    }
    if (hello.runningJobs.some((j) => !UUID.test(j.jobId))) problems.push({ pointer: '/hello/running_jobs', message: 'job ids must be uuids' });
    if (problems.length) throw new InvalidArgumentError(`Invalid Hello: ${problems.map((p) => `${p.pointer} ${p.message}`).join('; ')}`, problems);
  }

  /**
   * Registers the agent on this replica and reconciles what it says it runs with what it holds:
   * it keeps what is still its own, is told to stop the rest, and jobs it held but no longer
   * mentions (it restarted and lost them) go back to the queue at once.
   */
  async connect(credentials: AgentCredentials, hello: AgentHello, gateway: GatewayTerms): Promise<{ session: AgentSessionRef; reconciliation: Reconciliation }> {
    this.validateHello(hello);
    const sessionId = randomUUID();
    const registered = await agentsRepo.upsertConnectedAgent(this.deps.db, {
      id: hello.agentId,
      orgId: credentials.orgId,
      tokenId: credentials.tokenId,
      name: hello.name.trim().slice(0, 200),
      version: hello.version.slice(0, 100) || null,
      labels: [...new Set(hello.labels)],
      capacity: hello.capacity,
      replica: gateway.replica,
      sessionId,
      leaseMs: gateway.leaseMs,
      leaseMarginMs: gateway.leaseMarginMs,
    });
    if (!registered) throw new PermissionDeniedError(`Agent id ${hello.agentId} belongs to another organisation`);
    const session: AgentSessionRef = { ...credentials, agentId: hello.agentId, sessionId, labels: registered.labels, capacity: registered.capacity };

    const held = await agentsRepo.listHeldJobRows(this.deps.db, hello.agentId);
    const claimed = new Map(hello.runningJobs.map((j) => [j.jobId, j.attempt]));
    const reconciliation: Reconciliation = { keep: [], cancel: [] };
    for (const job of held) {
      if (claimed.get(job.id) === job.attempt) {
        const stored = await logsRepo.lastSeq(this.deps.db, job.id);
        const stop = job.stopRequest?.attempt === job.attempt ? job.stopRequest : null;
        reconciliation.keep.push({ jobId: job.id, attempt: job.attempt, ackedSeq: Math.max(0, stored - job.logSeqBase), stop });
      } else {
        // Counted even if it never started: an agent that keeps crashing while it prepares a job
        // (a clone that kills it, say) must not retry it forever.
        await this.report(session, job.id, job.attempt, { kind: 'agent_lost', reason: 'the agent reconnected without this job (it restarted or lost it)' });
      }
    }
    const keptIds = new Set(reconciliation.keep.map((k) => k.jobId));
    reconciliation.cancel = [...claimed.keys()].filter((jobId) => !keptIds.has(jobId));
    return { session, reconciliation };
  }

  /**
   * Completes again the claim steps of jobs whose claim never reached their workflow (the claiming
   * process died in between, or Temporal was away), so no job sits assigned while its workflow
   * still waits for an agent. Returns how many claims this delivered (a claim the workflow already
   * had is refused by Temporal, and not counted).
   */
  async recoverStalledClaims(olderThanMs: number): Promise<number> {
    const stalled = this.due(await jobsRepo.listStalledClaims(this.deps.db, olderThanMs, 100));
    const results = await Promise.all(
      stalled.map(async (job) => {
        if (!job.agentId) return 'gone';
        const claim = { agentId: job.agentId, attempt: job.attempt };
        // Without a token the claim step's activity never recorded one: the workflow takes the claim by signal.
        // The signal's span (when tracing) belongs to the job's trace, not to a trace of the sweep's own.
        const deliver = job.claimTaskToken
          ? this.deps.completions.completeClaim(job.claimTaskToken, claim)
          : context.with(jobTraceParent(job.traceContext), () => this.deps.completions.signalClaim(job.id, claim));
        return deliver.catch((err: unknown): 'gone' => {
          this.deps.log(`could not complete the stalled claim of job ${job.id}; will retry`, err);
          return 'gone';
        });
      }),
    );
    return results.filter((result) => result === 'done').length;
  }

  /**
   * Hands the workflow again the agents' reports it never received (recorded on the job, but the
   * process that recorded them died before telling Temporal), so a finished job does not wait for
   * its heartbeat timeout to be noticed. Returns how many this delivered.
   */
  async redeliverReports(olderThanMs: number): Promise<number> {
    const undelivered = this.due(await jobsRepo.listUndeliveredReports(this.deps.db, olderThanMs, 100));
    const results = await Promise.all(
      undelivered.map(async (job): Promise<CompletionResult> => {
        const token = job.executeTaskToken;
        const outcome = job.reportedOutcome;
        if (!token || !outcome) return 'gone';
        const deliver = outcome.kind === 'agent_lost' || outcome.kind === 'rejected' ? this.deps.completions.failExecution(token, outcome) : this.deps.completions.completeExecution(token, outcome);
        return deliver.catch((err: unknown): 'gone' => {
          this.deps.log(`could not deliver the report of job ${job.id}; will retry`, err);
          return 'gone';
        });
      }),
    );
    return results.filter((result) => result === 'done').length;
  }

  /** The jobs not delivered again within the last REDELIVERY_INTERVAL_MS, now marked as delivered. */
  private due<T extends { id: string }>(jobs: T[]): T[] {
    const now = Date.now();
    for (const [jobId, at] of this.redelivered) if (now - at >= REDELIVERY_INTERVAL_MS) this.redelivered.delete(jobId);
    const due = jobs.filter((job) => !this.redelivered.has(job.id));
    for (const job of due) this.redelivered.set(job.id, now);
    return due;
  }

  /** A gateway starts: every agent's silence counts from now at the earliest (see the lease rule). */
  async gatewayStarted(replica: string): Promise<void> {
    await agentsRepo.recordGatewayStart(this.deps.db, replica);
  }

  async disconnect(session: AgentSessionRef): Promise<void> {
    await agentsRepo.markAgentDisconnected(this.deps.db, session.agentId, session.sessionId);
  }

  /**
   * Claims the next job for the agent and completes the workflow's claim step. Returns undefined
   * when nothing fits; a claim whose workflow has moved on (cancelled, timed out in the same
   * instant) is skipped, since that workflow ends the job itself.
   */
  async claimNext(session: AgentSessionRef, exclude: readonly string[] = []): Promise<Assignment | undefined> {
    for (;;) {
      const job = await claimNextJob(this.deps.db, session, exclude);
      if (!job) return undefined;
      this.deps.metrics.jobAssigned(job.queueType, job.createdAt, job.assignedAt, job.attempt);
      // In the job's trace; the agent's run continues from this span (JobAssignment.traceparent).
      const span = tracer().startSpan(
        'assign job',
        { attributes: { 'job.id': job.id, 'job.attempt': job.attempt, 'agent.id': session.agentId, 'agent.session': session.sessionId } },
        jobTraceParent(job.traceContext),
      );
      try {
        // Without a token the claim step has not started waiting yet; it will find the job assigned.
        if (job.claimTaskToken) {
          const result = await this.deps.completions.completeClaim(job.claimTaskToken, { agentId: session.agentId, attempt: job.attempt });
          if (result === 'gone') {
            span.setAttribute('job.assign.skipped', 'the workflow had moved on');
            continue;
          }
        }
        const repo = await reposRepo.findRepositoryIncludingDeleted(this.deps.db, job.repoId);
        if (!repo) throw new NotFoundError(`Repository ${job.repoId}`);
        return {
          revises: job.parentJobId ? await this.revisedChange(job.parentJobId) : null,
          jobId: job.id,
          attempt: job.attempt,
          prompt: job.prompt,
          labels: job.labels,
          queueType: job.queueType,
          revisesJobId: job.parentJobId,
          repository: { id: repo.id, name: repo.name, cloneUrl: repo.cloneUrl, defaultBranch: repo.defaultBranch },
          timeouts: job.timeouts,
          trace: traceContextOf(span),
        };
      } catch (err) {
        span.recordException(err instanceof Error ? err : String(err));
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw err;
      } finally {
        span.end();
      }
    }
  }

  /** The change a rework job continues: the one its parent succeeded with (checked when it was submitted). */
  private async revisedChange(parentJobId: string): Promise<Assignment['revises']> {
    const parent = await jobsRepo.findJobById(this.deps.db, parentJobId);
    const change = parent?.status === 'succeeded' ? await changesRepo.findChange(this.deps.db, parent.id, parent.attempt) : undefined;
    if (!change) return null;
    return { branch: change.branch ?? '', headCommit: change.headCommit, summary: change.summary ?? '' };
  }

  /**
   * The job is running. Only stored: the workflow reads it when its start deadline fires, so a
   * report costs no workflow task (see job.workflow.ts).
   */
  async started(session: AgentSessionRef, jobId: string, attempt: number, startedAt: Date): Promise<void> {
    const moved = UUID.test(jobId)
      ? await jobsRepo.transition(this.deps.db, jobId, ['assigned'], 'running', { startedAt }, { type: 'started' }, jobsRepo.heldBy({ ...session, attempt }))
      : undefined;
    if (moved) return;
    const job = await this.heldJob(this.deps.db, session, jobId, attempt);
    if (job.status !== 'running') throw new ConflictError(`Job ${jobId} is ${job.status}; it cannot start`);
    // Running already: a repeat (the agent resent it after a reconnect).
  }

  /**
   * Records that the agent was heard (what its lease counts from: see agent.proto) and reconciles
   * what it lists with what it holds. The gateway acknowledges the heartbeat only after this, so a
   * lease the agent counts as renewed is one the database has recorded.
   */
  async heartbeat(session: AgentSessionRef, report: HeartbeatReport): Promise<HeartbeatVerdict> {
    const verdict: HeartbeatVerdict = { current: true, drop: [], stop: [], lost: [], executeTokens: [] };
    if (!(await agentsRepo.recordAgentHeard(this.deps.db, session.agentId, session.sessionId))) return { ...verdict, current: false };
    const held = await agentsRepo.listHeldJobRows(this.deps.db, session.agentId);
    const listed = new Map(report.runs.map((run) => [run.jobId, run.attempt]));
    const owed = new Map(report.owed.map((run) => [run.jobId, run.attempt]));
    for (const job of held) {
      if (listed.get(job.id) === job.attempt) {
        if (job.stopRequest?.attempt === job.attempt) verdict.stop.push({ jobId: job.id, ...job.stopRequest });
        if (job.executeTaskToken) verdict.executeTokens.push(job.executeTaskToken);
      } else if (owed.get(job.id) === job.attempt && !job.reportedOutcome) {
        // Accepted on this stream, so listed by every heartbeat sent after: the agent lost it.
        await this.report(session, job.id, job.attempt, { kind: 'agent_lost', reason: 'the agent no longer lists this run in its heartbeats' });
        verdict.lost.push({ jobId: job.id, attempt: job.attempt });
      }
    }
    const heldIds = new Set(held.map((job) => `${job.id}:${job.attempt}`));
    const others = report.runs.filter((run) => !heldIds.has(`${run.jobId}:${run.attempt}`));
    if (others.length) {
      const holders = new Map((await agentsRepo.liveHolders(this.deps.db, others.map((r) => r.jobId).filter((id) => UUID.test(id)))).map((h) => [h.id, h]));
      for (const run of others) {
        const holder = holders.get(run.jobId);
        // A run of its own that it reported ended (its JobFinishedAck may be on its way) is still its
        // to hold; one whose job ended without its report (timed out, cancelled) must stop.
        if (holder && holder.agentId === session.agentId && holder.attempt === run.attempt && isTerminalStatus(holder.status) && holder.reported) continue;
        verdict.drop.push({ ...run, reason: holder ? 'the job is no longer this run\'s: it went back to the queue or to another agent' : 'no such job' });
      }
    }
    return verdict;
  }

  /**
   * Records the agent's heartbeat on each execute step it holds, so Temporal's heartbeat timeout
   * does not fire while the agent is heard. Never awaited by the stream: a Temporal outage must not
   * hold up the agent's logs or acks. When these are lost, the workflow asks the database instead.
   */
  pulse(executeTokens: readonly string[]): void {
    for (const token of executeTokens) {
      if (this.pulsing.has(token)) continue;
      this.pulsing.add(token);
      this.deps.completions
        .heartbeatExecution(token)
        .catch((err: unknown) => this.deps.log('could not record an agent heartbeat on Temporal; the workflow will check the database', err))
        .finally(() => this.pulsing.delete(token));
    }
  }

  /** Stores a batch idempotently and returns the attempt's last stored line number (the ack). */
  async storeLogs(session: AgentSessionRef, batch: LogBatchInput): Promise<number> {
    if (batch.firstSeq < 1) throw new InvalidArgumentError('Log lines are numbered from 1', [{ pointer: '/log_batch/first_seq', message: 'must be at least 1' }]);
    if (batch.lines.length === 0) throw new InvalidArgumentError('A log batch carries at least one line', [{ pointer: '/log_batch/lines', message: 'must not be empty' }]);
    // Both reads at once, one round trip's wait per batch rather than two (the batch's insert waits
    // on them anyway). A job the agent does not hold has its last seq read for nothing, never used.
    const [job, last] = await Promise.all([
      this.heldJob(this.deps.db, session, batch.jobId, batch.attempt, { allowFinished: true }),
      UUID.test(batch.jobId) ? logsRepo.lastSeq(this.deps.db, batch.jobId) : 0,
    ]);
    // A run given up (by the agent, or by its heartbeats no longer listing it) is the queue's again.
    if (job.reportedOutcome?.kind === 'agent_lost' || job.reportedOutcome?.kind === 'rejected') {
      throw new NotFoundError(`Job ${batch.jobId} attempt ${batch.attempt} was given back; it is no longer this agent's`);
    }
    const stored = Math.max(0, last - job.logSeqBase);
    const lastInBatch = batch.firstSeq + batch.lines.length - 1;
    // The outcome is recorded only once every line up to the run's last_seq is stored, so any line
    // past what is stored comes after the run's end.
    if (lastInBatch > stored && (isTerminalStatus(job.status) || isOutcome(job.reportedOutcome))) {
      throw new ConflictError(`Job ${batch.jobId} attempt ${batch.attempt} has finished: no log lines after its last_seq (${stored})`);
    }
    if (batch.firstSeq > stored + 1) throw new LogSequenceGapError(job.id, stored, batch.firstSeq);
    // Lines up to `stored` are a resend: only the rest is new.
    const skip = Math.max(0, stored - batch.firstSeq + 1);
    const fresh = batch.lines.slice(skip).map((line, i) => ({ seq: job.logSeqBase + batch.firstSeq + skip + i, at: line.at, stream: line.stream, text: storable(line.text) }));
    // Fenced: the job may have gone back to the queue since it was read, and then this run may add nothing.
    if (!(await logsRepo.insertLines(this.deps.db, job.id, batch.attempt, fresh, { agentId: session.agentId }))) {
      throw new NotFoundError(`Job ${batch.jobId} attempt ${batch.attempt} held by this agent`);
    }
    let units = 0;
    for (const line of fresh) units += line.text.length;
    this.deps.metrics.logStored(fresh.length, units);
    return Math.max(stored, batch.firstSeq + batch.lines.length - 1);
  }

  /**
   * Stores chunks of a run's patch idempotently by offset and returns the bytes stored from 0 (the
   * ack). Like log lines, nothing is stored once the run's outcome is, or past the server's limit.
   */
  async storePatch(session: AgentSessionRef, chunks: PatchChunksInput): Promise<number> {
    let length = 0;
    for (const piece of chunks.pieces) {
      if (piece.byteLength === 0) throw new InvalidArgumentError('A patch chunk carries at least one byte', [{ pointer: '/patch_chunk/data', message: 'must not be empty' }]);
      length += piece.byteLength;
    }
    const end = chunks.offset + length;
    if (end > this.deps.maxPatchBytes) {
      throw new InvalidArgumentError(`A patch chunk reaching byte ${end} is past the largest patch this server stores (${this.deps.maxPatchBytes} bytes, Welcome.max_patch_bytes)`, [
        { pointer: '/patch_chunk/offset', message: `must end at most at ${this.deps.maxPatchBytes}` },
      ]);
    }
    // One statement reads the job and the stored bytes and stores what the rules below allow.
    const held = UUID.test(chunks.jobId) ? await changesRepo.storePatchChunks(this.deps.db, { jobId: chunks.jobId, attempt: chunks.attempt, orgId: session.orgId, agentId: session.agentId }, chunks.offset, chunks.pieces) : undefined;
    const job = held?.job;
    // Another organisation's job, or one held by another agent, is as unknown as a missing one.
    if (!held || !job || job.orgId !== session.orgId || job.agentId !== session.agentId || job.attempt !== chunks.attempt) {
      throw new NotFoundError(`Job ${chunks.jobId} attempt ${chunks.attempt} held by this agent`);
    }
    if (job.reportedKind === 'agent_lost' || job.reportedKind === 'rejected') {
      throw new NotFoundError(`Job ${chunks.jobId} attempt ${chunks.attempt} was given back; it is no longer this agent's`);
    }
    const stored = held.storedBefore;
    if (end > stored && (isTerminalStatus(job.status) || job.reportedKind !== null)) {
      throw new ConflictError(`Job ${chunks.jobId} attempt ${chunks.attempt} has finished: its patch is recorded (${stored} bytes)`);
    }
    if (chunks.offset > stored) {
      throw new PatchGapError(chunks.jobId, chunks.attempt, stored, `Patch chunk for job ${chunks.jobId} starts at byte ${chunks.offset} but only ${stored} bytes are stored; resend from ${stored}`);
    }
    if (end <= stored) return stored; // a resend of what is stored
    if (!held.stored) throw new Error(`the chunks of job ${chunks.jobId} attempt ${chunks.attempt} were neither stored nor refused`);
    this.deps.metrics.patchStored(end - stored);
    return end;
  }

  /**
   * The agent's outcome goes to the workflow, once the run's log and patch are stored, with its
   * change recorded first. Before executeJob has recorded its token the outcome is kept on the row
   * and executeJob returns it when it starts. Reporting again (after a reconnect that lost the
   * acknowledgement) is harmless.
   */
  async finished(session: AgentSessionRef, input: FinishedInput): Promise<void> {
    const change = input.outcome.kind === 'succeeded' ? input.change : undefined;
    if (input.lastSeq > 0 || change) {
      const [job, last] = await Promise.all([
        this.heldJob(this.deps.db, session, input.jobId, input.attempt, { allowFinished: true }),
        UUID.test(input.jobId) ? logsRepo.lastSeq(this.deps.db, input.jobId) : 0,
      ]);
      // Once the outcome is recorded this is a repeat, answered as the first one was.
      if (isTerminalStatus(job.status) || isOutcome(job.reportedOutcome)) return this.report(session, input.jobId, input.attempt, input.outcome);
      const stored = Math.max(0, last - job.logSeqBase);
      if (stored < input.lastSeq) throw new LogIncompleteError(job.id, stored, input.lastSeq);
      if (change) return this.report(session, input.jobId, input.attempt, await this.recordChange(job.id, input.attempt, input.outcome, change));
    }
    await this.report(session, input.jobId, input.attempt, input.outcome);
  }

  /**
   * Records a successful run's change, once its patch is stored in full, and returns the outcome to
   * report: the success, or a failure when the change is one no reader could use.
   */
  private async recordChange(jobId: string, attempt: number, success: JobOutcome, change: ReportedChange): Promise<JobOutcome> {
    let stored;
    try {
      stored = normaliseChange(change, this.deps.maxPatchBytes);
    } catch (err) {
      if (!(err instanceof InvalidChangeError)) throw err;
      return { kind: 'failed', exitCode: 0, reason: `the agent reported a change the server cannot take: ${err.message}` };
    }
    if (stored.patchStored) {
      const bytes = await changesRepo.storedPatchBytes(this.deps.db, jobId, attempt);
      if (bytes < stored.patchSize) {
        throw new PatchGapError(jobId, attempt, bytes, `JobFinished for job ${jobId} reports a patch of ${stored.patchSize} bytes but only ${bytes} are stored; resend from ${bytes}: the outcome is recorded once they are`);
      }
    }
    await changesRepo.insertChange(this.deps.db, { jobId, attempt, ...stored });
    return success;
  }

  /**
   * The agent gives the job back and it is requeued. Declined before it started, the attempt does
   * not count; given back after it started (the agent is shutting down), it counts as lost.
   */
  async rejected(session: AgentSessionRef, jobId: string, attempt: number, reason: string): Promise<void> {
    const job = await this.heldJob(this.deps.db, session, jobId, attempt, { allowFinished: true });
    const because = `given back by the agent: ${reason || 'no reason given'}`;
    await this.report(session, jobId, attempt, job.status === 'running' ? { kind: 'agent_lost', reason: because } : { kind: 'rejected', reason: because });
  }

  /**
   * Records the agent's report of an attempt in the database (fenced by the attempt: a stale run
   * changes nothing), then moves the workflow's execute step on. The record is what counts: the
   * completion goes to Temporal in the background, retried while Temporal is away, so a report never
   * waits on Temporal; should it never arrive, the execute step finds the record when the workflow
   * next asks (its heartbeat timeout, then the database's view of the lease).
   */
  private async report(session: AgentSessionRef, jobId: string, attempt: number, outcome: ReportedOutcome): Promise<void> {
    const recorded = UUID.test(jobId) ? await jobsRepo.recordOutcome(this.deps.db, jobId, { ...session, attempt }, outcome) : undefined;
    if (!recorded) {
      // Not the agent's (an error), or reported or ended already (a repeat, harmless).
      await this.heldJob(this.deps.db, session, jobId, attempt, { allowFinished: true });
      return;
    }
    const token = recorded.executeTaskToken;
    if (!token) return;
    const complete =
      outcome.kind === 'agent_lost' || outcome.kind === 'rejected'
        ? () => this.deps.completions.failExecution(token, outcome)
        : () => this.deps.completions.completeExecution(token, outcome);
    void this.completeInBackground(jobId, complete);
  }

  private async completeInBackground(jobId: string, complete: () => Promise<CompletionResult>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await complete();
        return;
      } catch (err) {
        const delay = COMPLETION_RETRY_MS[attempt];
        if (delay === undefined) {
          this.deps.log(`could not tell the workflow of job ${jobId} about its agent's report; it will find the report itself`, err);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    }
  }

  private async heldJob(
    db: Parameters<typeof jobsRepo.findJobById>[0],
    session: AgentSessionRef,
    jobId: string,
    attempt: number,
    options: { allowFinished?: boolean } = {},
  ): Promise<JobRow> {
    const job = UUID.test(jobId) ? await jobsRepo.findJobById(db, jobId) : undefined;
    // Another organisation's job, or one held by another agent, is as unknown as a missing one.
    if (!job || job.orgId !== session.orgId || job.agentId !== session.agentId || job.attempt !== attempt) {
      throw new NotFoundError(`Job ${jobId} attempt ${attempt} held by this agent`);
    }
    if (!options.allowFinished && !['assigned', 'running'].includes(job.status)) throw new ConflictError(`Job ${jobId} already ended (${job.status})`);
    return job;
  }
}

/** A reported end of the run itself, as opposed to the agent giving the attempt up. */
function isOutcome(reported: ReportedOutcome | null): boolean {
  return reported !== null && reported.kind !== 'agent_lost' && reported.kind !== 'rejected';
}

/**
 * PostgreSQL text cannot hold U+0000: a NUL the command printed is stored as U+FFFD (agent.proto,
 * LogLine.text), rather than failing the batch on every resend.
 */
function storable(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text;
}
