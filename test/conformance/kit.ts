// What every row uses: an organisation of its own (a repository, agent tokens, an admin's access
// token), agents under test started from the --agent command, jobs whose prompt is the script to
// run, and the evidence a row judges on. Evidence comes from outside the agent: the REST API (job
// status, events, change, stored log pages, patch, listAgents), the job command's own records of
// each run (test/faults/runs.ts's format: start, end, by pid and process group) and, for the change
// rows, the repository the agent pushed to, never the agent's output.
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { createAgentJobsClient, type AgentJobsClient, type JobDetail, type LogLine } from '../../generated/sdk/index.js';
import type { Tenant } from '../faults/client.js';
import { sleep } from '../faults/processes.js';
import { RunLedger, type Run } from '../faults/runs.js';
import { launchAgent, type AgentUnderTest } from './agent.js';
import { settings } from './settings.js';
import type { SystemUnderTest } from './system.js';

export interface Row {
  id: string;
  /** What the row does to the agent. */
  scenario: string;
  /** What a conforming agent shows. */
  expected: string;
  /** The row needs the deadline API (split roles on PostgreSQL). */
  needsDeadlines?: boolean;
  /** The row disturbs every other (it restarts a process they use): it runs alone, after the rest. */
  exclusive?: (sut: SystemUnderTest) => boolean;
  run(ctx: RowContext): Promise<void>;
}

export interface RowResult {
  id: string;
  scenario: string;
  expected: string;
  observed: string;
  pass: boolean;
  skipped: boolean;
  ms: number;
}

export interface Shared {
  sut: SystemUnderTest;
  agentCommand: string;
  ledger: RunLedger;
  /** The agent's --exec: runs the job's prompt as a bash script and records the run. */
  exec: string;
  cloneUrl: string;
  /** Marker the fixture repository's README.md holds. */
  readme: string;
  /** A git:// address that accepts and never answers: a clone that hangs. */
  hangingCloneUrl: string;
  scratch: string;
  log(line: string): void;
}

export const terminal: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

const REQUEST_TIMEOUT_MS = 10_000;
const timedFetch: typeof fetch = (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });

export interface Org extends Tenant {
  repoName: string;
  repoBranch: string;
  agentTokenId: string;
  /** The same organisation through the deadline API (jobs created there get short deadlines). */
  deadlineApi: AgentJobsClient | undefined;
}

export interface SubmitOptions {
  cancelGraceSeconds?: number;
  maxAttempts?: number;
  repoId?: string;
  /** Create through the deadline API. */
  shortDeadlines?: boolean;
  /** A `rework` job revising this one (the prompt is the feedback). */
  parentJobId?: string;
}

export class RowContext {
  readonly deadline: number;
  readonly observed: string[] = [];
  readonly failures: string[] = [];
  private readonly agents: AgentUnderTest[] = [];
  private readonly cleanups: (() => void | Promise<void>)[] = [];
  private agentCount = 0;

  constructor(
    readonly row: Row,
    readonly shared: Shared,
  ) {
    this.deadline = Date.now() + settings.rowDeadlineMs;
  }

  get sut(): SystemUnderTest {
    return this.shared.sut;
  }

  /** A fact for the observed column. */
  note(fact: string): void {
    this.observed.push(fact);
  }

  fail(why: string): void {
    this.failures.push(why);
  }

  /** Notes `fact`; fails with it when `ok` is false. */
  check(ok: boolean, fact: string): boolean {
    if (ok) this.note(fact);
    else this.fail(fact);
    return ok;
  }

  log(line: string): void {
    this.shared.log(`  [${this.row.id}] ${line}`);
  }

