// What a successful run changed, made the way agent.proto (RunChange) says every agent makes it:
// leftovers committed, the branch named, the commits listed, the diff stat counted and the patch
// taken byte for byte. Pushing is the job runner's (its output belongs in the job's log); this
// module only runs git commands that read or record, and parses what they print.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import type { Commit, DiffStat } from '../generated/agent/v1/agent.js';

/** RunChange.commits carries at most this many. */
export const MAX_LISTED_COMMITS = 250;
/** What the server keeps of a subject and a summary: JobFinished stays well under the message limit. */
const MAX_SUBJECT_CHARS = 1_000;
export const MAX_SUMMARY_CHARS = 65_536;
/** Characters of the prompt's first line in the agent's commit message. */
const TITLE_CHARS = 72;
/** What a user's git config could change in a patch or its stat (agent.proto, RunChange). */
const PINNED_DIFF = ['--full-index', '--no-color', '--no-ext-diff', '--no-textconv', '--no-relative', '--src-prefix=a/', '--dst-prefix=b/', '--find-renames', '--diff-algorithm=myers'];

export interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs git to the end, output captured (for commands whose output is small and not the job's log). */
export function git(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<GitResult> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, env, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && !stdout ? err.message : '') });
    });
  });
}

async function gitOrThrow(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  const result = await git(args, cwd, env);
  if (result.code !== 0) throw new Error(`git ${args[0]} failed: ${firstErrorLine(result.stderr) || `exit ${result.code}`}`);
  return result.stdout;
}

export function headCommit(repoDir: string, env: NodeJS.ProcessEnv): Promise<string> {
  return gitOrThrow(['rev-parse', 'HEAD'], repoDir, env).then((out) => out.trim());
}

/**
 * The ref a rework's push sets, in the same atomic push as the branch, to the commit it pushed
 * (agent.proto, RunChange): a later attempt of the job that finds the branch there knows the move
 * was this job's own, not someone else's.
 */
export function pushMarkerRef(jobId: string): string {
  return `refs/agent-jobs/${jobId}`;
}

/** Where the remote's push marker of `jobId` stands: undefined when the remote has none. */
export async function markedPush(repoDir: string, env: NodeJS.ProcessEnv, jobId: string): Promise<string | undefined> {
  const ref = pushMarkerRef(jobId);
  const out = await gitOrThrow(['ls-remote', '--refs', 'origin', ref], repoDir, env);
  for (const line of out.split('\n')) {
    const [sha, name] = line.trim().split(/\s+/);
    if (name === ref && sha) return sha;
  }
  return undefined;
}

/** The message of the agent's commit: the prompt's first line (the feedback's, for rework), then the job. */
export function commitMessage(prompt: string, jobId: string, rework: boolean): string {
  const firstLine = prompt.trim().split('\n', 1)[0]!.trim();
  const title = firstLine ? cutCodePoints(rework ? `Rework: ${firstLine}` : firstLine, TITLE_CHARS).trimEnd() : 'agent job';
  return `${title}\n\nJob: ${jobId}`;
}

/** The first `max` characters (code points, so a character is never split). */
export function cutCodePoints(text: string, max: number): string {
  const points = Array.from(text);
  return points.length <= max ? text : points.slice(0, max).join('');
}

/**
 * Commits what the command left uncommitted (`git add --all`, .gitignore respected). Returns
 * whether there was anything to commit.
 */
export async function commitLeftovers(repoDir: string, env: NodeJS.ProcessEnv, message: string): Promise<boolean> {
  await gitOrThrow(['add', '--all'], repoDir, env);
  const staged = await git(['diff', '--cached', '--quiet'], repoDir, env);
  if (staged.code === 0) return false;
  if (staged.code !== 1) throw new Error(`git diff --cached failed: ${firstErrorLine(staged.stderr) || `exit ${staged.code}`}`);
  await gitOrThrow(['commit', '--quiet', '--no-verify', '-m', message], repoDir, env);
  return true;
}

/** The run's commits, oldest first: how many, and the first MAX_LISTED_COMMITS with their subjects. */
export async function listCommits(repoDir: string, env: NodeJS.ProcessEnv, base: string, head: string): Promise<{ commits: Commit[]; count: number }> {
  const shas = (await gitOrThrow(['rev-list', '--reverse', `${base}..${head}`], repoDir, env)).split('\n').filter(Boolean);
  const listed = shas.slice(0, MAX_LISTED_COMMITS);
  if (listed.length === 0) return { commits: [], count: 0 };
  // NUL-separated records (-z): a subject may hold any character but NUL.
  const out = await gitOrThrow(['log', '-z', '--no-walk=unsorted', '--no-show-signature', '--encoding=UTF-8', '--format=%H%x00%s', ...listed], repoDir, env);
  const fields = out.split('\0');
  const subjects = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) subjects.set(fields[i]!.trim(), fields[i + 1]!);
  return { commits: listed.map((sha) => ({ sha, subject: cutCodePoints(subjects.get(sha) ?? '', MAX_SUBJECT_CHARS) })), count: shas.length };
}

