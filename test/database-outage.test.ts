// The database away for a moment (a restart, a failover, a cut link): requests that need it are
// refused as the contract says, 503 with Retry-After, nothing half-done, and the API works again
// as soon as the database is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, createOrg, createRepository } from './support/factories.js';
import { expectProblem } from './support/problems.js';
import { createTestDatabase, drivers, dropTestDatabases, startTestSystem, type TestSystem } from './support/system.js';
import { startCuttableProxy, type CuttableProxy } from './support/tcp-proxy.js';

// PGlite runs inside the server process: there is no link to cut.
describe.runIf(drivers.includes('postgres'))('the database unreachable', () => {
  let t: TestSystem;
  let link: CuttableProxy;

  beforeAll(async () => {
    const direct = new URL(await createTestDatabase());
    link = await startCuttableProxy(`${direct.hostname}:${direct.port || 5432}`);
    const throughLink = new URL(direct);
    throughLink.host = link.address;
    t = await startTestSystem({ driver: 'postgres', databaseUrl: throughLink.toString() });
  });
  afterAll(async () => {
    link?.heal();
    await t?.stop();
    await link?.close();
    await dropTestDatabases();
  });

  it('answers creating and cancelling a job with 503 and Retry-After while the database is away, and works again once it is back', async () => {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    const job = await createJob(org.member, org.orgId, { repoId: repo.id });
    const headers = { authorization: `Bearer ${org.tokens.member}`, 'content-type': 'application/json' };

    link.partition();
    const created = await t.fetch(`/v1/orgs/${org.orgId}/jobs`, { method: 'POST', headers, body: JSON.stringify({ prompt: 'while away', repoId: repo.id, queueType: 'backlog' }) });
    await expectProblem(created, 503, 'unavailable');
    expect(Number(created.headers.get('retry-after'))).toBeGreaterThan(0);
    const cancelled = await t.fetch(`/v1/orgs/${org.orgId}/jobs/${job.id}/cancel`, { method: 'POST', headers, body: '{}' });
    await expectProblem(cancelled, 503, 'unavailable');
    expect(Number(cancelled.headers.get('retry-after'))).toBeGreaterThan(0);

    link.heal();
    // Nothing of the refused requests was stored: the job is as it was, and no other job exists.
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: {} } });
    expect(data!.items.map((j) => [j.id, j.cancelRequestedAt])).toEqual([[job.id, null]]);
  });
});
