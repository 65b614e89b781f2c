// A replica that shuts down tells its log viewers so: close 1001 "going away" with the after to resume
// from, which a client reconnects with (to another replica) and misses nothing.
import { describe, expect, it } from 'vitest';
import { createPopulatedOrg } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { dropTestDatabases, startTestSystem } from './support/system.js';

describe('a log viewer of a replica that shuts down', () => {
  it('is closed with 1001 and told where to resume', async () => {
    const t = await startTestSystem({ driver: 'pglite' });
    let stopped = false;
    try {
      const org = await createPopulatedOrg(t);
      const viewer = new LogStreamViewer(t.url, org.orgId, org.job.id, { token: org.tokens.member });
      await viewer.until((v) => v.statuses.length > 0);
      stopped = true;
      await t.stop();
      expect(await viewer.closed).toMatchObject({ code: 1001, reason: expect.stringContaining('after=0') });
    } finally {
      if (!stopped) await t.stop();
      await dropTestDatabases();
    }
  });
});
