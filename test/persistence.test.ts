// The embedded defaults keep everything across a restart: PGlite and the Temporal dev server both
// write into DATA_DIR, so a process that comes back finds its jobs and their workflows where they were.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/temporal/dev-server.js';
import { createJob, createOrg, createRepository, waitForJob, waitForWorkflow } from './support/factories.js';
import { startTestSystem } from './support/system.js';

describe('embedded defaults across a restart', () => {
  const dataDirs: string[] = [];
  afterAll(async () => {
    for (const dir of dataDirs) await fs.rm(dir, { recursive: true, force: true });
  });

  it('keeps repositories, jobs, their workflows and dev tokens', async () => {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-restart-'));
    dataDirs.push(dataDir);
    const temporalPort = await freePort();

    const first = await startTestSystem({ driver: 'pglite', dataDir, embeddedTemporalPort: temporalPort });
    const org = await createOrg(first);
    const repo = await createRepository(org.admin, org.orgId);
    const waiting = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'still here after a restart?' });
    await first.stop();

    await expect(fs.stat(path.join(dataDir, 'temporal', 'dev.db'))).resolves.toBeTruthy();
    await expect(fs.stat(path.join(dataDir, 'pglite'))).resolves.toBeTruthy();

    const second = await startTestSystem({ driver: 'pglite', dataDir, embeddedTemporalPort: temporalPort });
    try {
      // Tokens minted before the restart still verify: the dev signing key lives in DATA_DIR.
      const member = second.client(org.tokens.member);
      const { data: job } = await member.GET('/v1/orgs/{orgId}/jobs/{jobId}', { params: { path: { orgId: org.orgId, jobId: waiting.id } } });
      expect(job).toMatchObject({ id: waiting.id, status: 'queued', prompt: 'still here after a restart?' });

      // The workflow survived too: it still answers a cancellation and ends the job.
      const description = await waitForWorkflow(second, waiting.id);
      expect(description.status.name).toBe('RUNNING');
      await member.POST('/v1/orgs/{orgId}/jobs/{jobId}/cancel', { params: { path: { orgId: org.orgId, jobId: waiting.id } } });
      const cancelled = await waitForJob(member, org.orgId, waiting.id, (j) => j.status === 'cancelled', 30_000);
      expect(cancelled.events.map((e) => e.type)).toEqual(['created', 'cancel_requested', 'cancelled']);
    } finally {
      await second.stop();
    }
  });
});
