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
