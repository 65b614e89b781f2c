// Which process groups this agent has running, on disk. Job processes live in their own session,
// so they survive the agent being killed outright; without these records a restarted agent (whose
// jobs the server hands to someone else) would leave the old coding tool running beside the new
// run. On start the agent kills what a previous life left behind.
import fs from 'node:fs/promises';
import path from 'node:path';
import { agentLog } from './agent-log.js';
import { environmentOf, processGroupMembers } from './proc-table.js';

interface RunRecord {
  pgid: number;
  jobId: string;
}

export class RunRecords {
  constructor(private readonly dir: string) {}

  async record(runKey: string, record: RunRecord): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    await fs.writeFile(this.file(runKey), JSON.stringify(record));
  }

  async remove(runKey: string): Promise<void> {
    await fs.rm(this.file(runKey), { force: true });
  }

  /** Kills the groups recorded by a previous agent process; returns how many were still alive. */
  async reapLeftovers(): Promise<number> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[]);
    let reaped = 0;
    for (const name of names.filter((n) => n.endsWith('.json'))) {
      const file = path.join(this.dir, name);
      const record = parseRecord(await fs.readFile(file, 'utf8').catch(() => ''));
      if (record && (await belongsToJob(record))) {
        try {
          process.kill(-record.pgid, 'SIGKILL');
          reaped++;
          agentLog.warn('killed processes left by a previous agent run', { jobId: record.jobId, pgid: record.pgid });
        } catch {
          // Gone between the check and the kill.
        }
      }
      await fs.rm(file, { force: true });
    }
    return reaped;
  }

  private file(runKey: string): string {
    return path.join(this.dir, `${runKey}.json`);
  }
}

function parseRecord(text: string): RunRecord | undefined {
  try {
    const value = JSON.parse(text) as Partial<RunRecord>;
    return typeof value.pgid === 'number' && value.pgid > 1 && typeof value.jobId === 'string' ? { pgid: value.pgid, jobId: value.jobId } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A pid can be reused, so the group is killed only if one of its members still carries the job's
 * JOB_ID in its environment. This needs /proc (Linux); elsewhere leftovers are reported, not killed.
 */
async function belongsToJob(record: RunRecord): Promise<boolean> {
  const members = await processGroupMembers(record.pgid);
  if (!members) {
    agentLog.warn('cannot check for processes left by a previous agent run (no /proc); check by hand', { jobId: record.jobId, pgid: record.pgid });
    return false;
  }
  const marker = `JOB_ID=${record.jobId}`;
  for (const member of members) {
    if ((await environmentOf(member.pid)).includes(marker)) return true;
  }
  return false;
}
