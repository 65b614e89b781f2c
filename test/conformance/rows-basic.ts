// Authentication and the basic job: what an agent does with its token, the environment and working
// directory it gives the command, and how it reports the command's end and a clone that fails.
import { createHash, randomBytes } from 'node:crypto';
import type { Row, RowContext } from './kit.js';
import { processAlive } from './kit.js';
import { requeueAfterMs, settings } from './settings.js';

/** Waits for the agent to exit on its own; undefined (with a failure) if it is still running. */
async function exitOf(ctx: RowContext, agent: { exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> }): Promise<number | string | undefined> {
  const exit = await Promise.race([agent.exited(), new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), settings.exitWithinMs))]);
  if (exit === 'running') {
    ctx.fail(`still running ${settings.exitWithinMs / 1000} s later (retrying?)`);
    return undefined;
  }
  return exit?.code ?? exit?.signal ?? undefined;
}

const ENV_NAMES = ['JOB_ID', 'JOB_ATTEMPT', 'JOB_PROMPT', 'JOB_QUEUE', 'JOB_REVISES_JOB_ID', 'REPO_DIR', 'REPO_URL', 'REPO_BRANCH', 'REPO_NAME', 'AGENT_TOKEN'] as const;

export const basicRows: Row[] = [
  {
    id: 'auth-missing-token',
    scenario: 'started with no AGENT_TOKEN (and no --token)',
    expected: 'exits 2 (USAGE: a required setting is missing) without opening a connection',
    async run(ctx) {
      const org = await ctx.org();
      const agent = await ctx.agent(org, { token: null, waitConnected: false });
      const code = await exitOf(ctx, agent);
      if (code !== undefined) ctx.check(code === 2, `exited ${code}`);
      ctx.check(agent.connectionsMade() === 0, `${agent.connectionsMade()} connection(s) to the server`);
    },
  },
  {
    id: 'auth-unknown-token',
    scenario: 'started with a well-formed token the server does not know',
    expected: 'connects, is refused (UNAUTHENTICATED), exits 1 without retrying',
    async run(ctx) {
      const org = await ctx.org();
      const agent = await ctx.agent(org, { token: `ajt_${randomBytes(24).toString('base64url')}`, waitConnected: false });
      const code = await exitOf(ctx, agent);
      if (code !== undefined) ctx.check(code === 1, `exited ${code}`);
      // Without a connection the refusal was never heard: an agent that exits 1 for any reason would pass.
      const made = agent.connectionsMade();
      ctx.check(made >= 1, `${made} connection(s) to the server before it exited`);
      ctx.check((await ctx.agentRecord(org, agent.name)) === undefined, (await ctx.agentRecord(org, agent.name)) ? 'the server welcomed it' : 'never welcomed');
    },
  },
  {
    id: 'auth-revoked',
    scenario: 'its token revoked while it runs a job; a second agent (another token) is started once it has exited',
    expected: 'exits 1; its command is stopped before the job runs again; the job is requeued and succeeds on the second agent as attempt 2',
    async run(ctx) {
      const org = await ctx.org();
      const pidFile = ctx.file('pids');
      const first = await ctx.agent(org);
      const firstId = (await ctx.agentRecord(org, first.name))?.id;
      const jobId = await ctx.submit(org, `if [ "$JOB_ATTEMPT" = 1 ]; then sleep 300 & echo "$$ $!;" > ${pidFile}; echo first; wait; else echo second; fi`);
      if (!(await ctx.until(org, jobId, (j) => j.status === 'running', 'running'))) return;
      const pids = await ctx.pids(pidFile);
      const { response } = await org.api.POST('/v1/orgs/{orgId}/agent-tokens/{tokenId}/revoke', { params: { path: { orgId: org.orgId, tokenId: org.agentTokenId } } });
      if (!ctx.check(response.status < 300, `revoke answered ${response.status}`)) return;
      const code = await exitOf(ctx, first);
      if (code !== undefined) ctx.check(code === 1, `agent exited ${code}`);
      // The agent had no way to give the job back: the server requeues it under the lease rule.
      const alive = await ctx.untilGone(pids, requeueAfterMs);
      ctx.check(alive.length === 0, alive.length === 0 ? 'its command was stopped' : `its command (pids ${alive.join(' ')}) still ran ${requeueAfterMs / 1000} s after the revoke`);
      const second = await ctx.agent(org, { token: (await ctx.agentToken(org)).secret });
      const run2 = await ctx.untilRun(jobId, 2);
      if (run2) ctx.check(pids.every((pid) => !processAlive(pid)), pids.some(processAlive) ? 'attempt 1 still alive when attempt 2 started' : 'attempt 1 gone before attempt 2 started');
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      const secondId = (await ctx.agentRecord(org, second.name))?.id;
      ctx.check(done.status === 'succeeded' && done.attempt === 2, `job ${ctx.describe(done)}`);
      ctx.check(done.agentId !== null && done.agentId === secondId && done.agentId !== firstId, done.agentId === secondId ? 'ran on the second agent' : 'did not run on the second agent');
    },
  },
  {
    id: 'job-environment',
    scenario: 'a job whose command prints its environment and working directory',
    expected: 'JOB_ID, JOB_ATTEMPT=1, JOB_PROMPT, JOB_QUEUE=backlog, REPO_DIR, REPO_URL, REPO_BRANCH, REPO_NAME as the job and repository say; JOB_REVISES_JOB_ID empty; AGENT_TOKEN absent; cwd = REPO_DIR = the clone',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const prompt = [
        ...ENV_NAMES.filter((name) => name !== 'JOB_PROMPT').map((name) => `printf '%s=%s\\n' ${name} "\${${name}-<unset>}"`),
        `printf 'PROMPT_SHA256=%s\\n' "$(printf %s "$JOB_PROMPT" | sha256sum | cut -d' ' -f1)"`,
        `printf 'CWD=%s\\n' "$(pwd -P)"`,
        `printf 'REPO_DIR_REAL=%s\\n' "$(cd "$REPO_DIR" 2>/dev/null && pwd -P)"`,
        `printf 'README=%s\\n' "$(head -n 1 README.md 2>/dev/null)"`,
      ].join('\n');
      const jobId = await ctx.submit(org, prompt);
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'succeeded', `job ${ctx.describe(done)}`);
      const seen = new Map<string, string>();
      for (const line of await ctx.stdout(org, jobId)) {
        const eq = line.indexOf('=');
        if (eq > 0) seen.set(line.slice(0, eq), line.slice(eq + 1));
      }
      const want: Record<string, string> = {
        JOB_ID: jobId,
        JOB_ATTEMPT: '1',
        JOB_QUEUE: 'backlog',
        REPO_URL: ctx.shared.cloneUrl,
        REPO_BRANCH: org.repoBranch,
        REPO_NAME: org.repoName,
        PROMPT_SHA256: createHash('sha256').update(prompt).digest('hex'),
        README: ctx.shared.readme,
      };
      const wrong = Object.entries(want).filter(([name, value]) => seen.get(name) !== value).map(([name]) => `${name}=${seen.get(name) ?? '(not printed)'}`);
      const revises = seen.get('JOB_REVISES_JOB_ID');
      if (revises !== '' && revises !== '<unset>') wrong.push(`JOB_REVISES_JOB_ID=${revises}`);
      if (seen.get('AGENT_TOKEN') !== '<unset>') wrong.push(`AGENT_TOKEN is ${seen.get('AGENT_TOKEN') === '' ? 'set (empty)' : 'set'}`);
      const repoDir = seen.get('REPO_DIR');
      if (!repoDir || repoDir === '<unset>' || !seen.get('REPO_DIR_REAL')) wrong.push(`REPO_DIR=${repoDir ?? '(not printed)'} is not a directory`);
      else if (seen.get('CWD') !== seen.get('REPO_DIR_REAL')) wrong.push(`cwd ${seen.get('CWD')} is not REPO_DIR ${repoDir}`);
      ctx.check(wrong.length === 0, wrong.length === 0 ? 'every variable as expected; cwd is the clone (README read)' : `wrong: ${wrong.join(', ')}`);
    },
  },
  {
    id: 'signal-dispositions',
    scenario: 'a job whose command reports which signals it was started with ignored (SigIgn of a process it execs)',
    expected: 'SIGHUP, SIGINT, SIGPIPE and SIGTERM at their defaults, as a shell would start it (an ignored signal is inherited by every process the command starts, and cannot be trapped again)',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const done = await ctx.untilEnded(org, await ctx.submit(org, `grep '^SigIgn:' /proc/self/status`));
      if (!done) return;
      ctx.check(done.status === 'succeeded', `job ${ctx.describe(done)}`);
      const line = (await ctx.stdout(org, done.id)).find((l) => l.startsWith('SigIgn:'));
      if (!line) return ctx.fail('the command printed no SigIgn line');
      const mask = BigInt(`0x${line.slice('SigIgn:'.length).trim()}`);
      const ignored = Object.entries({ SIGHUP: 1, SIGINT: 2, SIGPIPE: 13, SIGTERM: 15 })
        .filter(([, n]) => (mask >> BigInt(n - 1)) & 1n)
        .map(([name]) => name);
      ctx.check(ignored.length === 0, ignored.length === 0 ? 'none of them ignored' : `started with ${ignored.join(', ')} ignored`);
    },
  },
  {
    id: 'exit-0',
    scenario: 'a job whose command exits 0',
    expected: 'succeeded, exitCode 0, attempt 1',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const done = await ctx.untilEnded(org, await ctx.submit(org, 'echo fine; exit 0'));
      if (done) ctx.check(done.status === 'succeeded' && done.exitCode === 0 && done.attempt === 1, ctx.describe(done));
    },
  },
  {
    id: 'exit-n',
    scenario: 'a job whose command exits 7',
    expected: 'failed, exitCode 7, attempt 1',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const done = await ctx.untilEnded(org, await ctx.submit(org, 'echo about to fail; exit 7'));
      if (done) ctx.check(done.status === 'failed' && done.exitCode === 7 && done.attempt === 1, ctx.describe(done));
    },
  },
  {
    id: 'clone-failure',
    scenario: "a job whose repository's branch does not exist",
    expected: 'failed with no exit code and a failureReason; the command never runs',
    async run(ctx) {
      const org = await ctx.org();
      const repoId = await ctx.repository(org, { name: 'no-such-branch', defaultBranch: 'no-such-branch' });
      await ctx.agent(org);
      const jobId = await ctx.submit(org, 'echo should never run', { repoId });
      const done = await ctx.untilEnded(org, jobId);
      if (!done) return;
      ctx.check(done.status === 'failed' && done.exitCode === null && !!done.failureReason?.trim(), ctx.describe(done));
      ctx.check(ctx.runs(jobId).length === 0, ctx.runs(jobId).length === 0 ? 'command never ran' : 'the command ran');
    },
  },
];
