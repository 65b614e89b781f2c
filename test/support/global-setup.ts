// Once per test run: one real Temporal dev server (in memory) for every suite, and the workflow
// bundle built once instead of once per test system.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { freePort, startTemporalDevServer } from '../../src/temporal/dev-server.js';
import { workflowsPath } from '../../src/temporal/worker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundlePath: string;
    /** Empty when no PostgreSQL server is configured (then only PGlite suites run). */
    databaseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const databaseUrl = process.env.DATABASE_URL ?? '';
  if (process.env.CI && !databaseUrl) throw new Error('CI runs the PostgreSQL suites: set DATABASE_URL (see .ci/run)');
  if (process.env.CI && !process.env.TEMPORAL_TEST_SERVER_PATH) throw new Error('CI runs the time-skipping suites: set TEMPORAL_TEST_SERVER_PATH (see .ci/run)');

  const scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-test-'));
  const server = await startTemporalDevServer({
    dataDir: scratch,
    port: await freePort(),
    cliPath: process.env.TEMPORAL_CLI_PATH,
    log: (line) => console.log(line),
  });
  console.log(`Temporal dev server for tests at ${server.address} (${server.source})`);

  const bundle = await bundleWorkflowCode({ workflowsPath, logger: { trace() {}, debug() {}, info() {}, warn: console.warn, error: console.error, log() {} } });
  const workflowBundlePath = path.join(scratch, 'workflow-bundle.js');
  await fs.writeFile(workflowBundlePath, bundle.code);

  project.provide('temporalAddress', server.address);
  project.provide('workflowBundlePath', workflowBundlePath);
  project.provide('databaseUrl', databaseUrl);

  return async () => {
    await server.stop();
    await fs.rm(scratch, { recursive: true, force: true });
  };
}
