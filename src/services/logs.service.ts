// A job's log as stored: paged history, the whole text, and what a live stream reads. Lines arrive
// from agents through the gateway; every read is keyed by (job, seq), so a reader that names the
// last line it has gets exactly the lines after it.
import type { Database } from '../db/client.js';
import * as changesRepo from '../db/changes.repository.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as logsRepo from '../db/logs.repository.js';
import { isTerminalStatus, type JobStatus, type LogLineRow } from '../db/schema/index.js';
import { toJobChange, type JobChange } from '../domain/change.js';
import { NotFoundError } from '../errors.js';
import { requireOrgRole, type Caller } from './access.js';

export type LogLine = Omit<LogLineRow, 'jobId'>;

/** Where a job stands, as a log stream reports it. */
export interface JobLogState {
  jobId: string;
  status: JobStatus;
  attempt: number;
  /** When the status last changed. */
  changedAt: Date;
  exitCode: number | null;
  failureReason: string | null;
  /** The highest stored line, 0 when there is none. */
  lastSeq: number;
  /** The job's change, once it succeeded with one (the end frame carries it). */
  change: JobChange | null;
}

export class LogsService {
  constructor(private readonly db: Database) {}

  async page(caller: Caller, orgId: string, jobId: string, after: number, limit: number): Promise<{ items: LogLine[]; nextAfter: number; jobFinished: boolean }> {
    requireOrgRole(caller, orgId, 'Member');
    const job = await jobsRepo.findJob(this.db, orgId, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    const items = await this.linesAfter(jobId, after, limit);
    return { items, nextAfter: items.at(-1)?.seq ?? after, jobFinished: isTerminalStatus(job.status) };
  }

  /**
   * Every line in order, read a page at a time as the consumer pulls, so a log of a million lines
   * never sits in memory whole. Access is checked before the first line is produced.
   */
  async lines(caller: Caller, orgId: string, jobId: string, pageSize = 5000): Promise<AsyncIterable<LogLine>> {
    requireOrgRole(caller, orgId, 'Member');
    if (!(await jobsRepo.findJob(this.db, orgId, jobId))) throw new NotFoundError(`Job ${jobId}`);
    const read = (after: number) => this.linesAfter(jobId, after, pageSize);
    return (async function* () {
      for (let after = 0; ; ) {
        const rows = await read(after);
        yield* rows;
        if (rows.length < pageSize) return;
        after = rows.at(-1)?.seq ?? after;
      }
    })();
  }

  /** Opens a live view of a job's log: checks the caller may read it and says where the job stands. */
  async follow(caller: Caller, orgId: string, jobId: string): Promise<JobLogState> {
    requireOrgRole(caller, orgId, 'Member');
    const [state] = await logsRepo.jobLogStates(this.db, [jobId]);
    // Another organisation's job is as unknown as a missing one.
    if (!state || state.orgId !== orgId) throw new NotFoundError(`Job ${jobId}`);
    return (await this.withChanges([state]))[0]!;
  }

  /** Lines after `after`, in order: for readers that already checked access (follow). */
  async linesAfter(jobId: string, after: number, limit: number): Promise<LogLine[]> {
    const rows = await logsRepo.linesAfter(this.db, jobId, after, limit);
    return rows.map(({ jobId: _job, ...line }) => line);
  }

  /** The state of each followed job that still exists, in one read. */
  async states(jobIds: readonly string[]): Promise<JobLogState[]> {
    return this.withChanges(await logsRepo.jobLogStates(this.db, jobIds));
  }

  /** The states, with the changes of the jobs that succeeded (read only for those: few, and only once). */
  private async withChanges(rows: logsRepo.JobLogStateRow[]): Promise<JobLogState[]> {
    const succeeded = rows.filter((row) => row.status === 'succeeded');
    const changes = await changesRepo.findChanges(this.db, succeeded.map((row) => ({ jobId: row.jobId, attempt: row.attempt })));
    return rows.map(({ orgId: _org, updatedAt, ...state }) => {
      const change = state.status === 'succeeded' ? changes.get(state.jobId) : undefined;
      return { ...state, changedAt: updatedAt, change: change ? toJobChange(change) : null };
    });
  }
}
