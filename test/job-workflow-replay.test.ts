// Jobs outlive deployments: a job queued or running when a new version of the worker starts goes on
// under the new workflow code, which replays the job's history so far and must make the same
// decisions it recorded. These histories were written by earlier versions of the job workflow (see
// fixtures/job-workflow-histories/README.md); each must replay under the current code without a
// nondeterminism error.
import fs from 'node:fs/promises';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, it, inject } from 'vitest';

const dir = path.join(import.meta.dirname, 'fixtures', 'job-workflow-histories');
const histories = (await fs.readdir(dir)).filter((name) => name.endsWith('.json')).sort();

describe('job workflow histories written by earlier versions', () => {
  it('are all here', () => {
    expect(histories).toEqual(['cancelled-while-running.json', 'running.json', 'start-timeout-requeued-then-failed.json', 'started-then-succeeded.json']);
  });

  it.each(histories)('replays %s under the current workflow code', async (name) => {
    const history: unknown = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8'));
    await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, name.replace(/\.json$/, ''));
  });
});
