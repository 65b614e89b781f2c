// A real git repository on disk, reachable by file:// URL, for agents to clone in tests.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export async function createGitRepository(files: Record<string, string> = { 'README.md': '# fixture\n' }): Promise<{ dir: string; cloneUrl: string; remove(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-repo-'));
  const git = (...args: string[]) =>
    execFileSync('git', args, {
      cwd: dir,
      stdio: 'ignore',
      env: { ...process.env, GIT_AUTHOR_NAME: 'fixture', GIT_AUTHOR_EMAIL: 'fixture@example.test', GIT_COMMITTER_NAME: 'fixture', GIT_COMMITTER_EMAIL: 'fixture@example.test' },
    });
  git('init', '--quiet', '--initial-branch=main');
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(dir, name), content);
  git('add', '.');
  git('commit', '--quiet', '-m', 'fixture');
  return { dir, cloneUrl: `file://${dir}`, remove: () => fs.rm(dir, { recursive: true, force: true }) };
}

const fixtureIdentity = { GIT_AUTHOR_NAME: 'fixture', GIT_AUTHOR_EMAIL: 'fixture@example.test', GIT_COMMITTER_NAME: 'fixture', GIT_COMMITTER_EMAIL: 'fixture@example.test' };

/** Runs git in `dir` and returns what it printed, as bytes (a patch need not be UTF-8). */
export function gitIn(dir: string, ...args: string[]): Buffer {
  return execFileSync('git', args, { cwd: dir, env: { ...process.env, ...fixtureIdentity }, maxBuffer: 256 * 1024 * 1024 });
}

/**
 * A bare repository, as a hosted remote is, seeded with one commit of `files` on main, reachable by
 * file:// URL. With `refusePushes`, a pre-receive hook refuses every push with that message; with
 * `holdPushesUntil` too, it first waits for that file to exist (a push that is still running).
 */
export async function createBareRepository(
  files: Record<string, string | Buffer> = { 'README.md': '# fixture\n' },
  options: { refusePushes?: string; holdPushesUntil?: string } = {},
): Promise<{ dir: string; cloneUrl: string; remove(): Promise<void> }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-remote-'));
  const dir = path.join(root, 'remote.git');
  const seed = path.join(root, 'seed');
  gitIn(root, 'init', '--quiet', '--bare', '--initial-branch=main', dir);
  gitIn(root, 'init', '--quiet', '--initial-branch=main', seed);
  for (const [name, content] of Object.entries(files)) await fs.writeFile(path.join(seed, name), content);
  gitIn(seed, 'add', '.');
  gitIn(seed, 'commit', '--quiet', '-m', 'fixture');
  gitIn(seed, 'push', '--quiet', dir, 'main');
  await fs.rm(seed, { recursive: true, force: true });
  if (options.refusePushes !== undefined) {
    const hook = path.join(dir, 'hooks', 'pre-receive');
    const hold = options.holdPushesUntil ? `while [ ! -e '${options.holdPushesUntil}' ]; do sleep 0.1; done\n` : '';
    await fs.writeFile(hook, `#!/bin/sh\n${hold}echo ${JSON.stringify(options.refusePushes)} >&2\nexit 1\n`);
    await fs.chmod(hook, 0o755);
  }
  return { dir, cloneUrl: `file://${dir}`, remove: () => fs.rm(root, { recursive: true, force: true }) };
}
