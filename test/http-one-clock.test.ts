// A job's timestamps and its events' come from one clock, the database's: a cancel's answer never says
// it was updated before the cancel was requested, and each event's time is the job's for that change.
import { describe, expect, it } from 'vitest';
import { createPopulatedOrg } from './support/factories.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('one clock for a job on %s', (driver) => {
  const t = useTestSystem({ driver });

  it("answers a cancel with updatedAt at or after cancelRequestedAt, both the time of the job's cancel_requested event", async () => {
    const org = await createPopulatedOrg(t);
    const jobPath = `/v1/orgs/${org.orgId}/jobs/${org.job.id}`;
    const headers = { authorization: `Bearer ${org.tokens.member}`, 'content-type': 'application/json' };
    const response = await t.fetch(`${jobPath}/cancel`, { method: 'POST', headers, body: JSON.stringify({ reason: 'superseded' }) });
    expect(response.status).toBe(202);
    const cancelled = (await response.json()) as { cancelRequestedAt: string; updatedAt: string };
    expect(Date.parse(cancelled.updatedAt)).toBeGreaterThanOrEqual(Date.parse(cancelled.cancelRequestedAt));
    const detail = (await (await t.fetch(jobPath, { headers })).json()) as { createdAt: string; cancelRequestedAt: string; events: { type: string; at: string }[] };
    expect(detail.cancelRequestedAt).toBe(cancelled.cancelRequestedAt);
    expect(detail.events.find((e) => e.type === 'cancel_requested')?.at).toBe(detail.cancelRequestedAt);
    expect(detail.events.find((e) => e.type === 'created')?.at).toBe(detail.createdAt);
  });
});
