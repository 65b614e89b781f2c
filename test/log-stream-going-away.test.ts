// A replica that shuts down tells its log viewers so: close 1001 "going away" with the after to resume
// from, which a client reconnects with (to another replica) and misses nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPopulatedOrg } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { dropTestDatabases, startTestSystem, type TestSystem } from './support/system.js';

describe('a log viewer of a replica that shuts down', () => {
  // Started before the test (under the hooks' longer bound): the test times the shutdown, not a start on a busy machine.
  let t: TestSystem;
  let org: Awaited<ReturnType<typeof createPopulatedOrg>>;
  let stopped = false;
  beforeAll(async () => {
    t = await startTestSystem({ driver: 'pglite' });
    org = await createPopulatedOrg(t);
  });
  afterAll(async () => {
    if (!stopped) await t?.stop();
    await dropTestDatabases();
  });

  it('is closed with 1001 and told where to resume', async () => {
    const viewer = new LogStreamViewer(t.url, org.orgId, org.job.id, { token: org.tokens.member });
    await viewer.until((v) => v.statuses.length > 0);
    stopped = true;
    await t.stop();
    expect(await viewer.closed).toMatchObject({ code: 1001, reason: expect.stringContaining('after=0') });
  });
});
