// Changes: what a successful run leaves in the repository, as agent.proto's RunChange says every agent
// makes it, judged from outside: the job's `change` over REST, its patch from `GET …/diff`, and a bare
// repository on disk (a fresh one per row) standing in for the remote. The kit recomputes what git says
// of the pushed commits there (`git rev-list`, `%s`, `--numstat`, and the patch with the pinned
// options) and compares byte for byte. The command's own commits name their author in the prompt, so
// no row depends on the machine's git identity.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { JobDetail } from '../../generated/sdk/index.js';
import { createBareRepository, gitIn } from '../support/git-fixture.js';
import type { AgentUnderTest } from './agent.js';
import type { Org, Row, RowContext } from './kit.js';
import { truncate } from './kit.js';
import { settings } from './settings.js';

const MiB = 1024 * 1024;
/** One gRPC message: a patch above it must come in several PatchChunks. */
const GRPC_MESSAGE_BYTES = 4 * MiB;
/** agent.proto, RunChange: the patch and the diff stat are exactly git's output with these options. */
const PINNED = ['--full-index', '--no-color', '--no-ext-diff', '--no-textconv', '--no-relative', '--src-prefix=a/', '--dst-prefix=b/', '--find-renames', '--diff-algorithm=myers'];
const PINNED_DIFF = ['-c', 'core.quotePath=true', 'diff', '--binary', ...PINNED];
const PINNED_NUMSTAT = ['-c', 'core.quotePath=true', 'diff', '--numstat', ...PINNED];
/** agent.proto, RunChange: a backlog job's branch is this prefix (the default) and the job id. */
const BRANCH_PREFIX = 'agent-jobs/';
/** Passed as --git-author (the reference agent's CLI) by the row that judges the agent's own commit. */
const AGENT_AUTHOR = 'Conformance Kit <kit@conformance.invalid>';
/** The command's own commits: an identity of the prompt's, whatever git on the machine has. */
const AS_THE_COMMAND = "export GIT_AUTHOR_NAME='Command Author' GIT_AUTHOR_EMAIL=command@example.test GIT_COMMITTER_NAME='Command Author' GIT_COMMITTER_EMAIL=command@example.test";

type Remote = Awaited<ReturnType<typeof createBareRepository>>;
type Change = NonNullable<JobDetail['change']>;

interface ChangeSetup {
  org: Org;
  remote: Remote;
  repoId: string;
  /** The agent started for the row, unless it asked for none. */
  agent?: AgentUnderTest;
}

/** An organisation, one agent, and a repository on a fresh bare remote seeded with `files` on main. */
async function setup(ctx: RowContext, options: { files?: Record<string, string | Buffer>; refusePushes?: string; agentArgs?: string[]; startAgent?: boolean } = {}): Promise<ChangeSetup> {
  const remote = await createBareRepository(options.files ?? { 'README.md': 'hello\n' }, options.refusePushes === undefined ? {} : { refusePushes: options.refusePushes });
  ctx.onDispose(remote.remove);
  const org = await ctx.org();
  const repoId = await ctx.repository(org, { name: `changes-${ctx.row.id}`, cloneUrl: remote.cloneUrl });
  const agent = options.startAgent === false ? undefined : await ctx.agent(org, options.agentArgs ? { extraArgs: options.agentArgs } : {});
  return { org, remote, repoId, ...(agent ? { agent } : {}) };
}

