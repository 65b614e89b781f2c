// Watching a job's log live over the WebSocket of openapi.yaml, with real WebSocket clients and a
// scripted agent over real gRPC: backlog then live tail with no gap and no duplicate, resuming with
// `after`, the end frame, slow viewers closed without harm to anyone else, and every refusal as a
// documented close code.
import { afterEach, describe, expect, it } from 'vitest';
import { createOrg } from './support/factories.js';
import { LogStreamViewer, seqProblems } from './support/log-stream-client.js';
import { closeClients, type ProtocolClient } from './support/protocol-client.js';
import { runningJob } from './support/running-job.js';
import { metric } from './support/metrics.js';
import { drivers, useTestSystem } from './support/system.js';

describe.each(drivers)('live job logs on %s', (driver) => {
  // A small buffer, so that a viewer that stops reading overflows it quickly.
  const t = useTestSystem({ driver, env: { LOG_STREAM_BUFFER_BYTES: String(256 * 1024) } });
  const clients: ProtocolClient[] = [];
  afterEach(() => {
    expect(closeClients(clients)).toEqual([]);
  });

  it('gives a late viewer the backlog then the live tail, with no gap and no duplicate, then the end', async () => {
    const run = await runningJob(t, clients);
    await run.print(3000);
    const viewer = run.viewer();
    await viewer.opened;
    expect(viewer.protocol).toBe('agent-jobs.v1');
    // Lines keep arriving while the backlog is being read.
    await run.print(3000, { batch: 100 });
    await viewer.until((v) => v.lastSeq === 6000);
    await run.print(500, { batch: 7 });
    await run.finish();

    const { code } = await viewer.closed;
    expect(code).toBe(1000);
    expect(seqProblems(viewer.lines, 1, 6500)).toEqual([]);
    expect(viewer.lines[41]).toMatchObject({ seq: 42, stream: 'stdout', text: 'line 42' });
    expect(viewer.statuses.map((s) => s.status)).toEqual(['running', 'succeeded']);
    expect(viewer.end).toEqual({ type: 'end', status: 'succeeded', exitCode: 0, failureReason: null, lastSeq: 6500, change: null });
    expect(viewer.frames.at(-1)?.type).toBe('end');
  });

  it('resumes exactly where a dropped connection left off, when given the last seq it had as after', async () => {
    const run = await runningJob(t, clients);
    const first = run.viewer();
    await first.opened;
    await run.print(1200, { batch: 50 });
    await first.until((v) => v.lastSeq >= 400);
    first.cut();
    await first.closed;
    await run.print(800);

    const second = run.viewer({ after: first.lastSeq });
    await second.until((v) => v.lastSeq === 2000);
    await run.finish();
    await second.closed;
    expect(seqProblems([...first.lines, ...second.lines], 1, 2000)).toEqual([]);
    expect(second.end?.lastSeq).toBe(2000);
  });

  it('sends the whole log and the end frame of a job that already ended, and only the end when after is its last line', async () => {
    const run = await runningJob(t, clients);
    await run.print(1500);
    await run.finish();

    const whole = run.viewer();
    expect((await whole.closed).code).toBe(1000);
    expect(seqProblems(whole.lines, 1, 1500)).toEqual([]);
    expect(whole.statuses.map((s) => s.status)).toEqual(['succeeded']);
    expect(whole.end).toMatchObject({ status: 'succeeded', lastSeq: 1500 });

    const caughtUp = run.viewer({ after: 1500 });
    expect((await caughtUp.closed).code).toBe(1000);
    expect(caughtUp.lines).toEqual([]);
    expect(caughtUp.end).toMatchObject({ status: 'succeeded', lastSeq: 1500 });
  });

  it('lets many viewers watch one job, each getting every line once', async () => {
    const run = await runningJob(t, clients);
    await run.print(700);
    const viewers = Array.from({ length: 20 }, (_, i) => run.viewer({ after: i * 10 }));
    await Promise.all(viewers.map((v) => v.opened));
    await run.print(1300, { batch: 20 });
    await run.finish();
    for (const [i, viewer] of viewers.entries()) {
      expect((await viewer.closed).code).toBe(1000);
      expect(seqProblems(viewer.lines, i * 10 + 1, 2000)).toEqual([]);
    }
  });

  it('cuts off a viewer that stops reading as too slow (4408, when it can still read the close) and lets it go, while another viewer and the agent carry on', async () => {
    const run = await runningJob(t, clients);
    const stuck = run.viewer({ paused: true });
    const reader = run.viewer();
    await Promise.all([stuck.opened, reader.opened]);
    await reader.until((v) => v.statuses.length > 0);
    // A socket opens at the upgrade; the server counts it as a viewer once its access check answers,
    // and the paused one cannot tell us when that was.
    await expect.poll(() => metric(t, 'log_stream_viewers')).toBe(2);
    const tooSlowBefore = await metric(t, 'log_stream_too_slow_total');

    // Far more than loopback's socket buffers and the server's per-viewer limit hold.
    await run.print(30_000, { batch: 500, width: 1000 });
    await reader.until((v) => v.lastSeq === 30_000);
    await expect.poll(() => metric(t, 'log_stream_too_slow_total'), { timeout: 15_000 }).toBe(tooSlowBefore + 1);
    await expect.poll(() => metric(t, 'log_stream_viewers'), { timeout: 15_000 }).toBe(1);

    // The stuck tab wakes up: it reads what reached it, learns it was closed, and resumes by `after`.
    stuck.resume();
    // The server closed it with 4408 (counted above); a tab that stopped reading may find only the
    // broken connection (1006) when the close frame could not reach it.
    const { code } = await stuck.closed;
    expect([4408, 1006]).toContain(code);
    expect(seqProblems(stuck.lines, 1, stuck.lastSeq)).toEqual([]);
    const resumed = run.viewer({ after: stuck.lastSeq });
    await resumed.until((v) => v.lastSeq === 30_000);
    await run.finish();
    expect((await resumed.closed).code).toBe(1000);
    expect((await reader.closed).code).toBe(1000);
    expect(seqProblems([...stuck.lines, ...resumed.lines], 1, 30_000)).toEqual([]);
  });

  describe('refusals, as close codes a browser can read', () => {
    it('closes with 4401 without a token, and with an expired one', async () => {
      const run = await runningJob(t, clients);
      const anonymous = new LogStreamViewer(t.url, run.org.orgId, run.job.id);
      expect(await anonymous.closed).toMatchObject({ code: 4401 });
      const expiredToken = await t.token({ orgs: { [run.org.orgId]: 'Member' }, expiresInSeconds: -60 });
      const expired = new LogStreamViewer(t.url, run.org.orgId, run.job.id, { token: expiredToken });
      expect(await expired.closed).toMatchObject({ code: 4401, reason: expect.stringMatching(/token/i) });
      expect(anonymous.frames).toEqual([]);
    });

    it('closes with 4404 for a job of another organisation, exactly as for a job that does not exist', async () => {
      const run = await runningJob(t, clients);
      const stranger = await createOrg(t);
      const elsewhere = new LogStreamViewer(t.url, run.org.orgId, run.job.id, { token: stranger.tokens.member });
      const ownOrgPath = new LogStreamViewer(t.url, stranger.orgId, run.job.id, { token: stranger.tokens.member });
      const missing = new LogStreamViewer(t.url, run.org.orgId, '6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b', { token: run.org.tokens.member });
      for (const viewer of [elsewhere, ownOrgPath, missing]) {
        expect((await viewer.closed).code).toBe(4404);
        expect(viewer.frames).toEqual([]);
      }
    });

    it('closes with 4400 for an invalid after or job id, naming the parameter', async () => {
      const run = await runningJob(t, clients);
      for (const query of ['after=-1', 'after=abc', 'after=1.5']) {
        const viewer = new LogStreamViewer(t.url, run.org.orgId, run.job.id, { token: run.org.tokens.member, query });
        expect(await viewer.closed).toMatchObject({ code: 4400, reason: expect.stringContaining('/query/after') });
      }
      const badId = new LogStreamViewer(t.url, run.org.orgId, 'not-a-uuid', { token: run.org.tokens.member });
      expect(await badId.closed).toMatchObject({ code: 4400, reason: expect.stringContaining('/params/jobId') });
    });

    it('accepts the token in the Authorization header from clients that can set one', async () => {
      const run = await runningJob(t, clients);
      await run.print(10);
      const viewer = new LogStreamViewer(t.url, run.org.orgId, run.job.id, { token: run.org.tokens.member, tokenInHeader: true });
      await viewer.until((v) => v.lastSeq === 10);
      viewer.cut();
    });

    it('answers a plain GET without an upgrade with a 426 problem', async () => {
      const run = await runningJob(t, clients);
      const response = await t.fetch(`/v1/orgs/${run.org.orgId}/jobs/${run.job.id}/logs/stream`, { headers: { authorization: `Bearer ${run.org.tokens.member}` } });
      expect(response.status).toBe(426);
      expect(await response.json()).toMatchObject({ code: 'upgrade_required' });
    });
  });

  it('downloads the whole log as text, one "<at> <stream> <text>" line per log line', async () => {
    const run = await runningJob(t, clients);
    await run.print(12_000, { batch: 500 });
    await run.finish();
    const response = await t.fetch(`/v1/orgs/${run.org.orgId}/jobs/${run.job.id}/logs/download`, { headers: { authorization: `Bearer ${run.org.tokens.member}` } });
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="job-${run.job.id}.log"`);
    const lines = (await response.text()).split('\n');
    expect(lines.pop()).toBe('');
    expect(lines).toHaveLength(12_000);
    expect(lines[11_999]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z stdout line 12000$/);
  });
});
