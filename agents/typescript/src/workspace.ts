// The folder a job run works in, and the git command that fills it. Each run gets a fresh folder
// named for the job and attempt, so a retry never inherits a half-finished checkout.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Repository } from '../generated/agent/v1/agent.js';

/** `<job_id>-<attempt>`, or undefined when the job id could escape the work directory. */
export function runFolderName(jobId: string, attempt: number): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(jobId)) return undefined;
  return `${jobId}-${attempt}`;
}

/** Marks a folder as a run folder, so that only folders the agent made are ever deleted wholesale. */
const RUN_FOLDER_MARKER = '.agent-jobs-run';

/** Empties and creates the run folder: a leftover from an earlier life of this agent is discarded. */
export async function prepareRunFolder(folder: string): Promise<void> {
  await fs.rm(folder, { recursive: true, force: true });
  await fs.mkdir(folder, { recursive: true });
  await fs.writeFile(path.join(folder, RUN_FOLDER_MARKER), '');
}

/**
 * Removes run folders left by an agent process that died mid-job. Called at start, when the agent
 * holds no runs, so every marked folder is stale; anything else in the work directory is left alone.
 */
export async function removeStaleRunFolders(workRoot: string): Promise<string[]> {
  const entries = await fs.readdir(workRoot, { withFileTypes: true }).catch(() => []);
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const folder = path.join(workRoot, entry.name);
    const marked = await fs.access(path.join(folder, RUN_FOLDER_MARKER)).then(() => true, () => false);
    if (!marked) continue;
    await fs.rm(folder, { recursive: true, force: true });
    removed.push(folder);
  }
  return removed;
}

export async function removeRunFolder(folder: string): Promise<void> {
  await fs.rm(folder, { recursive: true, force: true });
}

/** Shallow clone of the one branch the job needs; `--` keeps a hostile URL from being read as an option. */
export function cloneArgs(repository: Repository, repoDir: string): string[] {
  const branch = repository.defaultBranch ? ['--branch', repository.defaultBranch] : [];
  return ['clone', ...branch, '--depth', '1', '--', repository.cloneUrl, repoDir];
}

/** The clone URL as it may appear in a log: credentials in it are masked. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.username = parsed.username ? '***' : '';
    parsed.password = parsed.password ? '***' : '';
    return parsed.toString();
  } catch {
    return url; // scp-style (git@host:org/repo) carries no secret in the URL itself
  }
}

export function repoDirOf(folder: string): string {
  return path.join(folder, 'repo');
}
