// The breaking-change gate for openapi.yaml (scripts/check-openapi-breaking.sh, run by npm run
// lint:contracts): in a scratch repository, a commit that removes an operation fails it, the same
// commit passes once the change is listed as deliberate, and a compatible change passes as it is.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);

function spec(paths: string[], limitMaximum = 100): string {
  const operations = paths
    .map((p) => `  ${p}:\n    get:\n      operationId: get${p.replace(/\W/g, '')}\n      parameters:\n        - name: limit\n          in: query\n          schema:\n            type: integer\n            maximum: ${limitMaximum}\n      responses:\n        '200':\n          description: ok\n`)
    .join('');
  return `openapi: 3.1.0\ninfo:\n  title: gate\n  version: 1.0.0\npaths:\n${operations}`;
}

describe('the openapi.yaml breaking-change gate', () => {
  let repo: string;
  const git = (...args: string[]) => exec('git', ['-c', 'user.email=gate@example.test', '-c', 'user.name=gate', ...args], { cwd: repo });
  const gate = async () => {
    try {
      const { stderr, stdout } = await exec(path.join(repo, 'scripts/check-openapi-breaking.sh'), [], { cwd: repo });
      return { code: 0, output: stdout + stderr };
    } catch (err) {
      const failed = err as { code: number; stdout: string; stderr: string };
      return { code: failed.code, output: failed.stdout + failed.stderr };
    }
  };

  beforeAll(async () => {
    repo = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-gate-'));
    await fs.mkdir(path.join(repo, 'scripts'));
    await fs.copyFile(path.resolve('scripts/check-openapi-breaking.sh'), path.join(repo, 'scripts/check-openapi-breaking.sh'));
    await fs.copyFile(path.resolve('.openapi-deliberate-breaking.txt'), path.join(repo, '.openapi-deliberate-breaking.txt'));
    await fs.writeFile(path.join(repo, 'openapi.yaml'), spec(['/a', '/b']));
    await git('init', '-q');
    await git('add', '.');
    await git('commit', '-q', '-m', 'v1');
  });
  afterAll(async () => {
    await fs.rm(repo, { recursive: true, force: true });
  });

  it('fails a commit that removes an operation, and names the change', async () => {
    await fs.writeFile(path.join(repo, 'openapi.yaml'), spec(['/a']));
    await git('commit', '-q', '-am', 'drop /b');
    const result = await gate();
    expect(result.code, result.output).toBe(1);
    expect(result.output).toMatch(/api-path-removed/);
    expect(result.output).toMatch(/1 breaking change\(s\) found/);
  });

  it('passes the same commit once the change is listed as deliberate', async () => {
    // The failing gate prints the lines to add.
    const stdout = (await gate()).output;
    const lines = stdout.split('\n').filter((l) => /^error at /.test(l));
    expect(lines.length).toBeGreaterThan(0);
    await fs.appendFile(path.join(repo, '.openapi-deliberate-breaking.txt'), `\n# ${new Date().toISOString().slice(0, 10)}: /b was never used\n${lines.join('\n')}\n`);
    const result = await gate();
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/no breaking change left unlisted/);
  });

  it('passes an uncommitted compatible change, comparing with HEAD', async () => {
    await git('commit', '-q', '-am', 'list the removal');
    await fs.writeFile(path.join(repo, 'openapi.yaml'), spec(['/a', '/c'], 200));
    const result = await gate();
    expect(result.code, result.output).toBe(0);
    expect(result.output).toMatch(/against HEAD \(/);
    // ...while tightening a bound is breaking.
    await fs.writeFile(path.join(repo, 'openapi.yaml'), spec(['/a'], 50));
    expect((await gate()).code).toBe(1);
  });
});