  onDispose(cleanup: () => void | Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  /** A file of the row's own in the scratch folder (for pids a job writes). */
  file(name: string): string {
    return path.join(this.shared.scratch, 'rows', this.row.id, name);
  }

  async org(): Promise<Org> {
    const orgId = randomUUID();
    const token = await this.sut.token({ userId: `conformance-${this.row.id}`, orgs: [{ orgId, role: 'Admin' }], expiresInSeconds: 3_600 });
    const api = createAgentJobsClient({ baseUrl: this.sut.apiUrl, token, fetch: timedFetch });
    const repoName = `conformance-${this.row.id}`;
    const repo = await api.POST('/v1/orgs/{orgId}/repositories', { params: { path: { orgId } }, body: { name: repoName, cloneUrl: this.shared.cloneUrl } });
    if (!repo.data) throw new Error(`creating a repository answered ${repo.response.status}: ${JSON.stringify(repo.error)}`);
    const agentToken = await this.agentToken({ api, orgId });
    const deadlineApi = this.sut.deadlineApiUrl ? createAgentJobsClient({ baseUrl: this.sut.deadlineApiUrl, token, fetch: timedFetch }) : undefined;
    return { baseUrl: this.sut.apiUrl, orgId, token, api, repoId: repo.data.id, repoName, repoBranch: repo.data.defaultBranch, agentSecret: agentToken.secret, agentTokenId: agentToken.id, deadlineApi };
  }

  async agentToken(org: { api: AgentJobsClient; orgId: string }): Promise<{ secret: string; id: string }> {
    const { data, response, error } = await org.api.POST('/v1/orgs/{orgId}/agent-tokens', { params: { path: { orgId: org.orgId } }, body: { name: `conformance-${this.row.id}` } });
    if (!data) throw new Error(`creating an agent token answered ${response.status}: ${JSON.stringify(error)}`);
    return { secret: data.secret, id: data.token.id };
  }

  async repository(org: Org, options: { cloneUrl?: string; defaultBranch?: string; name: string }): Promise<string> {
    const { data, response, error } = await org.api.POST('/v1/orgs/{orgId}/repositories', {
      params: { path: { orgId: org.orgId } },
      body: { name: options.name, cloneUrl: options.cloneUrl ?? this.shared.cloneUrl, ...(options.defaultBranch ? { defaultBranch: options.defaultBranch } : {}) },
    });
    if (!data) throw new Error(`creating a repository answered ${response.status}: ${JSON.stringify(error)}`);
    return data.id;
  }

  /**
   * Starts the agent under test for `org`. By default it waits until the server lists it as
   * connected; `waitConnected: false` only starts it (for agents expected to give up).
   */
  async agent(org: Org, options: { name?: string; token?: string | null; capacity?: number; gateway?: 'gateway' | 'gateway2'; stateDir?: string; waitConnected?: boolean; extraArgs?: string[] } = {}): Promise<AgentUnderTest> {
    const name = options.name ?? `${this.row.id}-${++this.agentCount}`;
    const agent = await launchAgent({
      command: this.shared.agentCommand,
      name,
      token: options.token === null ? undefined : (options.token ?? org.agentSecret),
      exec: this.shared.exec,
      gateways: [this.sut.gatewayAddress(options.gateway ?? 'gateway')],
      stateDir: options.stateDir ?? path.join(this.shared.scratch, 'agents', name),
      logFile: path.join(this.shared.scratch, 'agents', `${name}.log`),
      ...(options.capacity ? { capacity: options.capacity } : {}),
      ...(options.extraArgs ? { extraArgs: options.extraArgs } : {}),
      ...(options.waitConnected === false ? {} : { ready: this.connectedSince(org, name, Date.now()) }),
    });
    this.agents.push(agent);
    return agent;
  }

  /** Restarts a stopped agent with the same arguments and waits until the server has welcomed it again. */
  async restartAgent(org: Org, agent: AgentUnderTest): Promise<void> {
    const before = (await this.agentRecord(org, agent.name))?.connectedAt ?? null;
    agent.process.spec.ready = async () => {
      const now = await this.agentRecord(org, agent.name);
      return now?.state === 'connected' && now.connectedAt !== null && now.connectedAt !== before;
    };
    await agent.restart();
  }

  private connectedSince(org: Org, name: string, _since: number): () => Promise<boolean> {
    return async () => (await this.agentRecord(org, name))?.state === 'connected';
  }

  /** The server's record of the agent of this name (the newest, when names repeat). */
  async agentRecord(org: Org, name: string): Promise<{ id: string; state: string; connectedAt: string | null; replica: string | null; capacity: number } | undefined> {
    const { data } = await org.api.GET('/v1/orgs/{orgId}/agents', { params: { path: { orgId: org.orgId } } });
    return data?.items.filter((agent) => agent.name === name).sort((a, b) => (b.connectedAt ?? '').localeCompare(a.connectedAt ?? ''))[0];
  }

  async submit(org: Org, prompt: string, options: SubmitOptions = {}): Promise<string> {
    const api = options.shortDeadlines ? org.deadlineApi : org.api;
    if (!api) throw new Error('the deadline API is not running');
    const { data, error, response } = await api.POST('/v1/orgs/{orgId}/jobs', {
      params: { path: { orgId: org.orgId } },
      body: {
        prompt,
        repoId: options.repoId ?? org.repoId,
        ...(options.parentJobId ? { queueType: 'rework' as const, parentJobId: options.parentJobId } : { queueType: 'backlog' as const }),
        ...(options.cancelGraceSeconds ? { cancelGraceSeconds: options.cancelGraceSeconds } : {}),
        ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
      },
    });
    if (!data) throw new Error(`submitting a job answered ${response.status}: ${JSON.stringify(error)}`);
    return data.id;
  }

  async job(org: Org, jobId: string): Promise<JobDetail | undefined> {
    try {
      const { data } = await org.api.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: org.orgId, jobId } } });
      return data;
    } catch {
      return undefined;
    }
  }

  /** Polls the job until `done` holds; undefined (and a failure noted) at the row's deadline. */
  async until(org: Org, jobId: string, done: (job: JobDetail) => boolean, what: string, deadline = this.deadline): Promise<JobDetail | undefined> {
    let last: JobDetail | undefined;
    while (Date.now() < Math.min(deadline, this.deadline)) {
      last = (await this.job(org, jobId)) ?? last;
      if (last && done(last)) return last;
      await sleep(200);
    }
    this.fail(`timed out waiting for the job to be ${what} (last seen ${last ? `${last.status}, attempt ${last.attempt}` : 'nothing'})`);
    return undefined;
  }

  untilEnded(org: Org, jobId: string): Promise<JobDetail | undefined> {
    return this.until(org, jobId, (job) => terminal.has(job.status), 'ended');
  }

  /** Every stored line, read as users page it (`GET …/logs`, after = the last seq). */
  async storedLog(org: Org, jobId: string): Promise<LogLine[]> {
    const lines: LogLine[] = [];
    for (;;) {
      const { data, response } = await org.api.GET('/v1/orgs/{orgId}/jobs/{jobId}/logs', { params: { path: { orgId: org.orgId, jobId }, query: { after: lines.at(-1)?.seq ?? 0, limit: 5000 } } });
      if (!data) throw new Error(`reading the log answered ${response.status}`);
      if (data.items.length === 0) return lines;
      lines.push(...data.items);
    }
  }

  /** stdout lines, after checking the whole log's seqs run 1, 2, 3… (a failure otherwise). */
  async stdout(org: Org, jobId: string): Promise<string[]> {
    const log = await this.storedLog(org, jobId);
    const gaps = log.filter((line, index) => line.seq !== index + 1).length;
    if (gaps > 0) this.fail(`the stored log's seqs are not 1..${log.length} (${gaps} out of place)`);
    return log.filter((line) => line.stream === 'stdout').map((line) => line.text);
  }

  /** Polls until the stored log has a stdout line matching; false at the deadline. */
  async untilPrinted(org: Org, jobId: string, text: string, deadline = this.deadline): Promise<boolean> {
    while (Date.now() < Math.min(deadline, this.deadline)) {
      const log = await this.storedLog(org, jobId).catch(() => []);
      if (log.some((line) => line.stream === 'stdout' && line.text === text)) return true;
      await sleep(200);
    }
    this.fail(`the line "${text}" never reached the store`);
    return false;
  }

  runs(jobId: string): Run[] {
    return this.shared.ledger.runsOf(jobId);
  }

  /** Waits until the job's command has recorded a run (of `attempt`, if given). */
  async untilRun(jobId: string, attempt?: number): Promise<Run | undefined> {
    while (Date.now() < this.deadline) {
      const run = this.runs(jobId).find((r) => attempt === undefined || r.attempt === attempt);
      if (run) return run;
      await sleep(100);
    }
    this.fail(`the job's command never started${attempt ? ` as attempt ${attempt}` : ''}`);
    return undefined;
  }

  /** Waits until every pid is gone; returns those still alive at the deadline. */
  async untilGone(pids: number[], timeoutMs: number): Promise<number[]> {
    const until = Math.min(Date.now() + timeoutMs, this.deadline);
    for (;;) {
      const alive = pids.filter(processAlive);
      if (alive.length === 0 || Date.now() > until) return alive;
      await sleep(100);
    }
  }

  /** Waits for a file a job writes (pids), and returns its numbers. */
  async pids(file: string): Promise<number[]> {
    while (Date.now() < this.deadline) {
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : '';
      if (text && text.endsWith(';')) return text.slice(0, -1).split(/\s+/).map(Number);
      await sleep(100);
    }
    this.fail(`${path.basename(file)} was never written`);
    return [];
  }

  /** Evidence for the observed column about how a job ended. */
  describe(job: JobDetail | undefined): string {
    if (!job) return 'job not seen';
    return `${job.status}, attempt ${job.attempt}, exitCode ${job.exitCode ?? 'none'}${job.failureReason ? `, reason "${truncate(job.failureReason, 80)}"` : ''}`;
  }

  async dispose(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
    await Promise.all(this.agents.map((agent) => agent.dispose()));
  }

  result(ms: number): RowResult {
    return {
      id: this.row.id,
      scenario: this.row.scenario,
      expected: this.row.expected,
      observed: [...this.observed, ...this.failures.map((f) => `FAIL: ${f}`)].join('; '),
      pass: this.failures.length === 0,
      skipped: false,
      ms,
    };
  }
}

export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) !== 'Z';
  } catch {
    return false;
  }
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The events' types in order, for the observed column. */
export function eventTypes(job: JobDetail): string {
  return job.events.map((event) => event.type).join(' → ');
}