/** Pushes one commit of someone else's onto `branch` of the remote, on top of `from` (the branch itself by default); returns the new head. */
function pushAsSomeoneElse(ctx: RowContext, remote: Remote, branch: string, from = branch): string {
  const human = ctx.file(`human-${Date.now()}`);
  gitIn(ctx.file(''), 'clone', '--quiet', '--branch', from, remote.cloneUrl, human);
  gitIn(human, 'commit', '--quiet', '--allow-empty', '-m', 'A human change');
  gitIn(human, 'push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`);
  return headOf(remote, branch)!;
}

async function runJob(ctx: RowContext, s: ChangeSetup, prompt: string, parentJobId?: string): Promise<JobDetail | undefined> {
  const jobId = await ctx.submit(s.org, prompt, { repoId: s.repoId, ...(parentJobId ? { parentJobId } : {}) });
  return ctx.untilEnded(s.org, jobId);
}

/** A job that writes story.txt and succeeds on its own branch, to be reworked; undefined (a failure noted) otherwise. */
async function parentOnItsBranch(ctx: RowContext, s: ChangeSetup): Promise<{ first: JobDetail; branch: string } | undefined> {
  const first = await runJob(ctx, s, 'echo one > story.txt');
  if (!first) return undefined;
  const branch = `${BRANCH_PREFIX}${first.id}`;
  if (!ctx.check(first.status === 'succeeded' && first.change?.branch === branch, `parent ${ctx.describe(first)}, branch ${first.change?.branch}`)) return undefined;
  return { first, branch };
}

/** A branch's head in the remote, or undefined when it has no such branch. */
function headOf(remote: Remote, branch: string): string | undefined {
  try {
    return gitIn(remote.dir, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`).toString().trim();
  } catch {
    return undefined;
  }
}

function branchesOf(remote: Remote): string[] {
  return gitIn(remote.dir, 'for-each-ref', '--format=%(refname:short)', 'refs/heads/').toString().split('\n').filter(Boolean);
}

/** `GET …/jobs/{jobId}/diff`, as bytes. */
async function download(org: Org, jobId: string): Promise<{ status: number; body: Buffer }> {
  const response = await fetch(`${org.baseUrl}/v1/orgs/${org.orgId}/jobs/${jobId}/diff`, { headers: { authorization: `Bearer ${org.token}` }, signal: AbortSignal.timeout(30_000) });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

/** The diff stat git gives for base..head: each numstat line one file, "-" (binary) counting no lines. */
function numstat(remote: Remote, base: string, head: string): { filesChanged: number; insertions: number; deletions: number } {
  const stat = { filesChanged: 0, insertions: 0, deletions: 0 };
  for (const line of gitIn(remote.dir, ...PINNED_NUMSTAT, base, head).toString('latin1').split('\n')) {
    const match = /^(\d+|-)\t(\d+|-)\t/.exec(line);
    if (!match) continue;
    stat.filesChanged++;
    if (match[1] !== '-') stat.insertions += Number(match[1]);
    if (match[2] !== '-') stat.deletions += Number(match[2]);
  }
  return stat;
}

const show = (value: unknown) => JSON.stringify(value);

/**
 * Judges a job that should have succeeded with a pushed change on `branch` from `base`: its head is
 * the remote branch's, its commits and stat are git's for base..head, and its patch downloads as
 * git's byte for byte. Notes one line when all holds, each difference otherwise. Returns the change
 * and git's patch (undefined when there is no change to judge).
 */
async function judgePushed(ctx: RowContext, s: ChangeSetup, job: JobDetail, want: { branch: string; base: string; commitCount?: number }): Promise<{ change: Change; patch: Buffer } | undefined> {
  const change = job.change;
  const who = `${job.queueType === 'rework' ? 'rework' : 'job'} ${job.id.slice(0, 8)}`;
  if (job.status !== 'succeeded' || !change) {
    ctx.fail(`${who} ${ctx.describe(job)}${change ? '' : ', no change'}`);
    return undefined;
  }
  const wrong: string[] = [];
  if (!change.changed || !change.pushed || change.attempt !== job.attempt) wrong.push(`changed ${change.changed}, pushed ${change.pushed}, attempt ${change.attempt}`);
  if (change.branch !== want.branch) wrong.push(`branch ${change.branch}, expected ${want.branch}`);
  if (change.baseCommit !== want.base) wrong.push(`baseCommit ${change.baseCommit}, expected ${want.base}`);
  const remoteHead = headOf(s.remote, want.branch);
  if (remoteHead !== change.headCommit) {
    ctx.fail(`${who}: ${[...wrong, `headCommit ${change.headCommit}, the remote ${want.branch} is at ${remoteHead ?? '(no such branch)'}`].join('; ')}`);
    return undefined;
  }

  const shas = gitIn(s.remote.dir, 'rev-list', '--reverse', `${change.baseCommit}..${change.headCommit}`).toString().split('\n').filter(Boolean);
  const expectedCommits = shas.map((sha) => ({ sha, subject: gitIn(s.remote.dir, 'log', '-1', '--format=%s', sha).toString().replace(/\n$/, '') }));
  if (show(change.commits) !== show(expectedCommits.slice(0, 250)) || change.commitCount !== shas.length) wrong.push(`commits ${show(change.commits)} (count ${change.commitCount}), git's rev-list base..head with %s: ${show(expectedCommits)}`);
  if (want.commitCount !== undefined && shas.length !== want.commitCount) wrong.push(`${shas.length} commit(s) pushed, expected ${want.commitCount}`);
  const stat = numstat(s.remote, change.baseCommit, change.headCommit);
  if (show(change.diffStat) !== show(stat)) wrong.push(`diffStat ${show(change.diffStat)}, git --numstat says ${show(stat)}`);

  const patch = gitIn(s.remote.dir, ...PINNED_DIFF, change.baseCommit, change.headCommit);
  const served = await download(s.org, job.id);
  if (served.status !== 200) wrong.push(`GET …/diff answered ${served.status}`);
  else if (!served.body.equals(patch)) wrong.push(patchDifference(served.body, patch));
  if (change.patch.bytes !== patch.byteLength || !change.patch.available) wrong.push(`patch ${show(change.patch)}, git's is ${patch.byteLength} bytes`);

  if (wrong.length > 0) ctx.fail(`${who}: ${wrong.join('; ')}`);
  else ctx.note(`${who}: on ${change.branch} (the remote's head), base ${change.baseCommit.slice(0, 10)}, ${change.commitCount} commit(s) ${show(change.commits.map((c) => truncate(c.subject, 40)))}, diffStat ${show(change.diffStat)}, patch ${patch.byteLength} bytes identical to git's`);
  return { change, patch };
}

/** Where a served patch parts from git's. */
function patchDifference(served: Buffer, expected: Buffer): string {
  let at = 0;
  while (at < served.byteLength && at < expected.byteLength && served[at] === expected[at]) at++;
  return `patch: ${served.byteLength} bytes served, git's is ${expected.byteLength}; first difference at byte ${at} (served ${JSON.stringify(served.subarray(at, at + 24).toString('latin1'))}, git ${JSON.stringify(expected.subarray(at, at + 24).toString('latin1'))})`;
}

/** A line of the job's stored log (any stream) containing `text`. */
async function logHas(ctx: RowContext, org: Org, jobId: string, text: string): Promise<boolean> {
  return (await ctx.storedLog(org, jobId)).some((line) => line.text.includes(text));
}

/** `NAME=value` lines the command printed. */
async function printed(ctx: RowContext, org: Org, jobId: string): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  for (const line of await ctx.stdout(org, jobId)) {
    const eq = line.indexOf('=');
    if (eq > 0) seen.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return seen;
}

/** Prints what a rework's command is told of its parent (the summary as a hash: it may span lines). */
const PRINT_PARENT = [
  `for name in JOB_QUEUE JOB_REVISES_JOB_ID JOB_PARENT_ID JOB_PARENT_BRANCH JOB_PARENT_HEAD REPO_BRANCH; do printf '%s=%s\\n' "$name" "\${!name-<unset>}"; done`,
  `printf 'JOB_PARENT_SUMMARY_SHA256=%s\\n' "$(printf %s "\${JOB_PARENT_SUMMARY-<unset>}" | sha256sum | cut -d' ' -f1)"`,
  `printf 'HEAD_AT_START=%s\\n' "$(git rev-parse HEAD)"`,
].join('\n');

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Judges what a rework's command printed of its parent against the parent job as the API shows it. */
async function judgeParentEnv(ctx: RowContext, org: Org, rework: JobDetail, parent: JobDetail): Promise<void> {
  const seen = await printed(ctx, org, rework.id);
  const want: Record<string, string> = {
    JOB_QUEUE: 'rework',
    JOB_REVISES_JOB_ID: parent.id,
    JOB_PARENT_ID: parent.id,
    JOB_PARENT_BRANCH: parent.change?.branch ?? '',
    JOB_PARENT_HEAD: parent.change?.headCommit ?? '',
    JOB_PARENT_SUMMARY_SHA256: sha256(parent.change?.summary ?? ''),
    HEAD_AT_START: parent.change?.headCommit ?? '',
  };
  const wrong = Object.entries(want).filter(([name, value]) => seen.get(name) !== value).map(([name, value]) => `${name}=${truncate(seen.get(name) ?? '(not printed)', 60)} (expected ${truncate(value, 60)})`);
  ctx.check(wrong.length === 0, wrong.length === 0 ? `rework's environment names its parent (JOB_PARENT_ID/BRANCH/HEAD/SUMMARY, JOB_REVISES_JOB_ID); it started at the parent's head; REPO_BRANCH=${seen.get('REPO_BRANCH')}` : `rework's environment: ${wrong.join(', ')}`);
}

export const changeRows: Row[] = [
  {
    id: 'change-pushed',
    scenario: 'a job whose command makes two commits of its own (a two-line first paragraph in one)',
    expected: `succeeded; the commits pushed to ${BRANCH_PREFIX}<job id>, as the command made them; change: baseCommit = main's head, headCommit = the remote branch's, commits and commitCount = rev-list base..head with git's %s, diffStat = --numstat; GET …/diff = git's pinned diff byte for byte`,
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const prompt = [
        AS_THE_COMMAND,
        "printf 'dark mode\\n' > toggle.txt && git add toggle.txt && git commit -q -m 'Add the toggle' -m 'With a body paragraph.'",
        "printf 'hello\\nworld\\n' > README.md && git commit -q -a -m $'Greet\\nthe world' -m 'Body.'",
      ].join('\n');
      const job = await runJob(ctx, s, prompt);
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main, commitCount: 2 });
      if (!judged) return;
      const subjects = judged.change.commits.map((c) => c.subject);
      ctx.check(show(subjects) === show(['Add the toggle', 'Greet the world']), `subjects ${show(subjects)}`);
      const authors = [...new Set(gitIn(s.remote.dir, 'log', '--format=%an <%ae>', `${judged.change.baseCommit}..${judged.change.headCommit}`).toString().split('\n').filter(Boolean))];
      ctx.check(show(authors) === show(['Command Author <command@example.test>']), `pushed commits by ${authors.join(', ')}`);
    },
  },
  {
    id: 'change-leftovers',
    scenario: `a job whose command edits, adds, deletes and writes a .gitignored file, committing nothing; the agent started with --git-author '${AGENT_AUTHOR}'`,
    expected: `the agent commits the edits in one commit by ${AGENT_AUTHOR}, subject = the prompt's first line, body naming "Job: <job id>", the ignored file left out; pushed to ${BRANCH_PREFIX}<job id>; the patch as git's`,
    async run(ctx) {
      const s = await setup(ctx, { files: { 'README.md': 'hello\n', 'old.txt': 'old\n', '.gitignore': 'ignored.log\n' }, agentArgs: ['--git-author', AGENT_AUTHOR] });
      const main = headOf(s.remote, 'main')!;
      const firstLine = 'echo leaving the work uncommitted';
      const prompt = [firstLine, "printf 'more\\n' >> README.md", "mkdir -p docs && printf 'new\\n' > docs/notes.md", 'rm old.txt', "printf 'noise\\n' > ignored.log"].join('\n');
      const job = await runJob(ctx, s, prompt);
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main, commitCount: 1 });
      if (!judged) return;
      const [author, committer, subject, body] = gitIn(s.remote.dir, 'log', '-1', '--format=%an <%ae>%x00%cn <%ce>%x00%s%x00%b', judged.change.headCommit).toString().split('\0');
      ctx.check(author === AGENT_AUTHOR, `author ${author}`);
      ctx.note(`committer ${committer}`);
      ctx.check(subject === firstLine, `subject ${show(subject)}`);
      const bodyLines = (body ?? '').split('\n').map((line) => line.trim());
      ctx.check(bodyLines.includes(`Job: ${job.id}`), bodyLines.includes(`Job: ${job.id}`) ? 'body names the job' : `body ${show(body)} does not say "Job: ${job.id}"`);
      const files = gitIn(s.remote.dir, 'ls-tree', '-r', '--name-only', judged.change.headCommit).toString().split('\n').filter(Boolean).sort();
      ctx.check(show(files) === show(['.gitignore', 'README.md', 'docs/notes.md']), `head's files ${show(files)}`);
    },
  },
  {
    id: 'change-none',
    scenario: 'a job whose command changes nothing (it reads, and writes only a .gitignored file)',
    expected: 'succeeded; change: changed false, branch null, pushed false, no commits, headCommit = baseCommit = main\'s head, patch 0 bytes; no new branch on the remote; GET …/diff 200 and empty',
    async run(ctx) {
      const s = await setup(ctx, { files: { 'README.md': 'hello\n', '.gitignore': 'ignored.log\n' } });
      const main = headOf(s.remote, 'main')!;
      const job = await runJob(ctx, s, "cat README.md\nprintf 'noise\\n' > ignored.log");
      if (!job) return;
      const change = job.change;
      if (!ctx.check(job.status === 'succeeded' && !!change, `job ${ctx.describe(job)}${change ? '' : ', no change'}`) || !change) return;
      ctx.check(
        !change.changed && change.branch === null && !change.pushed && change.commits.length === 0 && change.commitCount === 0 && change.patch.bytes === 0,
        `changed ${change.changed}, branch ${change.branch}, pushed ${change.pushed}, ${change.commitCount} commit(s), patch ${show(change.patch)}`,
      );
      ctx.check(change.baseCommit === main && change.headCommit === main, change.baseCommit === main && change.headCommit === main ? 'base = head = main' : `base ${change.baseCommit}, head ${change.headCommit}, main ${main}`);
      const branches = branchesOf(s.remote);
      ctx.check(show(branches) === show(['main']), `remote branches ${show(branches)}`);
      const served = await download(s.org, job.id);
      ctx.check(served.status === 200 && served.body.byteLength === 0, `GET …/diff ${served.status}, ${served.body.byteLength} bytes`);
    },
  },
  {
    id: 'change-push-refused',
    scenario: 'a job that changes a file, on a remote whose pre-receive hook refuses every push',
    expected: 'failed with failureReason "push failed: …", exitCode 0 (the command\'s) and no change; the hook\'s words in the job\'s log; no branch on the remote',
    async run(ctx) {
      const refusal = 'pushes are frozen for the conformance release';
      const s = await setup(ctx, { refusePushes: refusal });
      const job = await runJob(ctx, s, 'echo change > file.txt');
      if (!job) return;
      // The command exited by itself (agent.proto, JobFinished.exit_code): its exit code stays the job's.
      ctx.check(job.status === 'failed' && (job.failureReason ?? '').startsWith('push failed: ') && job.exitCode === 0, `job ${ctx.describe(job)}`);
      ctx.check(job.change === null, job.change === null ? 'no change' : `change ${truncate(show(job.change), 100)}`);
      const heard = await logHas(ctx, s.org, job.id, refusal);
      ctx.check(heard, heard ? "the hook's words are in the log" : `no log line says "${refusal}"`);
      ctx.check(show(branchesOf(s.remote)) === show(['main']), `remote branches ${show(branchesOf(s.remote))}`);
    },
  },
  {
    id: 'result-file',
    scenario: 'a job whose command changes a file and writes JOB_RESULT_FILE: a Markdown summary (several lines, non-ASCII), a pullRequestUrl and a field no one knows',
    expected: 'succeeded; change.summary and change.pullRequestUrl as written; the result file is not part of the change (one file changed)',
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const summary = 'Added **the feature**.\n\n- café ✓\n- `code` and <b>tags</b>';
      const pullRequestUrl = 'https://git.example.test/acme/app/pull/7';
      const result = JSON.stringify({ summary, pullRequestUrl, confidence: 0.9 });
      const job = await runJob(ctx, s, `echo feature > feature.txt\ncat > "$JOB_RESULT_FILE" <<'JSON'\n${result}\nJSON`);
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main, commitCount: 1 });
      if (!judged) return;
      ctx.check(judged.change.summary === summary, `summary ${judged.change.summary === summary ? 'as written' : show(judged.change.summary)}`);
      ctx.check(judged.change.pullRequestUrl === pullRequestUrl, `pullRequestUrl ${judged.change.pullRequestUrl}`);
      ctx.check(judged.change.diffStat.filesChanged === 1, `${judged.change.diffStat.filesChanged} file(s) in the change`);
    },
  },
  {
    id: 'result-file-invalid',
    scenario: 'a job whose command changes a file and writes JOB_RESULT_FILE that is not JSON; beside it, the same job writing no result file',
    expected: 'succeeded with its change pushed, no summary and no pullRequestUrl; the invalid file is one more system line in its log than the other job has (agent.proto: "a line on LOG_STREAM_SYSTEM, not a failure")',
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const without = await runJob(ctx, s, 'echo feature > feature.txt');
      const job = await runJob(ctx, s, 'echo feature > feature.txt\nprintf \'{"summary": "cut off\' > "$JOB_RESULT_FILE"');
      if (!job || !without) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main, commitCount: 1 });
      if (!judged) return;
      const { summary, pullRequestUrl } = judged.change;
      ctx.check(!summary && !pullRequestUrl, `summary ${show(summary)}, pullRequestUrl ${show(pullRequestUrl)}`);
      const systemLines = async (of: JobDetail) => (await ctx.storedLog(s.org, of.id)).filter((line) => line.stream === 'system').map((line) => line.text.replaceAll(of.id, '<job>'));
      const [mine, theirs] = [await systemLines(job), await systemLines(without)];
      const extra = [...mine];
      for (const line of theirs) if (extra.includes(line)) extra.splice(extra.indexOf(line), 1);
      ctx.check(
        mine.length > theirs.length,
        `${mine.length} system line(s) against ${theirs.length} without a result file${extra.length > 0 ? `; "${truncate(extra[0]!, 90)}"` : ''}`,
      );
    },
  },
  {
    id: 'rework-chain',
    scenario: 'a job writes a file and a summary; a rework of it appends and prints its environment; a rework of the rework does the same',
    expected: "each rework continues the same branch from its parent's headCommit (baseCommit = parent's headCommit, one commit, fast-forward, refs/agent-jobs/<job id> pushed at the same head), its command sees JOB_PARENT_ID/BRANCH/HEAD/SUMMARY of its parent and starts at the parent's head; each patch is git's base..head",
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const first = await runJob(ctx, s, `echo one > story.txt\nprintf '{"summary":"First pass.\\\\n\\\\n- one line"}' > "$JOB_RESULT_FILE"`);
      if (!first) return;
      const branch = `${BRANCH_PREFIX}${first.id}`;
      const judgedFirst = await judgePushed(ctx, s, first, { branch, base: main, commitCount: 1 });
      if (!judgedFirst) return;
      ctx.check(judgedFirst.change.summary === 'First pass.\n\n- one line', `parent's summary ${show(judgedFirst.change.summary)}`);

      let parent = first;
      for (const [line, summary] of [['two', 'Second pass.'], ['three', '']] as const) {
        const result = summary ? `\nprintf '{"summary":"${summary}"}' > "$JOB_RESULT_FILE"` : '';
        const rework = await runJob(ctx, s, `echo ${line} >> story.txt\n${PRINT_PARENT}${result}`, parent.id);
        if (!rework) return;
        const judged = await judgePushed(ctx, s, rework, { branch, base: parent.change!.headCommit, commitCount: 1 });
        await judgeParentEnv(ctx, s.org, rework, parent);
        if (!judged) return;
        const isChild = gitIn(s.remote.dir, 'rev-list', '--parents', '-n', '1', judged.change.headCommit).toString().trim().split(' ')[1] === parent.change!.headCommit;
        ctx.check(isChild, isChild ? `${line}: a fast-forward from the parent's head` : `${line}: its commit's parent is not the parent job's head`);
        const marked = gitIn(s.remote.dir, 'for-each-ref', '--format=%(objectname)', `refs/agent-jobs/${rework.id}`).toString().trim();
        ctx.check(marked === judged.change.headCommit, marked === judged.change.headCommit ? `${line}: refs/agent-jobs/<job id> pushed with it` : `${line}: refs/agent-jobs/<job id> is at "${marked}", not the head`);
        parent = rework;
      }
      const story = gitIn(s.remote.dir, 'show', `${branch}:story.txt`).toString();
      ctx.check(story === 'one\ntwo\nthree\n', `the branch's story.txt ${show(story)}`);
    },
  },
  {
    id: 'rework-branch-moved',
    scenario: "a job's branch gets a commit pushed by someone else; then a rework of the job",
    expected: 'the rework fails with "branch moved: <branch> is at <new head>, the job revises <parent head>" without running its command; the branch stays where it was pushed',
    async run(ctx) {
      const s = await setup(ctx);
      const parent = await parentOnItsBranch(ctx, s);
      if (!parent) return;
      const { first, branch } = parent;
      const moved = pushAsSomeoneElse(ctx, s.remote, branch);
      const rework = await runJob(ctx, s, 'echo two >> story.txt', first.id);
      if (!rework) return;
      const reason = `branch moved: ${branch} is at ${moved}, the job revises ${first.change!.headCommit}`;
      ctx.check(rework.status === 'failed' && rework.failureReason === reason, rework.failureReason === reason ? `failed: "branch moved: ${branch} is at ${moved.slice(0, 10)}…, the job revises ${first.change!.headCommit.slice(0, 10)}…"` : `rework ${ctx.describe(rework)}; expected failed, "${reason}"`);
      ctx.check(ctx.runs(rework.id).length === 0, ctx.runs(rework.id).length === 0 ? 'its command never ran' : 'its command ran');
      ctx.check(headOf(s.remote, branch) === moved, headOf(s.remote, branch) === moved ? 'the branch is where it was pushed' : `the branch moved to ${headOf(s.remote, branch)}`);
    },
  },
  {
    id: 'rework-retried-after-lost-push',
    scenario: "a rework job retried after an earlier attempt of it pushed a commit onto the parent's branch (and refs/agent-jobs/<job id> with it) and was lost before reporting",
    expected: "succeeded, starting again from the parent's head (baseCommit = the parent's headCommit); the earlier attempt's commit replaced, not built on; refs/agent-jobs/<job id> at the new head",
    async run(ctx) {
      const s = await setup(ctx);
      const parent = await parentOnItsBranch(ctx, s);
      if (!parent) return;
      const { first, branch } = parent;
      // No agent while the remote is made to look as the lost attempt left it, so that the rework waits for the next.
      s.agent!.signal('SIGTERM');
      await s.agent!.exited();
      const jobId = await ctx.submit(s.org, 'echo two >> story.txt', { repoId: s.repoId, parentJobId: first.id });
      const lost = pushAsSomeoneElse(ctx, s.remote, branch);
      const marker = `refs/agent-jobs/${jobId}`;
      gitIn(s.remote.dir, 'update-ref', marker, lost);
      await ctx.agent(s.org);
      const rework = await ctx.untilEnded(s.org, jobId);
      if (!rework) return;
      const judged = await judgePushed(ctx, s, rework, { branch, base: first.change!.headCommit, commitCount: 1 });
      if (!judged) return;
      const kept = gitIn(s.remote.dir, 'rev-list', branch).toString().split('\n').includes(lost);
      ctx.check(!kept, kept ? "the earlier attempt's commit is still on the branch" : "the earlier attempt's commit is gone from the branch");
      const marked = gitIn(s.remote.dir, 'rev-parse', marker).toString().trim();
      ctx.check(marked === judged.change.headCommit, marked === judged.change.headCommit ? `${marker} is at the new head` : `${marker} is at ${marked}, the branch at ${judged.change.headCommit}`);
    },
  },
  {
    id: 'change-branch-replaced',
    scenario: `a job whose branch ${BRANCH_PREFIX}<job id> already holds an unrelated commit when it runs (as an earlier attempt may leave it)`,
    expected: "succeeded; the branch replaced by the job's change (headCommit = the remote branch, base = main's head); the commit found there is not in it",
    async run(ctx) {
      const s = await setup(ctx, { startAgent: false });
      const main = headOf(s.remote, 'main')!;
      // Submitted before any agent runs, so that the branch is there before the job can be run.
      const jobId = await ctx.submit(s.org, 'echo mine > mine.txt', { repoId: s.repoId });
      const branch = `${BRANCH_PREFIX}${jobId}`;
      const earlier = pushAsSomeoneElse(ctx, s.remote, branch, 'main');
      await ctx.agent(s.org);
      const job = await ctx.untilEnded(s.org, jobId);
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch, base: main, commitCount: 1 });
      if (!judged) return;
      const kept = gitIn(s.remote.dir, 'rev-list', branch).toString().split('\n').includes(earlier);
      ctx.check(!kept, kept ? 'the commit found on the branch is still in it' : 'the commit found on the branch is gone from it');
    },
  },
  {
    id: 'rework-of-no-change',
    scenario: 'a job that changes nothing; then a rework of it that writes a file and prints its environment',
    expected: `the rework runs as a backlog job would: pushed to ${BRANCH_PREFIX}<rework id> from main's head; JOB_PARENT_ID the parent, JOB_PARENT_BRANCH empty, JOB_PARENT_HEAD the parent's headCommit`,
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const first = await runJob(ctx, s, 'cat README.md');
      if (!first) return;
      if (!ctx.check(first.status === 'succeeded' && first.change?.changed === false, `parent ${ctx.describe(first)}, changed ${first.change?.changed}`)) return;
      const rework = await runJob(ctx, s, `echo fresh > fresh.txt\n${PRINT_PARENT}`, first.id);
      if (!rework) return;
      await judgePushed(ctx, s, rework, { branch: `${BRANCH_PREFIX}${rework.id}`, base: main, commitCount: 1 });
      await judgeParentEnv(ctx, s.org, rework, first);
    },
  },
  {
    id: 'change-binary',
    scenario: 'a job that adds a random binary file, appends to a binary and to a Latin-1 file, renames a file (and edits it), and adds a file with a non-ASCII name',
    expected: 'GET …/diff = git\'s pinned diff byte for byte (GIT binary patch, Latin-1 bytes, rename, quoted name); `git apply` of it on baseCommit gives headCommit\'s tree',
    async run(ctx) {
      const lines = Array.from({ length: 30 }, (_, i) => `line ${i + 1} of a file that moves\n`).join('');
      const s = await setup(ctx, { files: { 'README.md': 'hello\n', 'logo.bin': Buffer.from([0, 1, 2, 255, 254]), 'latin1.txt': Buffer.from('caf\xe9\n', 'latin1'), 'moved-from.txt': lines } });
      const main = headOf(s.remote, 'main')!;
      const prompt = [
        "printf 'caf\\351 cr\\350me br\\373l\\351e\\n' >> latin1.txt",
        'head -c 20000 /dev/urandom > blob.bin',
        "printf '\\377\\000' >> logo.bin",
        "mv moved-from.txt moved-to.txt && printf 'one more\\n' >> moved-to.txt",
        "printf 'na\\303\\257ve\\n' > \"na$(printf '\\303\\257')ve file.txt\"",
      ].join('\n');
      const job = await runJob(ctx, s, prompt);
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main });
      if (!judged) return;
      const { patch, change } = judged;
      const holds = {
        'GIT binary patch': patch.includes(Buffer.from('GIT binary patch')),
        'Latin-1 bytes': patch.includes(Buffer.from('cr\xe8me', 'latin1')),
        rename: patch.includes(Buffer.from('rename from moved-from.txt')),
        'quoted name': patch.includes(Buffer.from('"b/na\\303\\257ve file.txt"')),
      };
      const missing = Object.entries(holds).filter(([, ok]) => !ok).map(([what]) => what);
      ctx.check(missing.length === 0, missing.length === 0 ? `the patch holds ${Object.keys(holds).join(', ')}` : `git's patch lacks ${missing.join(', ')} (the row's own premise)`);

      const checkout = ctx.file('apply');
      gitIn(ctx.file(''), 'clone', '--quiet', '--no-checkout', s.remote.cloneUrl, checkout);
      gitIn(checkout, 'checkout', '--quiet', '--detach', change.baseCommit);
      const served = await download(s.org, job.id);
      try {
        execFileSync('git', ['apply', '--index', '-'], { cwd: checkout, input: served.body, stdio: ['pipe', 'ignore', 'pipe'] });
        const tree = gitIn(checkout, 'write-tree').toString().trim();
        const headTree = gitIn(s.remote.dir, 'rev-parse', `${change.headCommit}^{tree}`).toString().trim();
        ctx.check(tree === headTree, tree === headTree ? "git apply on the base gives the head's tree" : `git apply on the base gives tree ${tree}, the head's is ${headTree}`);
      } catch (err) {
        ctx.fail(`git apply of the served patch failed: ${truncate(String((err as { stderr?: Buffer }).stderr ?? err), 120)}`);
      }
    },
  },
  {
    id: 'change-big-patch',
    scenario: `a job whose patch is over one gRPC message (about 4.8 MB of new text; the server keeps up to ${settings.maxPatchBytes / MiB} MiB)`,
    expected: 'succeeded; patch.available, its bytes > 4 MiB; GET …/diff = git\'s pinned diff byte for byte',
    async run(ctx) {
      const s = await setup(ctx);
      const main = headOf(s.remote, 'main')!;
      const job = await runJob(ctx, s, 'head -c 3500000 /dev/urandom | base64 > big.txt');
      if (!job) return;
      const judged = await judgePushed(ctx, s, job, { branch: `${BRANCH_PREFIX}${job.id}`, base: main, commitCount: 1 });
      if (!judged) return;
      const size = judged.patch.byteLength;
      ctx.check(size > GRPC_MESSAGE_BYTES && size <= settings.maxPatchBytes, `git's patch is ${(size / MiB).toFixed(2)} MiB (the row's premise: between 4 and ${settings.maxPatchBytes / MiB} MiB)`);
    },
  },
  {
    id: 'change-patch-too-large',
    scenario: `a job whose patch is over the server's MAX_PATCH_BYTES (${settings.maxPatchBytes / MiB} MiB)`,
    expected: 'succeeded; the branch pushed; change.patch {bytes: the size of git\'s patch, available: false}; GET …/diff 409',
    async run(ctx) {
      const s = await setup(ctx);
      const job = await runJob(ctx, s, 'head -c 5000000 /dev/urandom | base64 > big.txt');
      if (!job) return;
      const change = job.change;
      if (!ctx.check(job.status === 'succeeded' && !!change, `job ${ctx.describe(job)}${change ? '' : ', no change'}`) || !change) return;
      const branch = `${BRANCH_PREFIX}${job.id}`;
      ctx.check(change.branch === branch && change.pushed && headOf(s.remote, branch) === change.headCommit, `branch ${change.branch}, pushed ${change.pushed}, remote head ${headOf(s.remote, branch) === change.headCommit ? 'is headCommit' : headOf(s.remote, branch)}`);
      const size = gitIn(s.remote.dir, ...PINNED_DIFF, change.baseCommit, change.headCommit).byteLength;
      ctx.check(size > settings.maxPatchBytes, `git's patch is ${(size / MiB).toFixed(2)} MiB (the row's premise: over ${settings.maxPatchBytes / MiB} MiB)`);
      ctx.check(change.patch.bytes === size && !change.patch.available, `patch ${show(change.patch)}${change.patch.bytes === size ? '' : `, git's is ${size} bytes`}`);
      const served = await download(s.org, job.id);
      ctx.check(served.status === 409, `GET …/diff ${served.status}`);
    },
  },
];