/** `git diff --numstat` summed: every line one file; "-" (a binary file) counts no lines. */
export function parseNumstat(text: string): DiffStat {
  const stat: DiffStat = { filesChanged: 0, insertions: 0, deletions: 0 };
  for (const line of text.split('\n')) {
    const match = /^(\d+|-)\t(\d+|-)\t/.exec(line);
    if (!match) continue;
    stat.filesChanged++;
    if (match[1] !== '-') stat.insertions += Number(match[1]);
    if (match[2] !== '-') stat.deletions += Number(match[2]);
  }
  return stat;
}

export async function diffStat(repoDir: string, env: NodeJS.ProcessEnv, base: string, head: string): Promise<DiffStat> {
  return parseNumstat(await gitOrThrow(['-c', 'core.quotePath=true', 'diff', '--numstat', ...PINNED_DIFF, base, head], repoDir, env));
}

/**
 * The patch, byte for byte (never decoded: it need not be UTF-8). Its whole size is counted, but
 * only a patch of at most `keepBytes` is kept: a larger one is reported by size and not sent.
 * `progress` sees the bytes read so far as git writes them (a view of them, valid until the next
 * call), and undefined once the patch has outgrown `keepBytes`; so the patch can be sent while git
 * is still writing it.
 */
export function readPatch(
  repoDir: string,
  env: NodeJS.ProcessEnv,
  base: string,
  head: string,
  keepBytes: number,
  progress: (bytesSoFar: Buffer | undefined) => void = () => undefined,
): Promise<{ size: number; bytes: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['-c', 'core.quotePath=true', 'diff', '--binary', ...PINNED_DIFF, base, head], { cwd: repoDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    // One buffer grown by doubling, so that what is read so far is always one contiguous view.
    let kept = Buffer.alloc(0);
    let size = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      const end = size + chunk.byteLength;
      if (end <= keepBytes) {
        if (end > kept.byteLength) {
          const grown = Buffer.allocUnsafe(Math.min(keepBytes, Math.max(end, kept.byteLength * 2, 256 * 1024)));
          kept.copy(grown, 0, 0, size);
          kept = grown;
        }
        chunk.copy(kept, size);
        size = end;
        progress(kept.subarray(0, size));
        return;
      }
      if (size <= keepBytes) {
        kept = Buffer.alloc(0);
        progress(undefined);
      }
      size = end;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < 10_000) stderr += text;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`git diff failed: ${firstErrorLine(stderr) || `exit ${code}`}`));
      resolve({ size, bytes: size <= keepBytes ? kept.subarray(0, size) : undefined });
    });
  });
}

/** What the command wrote in JOB_RESULT_FILE (agent.proto, RunChange), and why it was ignored, if it was. */
export async function readResultFile(file: string): Promise<{ summary: string; pullRequestUrl: string; problem?: string }> {
  const none = { summary: '', pullRequestUrl: '' };
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return none;
    return { ...none, problem: `cannot read it: ${(err as Error).message}` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { ...none, problem: `not JSON: ${(err as Error).message}` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ...none, problem: 'not a JSON object' };
  const { summary, pullRequestUrl } = parsed as Record<string, unknown>;
  const problems: string[] = [];
  if (summary !== undefined && typeof summary !== 'string') problems.push('"summary" is not a string');
  let url = '';
  if (pullRequestUrl !== undefined) {
    if (typeof pullRequestUrl === 'string' && isWebUrl(pullRequestUrl)) url = pullRequestUrl;
    else problems.push('"pullRequestUrl" is not an http(s) URL');
  }
  const said = typeof summary === 'string' ? summary : '';
  // Cut in UTF-16 units as the server counts, never between the two halves of a pair.
  const cut = said.length > MAX_SUMMARY_CHARS ? said.slice(0, /[\uD800-\uDBFF]/.test(said[MAX_SUMMARY_CHARS - 1]!) ? MAX_SUMMARY_CHARS - 1 : MAX_SUMMARY_CHARS) : said;
  return { summary: cut, pullRequestUrl: url, ...(problems.length ? { problem: problems.join('; ') } : {}) };
}

function isWebUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:';
  } catch {
    return false;
  }
}

/**
 * Why a push failed, in git's words: the first ref it refused (" ! [rejected] … (stale info)"), which
 * says more than an atomic push's own first error line, else as firstErrorLine.
 */
export function pushFailure(text: string): string {
  return text.split('\n').find((line) => line.startsWith(' ! ['))?.trim() ?? firstErrorLine(text);
}

/** What git says went wrong: its first "error:"/"fatal:"/rejected line, else its last line. */
export function firstErrorLine(text: string): string {
  const lines = text.split('\n').map((line) => line.trimEnd()).filter((line) => line.trim());
  return lines.find((line) => /^(error:|fatal:| ! \[)/.test(line))?.trim() ?? lines.at(-1)?.trim() ?? '';
}
