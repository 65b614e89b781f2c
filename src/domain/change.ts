// The change a run made to its repository (agent.proto, RunChange): what the agent reports, how the
// server checks and bounds it before storing it, and what readers see (openapi.yaml, JobChange).
import type { components } from '../../generated/openapi/schema.js';

/** A commit a run made (agent.proto, Commit). */
export interface ChangeCommit {
  sha: string;
  subject: string;
}

/** A RunChange as the gateway decoded it. */
export interface ReportedChange {
  branch: string;
  pushed: boolean;
  baseCommit: string;
  headCommit: string;
  commits: ChangeCommit[];
  commitCount: number;
  diffStat: { filesChanged: number; insertions: number; deletions: number };
  summary: string;
  pullRequestUrl: string;
  patchSize: number;
}

/** A change as the server keeps it (the run_changes table, less the run's key). */
export interface StoredChange {
  /** Null when the run changed nothing. */
  branch: string | null;
  pushed: boolean;
  baseCommit: string;
  headCommit: string;
  commits: ChangeCommit[];
  commitCount: number;
  filesChanged: number;
  insertions: number;
  deletions: number;
  summary: string | null;
  pullRequestUrl: string | null;
  patchSize: number;
  /** False when the patch was over the server's limit and the agent sent none. */
  patchStored: boolean;
}

/** RunChange.commits carries at most this many; commit_count says how many there were. */
export const MAX_LISTED_COMMITS = 250;
/** RunChange.summary: the server keeps this many characters. */
export const MAX_SUMMARY_CHARS = 65_536;
const MAX_SUBJECT_CHARS = 1_000;
const MAX_BRANCH_CHARS = 255;
const COMMIT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Why a reported change cannot be taken; the run is recorded as failed with it. */
export class InvalidChangeError extends Error {}

/**
 * Checks a change and bounds what people will see of it. Throws InvalidChangeError for what no
 * reader could make sense of (commit ids that are not ids, commits on no branch); cuts what is only
 * too long, and drops a pull-request link that is not an http(s) URL, as the contract says.
 */
export function normaliseChange(change: ReportedChange, maxPatchBytes: number): StoredChange {
  const problems: string[] = [];
  if (!COMMIT_ID.test(change.baseCommit)) problems.push('base_commit is not a full commit id');
  if (!COMMIT_ID.test(change.headCommit)) problems.push('head_commit is not a full commit id');
  const changed = change.headCommit !== change.baseCommit;
  if (changed && !change.branch.trim()) problems.push('a change with commits names no branch');
  if (change.commits.length > MAX_LISTED_COMMITS) problems.push(`more than ${MAX_LISTED_COMMITS} commits listed`);
  if (change.commits.some((commit) => !COMMIT_ID.test(commit.sha))) problems.push('a commit sha is not a full commit id');
  if (change.commitCount < change.commits.length) problems.push('commit_count is less than the commits listed');
  if (!changed && (change.commitCount > 0 || change.patchSize > 0)) problems.push('head_commit is base_commit, yet commits or a patch are reported');
  if (change.branch.length > MAX_BRANCH_CHARS) problems.push(`branch is longer than ${MAX_BRANCH_CHARS} characters`);
  if (problems.length) throw new InvalidChangeError(problems.join('; '));
  return {
    branch: changed ? text(change.branch) : null,
    pushed: changed && change.pushed,
    baseCommit: change.baseCommit,
    headCommit: change.headCommit,
    commits: change.commits.map((commit) => ({ sha: commit.sha, subject: text(commit.subject).slice(0, MAX_SUBJECT_CHARS) })),
    commitCount: change.commitCount,
    filesChanged: change.diffStat.filesChanged,
    insertions: change.diffStat.insertions,
    deletions: change.diffStat.deletions,
    summary: change.summary ? cut(text(change.summary), MAX_SUMMARY_CHARS) : null,
    pullRequestUrl: webUrl(change.pullRequestUrl),
    patchSize: change.patchSize,
    patchStored: change.patchSize > 0 && change.patchSize <= maxPatchBytes,
  };
}

/** The job's change as readers see it: openapi.yaml's JobChange, so the compiler holds toJobChange to the contract. */
export type JobChange = components['schemas']['JobChange'];

export function toJobChange(row: StoredChange & { attempt: number }): JobChange {
  return {
    attempt: row.attempt,
    changed: row.headCommit !== row.baseCommit,
    branch: row.branch,
    pushed: row.pushed,
    baseCommit: row.baseCommit,
    headCommit: row.headCommit,
    commits: row.commits,
    commitCount: row.commitCount,
    diffStat: { filesChanged: row.filesChanged, insertions: row.insertions, deletions: row.deletions },
    summary: row.summary,
    pullRequestUrl: row.pullRequestUrl,
    patch: { bytes: row.patchSize, available: row.patchStored || row.patchSize === 0 },
  };
}

/** PostgreSQL text cannot hold U+0000: stored as U+FFFD, as log lines are. */
function text(value: string): string {
  return value.includes('\0') ? value.replaceAll('\0', '\uFFFD') : value;
}

/** Cuts to at most `max` UTF-16 units without splitting a surrogate pair. */
function cut(value: string, max: number): string {
  if (value.length <= max) return value;
  const end = /[\uD800-\uDBFF]/.test(value[max - 1] ?? '') ? max - 1 : max;
  return value.slice(0, end);
}

function webUrl(value: string): string | null {
  if (!value || value.length > 2_048) return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.toString() : null;
  } catch {
    return null;
  }
}
