// A job's log as stored: paged history and the whole text. Lines arrive from agents through the
// gateway; live streaming to browsers builds on the same reads.
import type { Database } from '../db/client.js';
import * as jobsRepo from '../db/jobs.repository.js';
import * as logsRepo from '../db/logs.repository.js';
import { terminalJobStatuses, type JobStatus, type LogLineRow } from '../db/schema/index.js';
import { NotFoundError } from '../errors.js';
import { requireOrgRole, type Caller } from './access.js';

export type LogLine = Omit<LogLineRow, 'jobId'>;

export class LogsService {
  constructor(private readonly db: Database) {}

  async page(caller: Caller, orgId: string, jobId: string, after: number, limit: number): Promise<{ items: LogLine[]; nextAfter: number; jobFinished: boolean }> {
    requireOrgRole(caller, orgId, 'Member');
    const job = await jobsRepo.findJob(this.db, orgId, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    const rows = await logsRepo.linesAfter(this.db, jobId, after, limit);
    const items = rows.map(({ jobId: _job, ...line }) => line);
    return {
      items,
      nextAfter: items.at(-1)?.seq ?? after,
      jobFinished: (terminalJobStatuses as readonly JobStatus[]).includes(job.status),
    };
  }

  /** Every line in order, fetched in pages so a long log never sits in memory whole. */
  async *all(caller: Caller, orgId: string, jobId: string, pageSize = 5000): AsyncGenerator<LogLine> {
    requireOrgRole(caller, orgId, 'Member');
    const job = await jobsRepo.findJob(this.db, orgId, jobId);
    if (!job) throw new NotFoundError(`Job ${jobId}`);
    for (let after = 0; ; ) {
      const rows = await logsRepo.linesAfter(this.db, jobId, after, pageSize);
      for (const { jobId: _job, ...line } of rows) yield line;
      if (rows.length < pageSize) return;
      after = rows.at(-1)?.seq ?? after;
    }
  }
}
