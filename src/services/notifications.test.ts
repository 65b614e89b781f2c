import fs from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { codecs, type BusEvents, type Channel } from './notifications.js';

const migrations = new URL('../db/migrations/', import.meta.url);

describe('the event bus', () => {
  it('knows every channel the migrations notify, so a trigger never announces on a channel nobody reads', async () => {
    const files = (await fs.readdir(migrations)).filter((f) => f.endsWith('.sql'));
    const notified = new Set<string>();
    for (const file of files) {
      for (const match of (await fs.readFile(new URL(file, migrations), 'utf8')).matchAll(/pg_notify\('([a-z_]+)'/g)) notified.add(match[1]!);
    }
    expect(notified.size).toBeGreaterThan(0);
    for (const channel of notified) expect(Object.keys(codecs)).toContain(channel);
  });

  it('reads the payloads the triggers write', () => {
    const jobId = '3f1c9a52-5a8e-4c1e-9a53-1d2c3b4a5e6f';
    // migration 0001: batch.job_id::text || ':' || batch.last_seq::text, and json_build_object('jobId', …, 'status', …)
    expect(codecs.log_appended.decode(`${jobId}:42`)).toEqual({ jobId, lastSeq: 42 });
    expect(codecs.job_changed.decode(JSON.stringify({ jobId, status: 'running' }))).toEqual({ jobId, status: 'running' });
  });

  it('reads back what it writes on every channel, and drops what it cannot read', () => {
    const id = '3f1c9a52-5a8e-4c1e-9a53-1d2c3b4a5e6f';
    const samples: { [C in Channel]: BusEvents[C] } = {
      job_queued: { orgId: id, jobId: id },
      job_changed: { jobId: id, status: 'queued' },
      log_appended: { jobId: id, lastSeq: 7 },
      agent_cancel: { jobId: id, agentId: id, attempt: 2, reason: 'cancelled by a@b', graceMs: 0 },
      agent_drop: { jobId: id, agentId: id, attempt: 1, reason: 'requeued' },
      agent_token_revoked: { tokenId: id },
      agent_session_opened: { agentId: id, sessionId: id },
    };
    for (const channel of Object.keys(samples) as Channel[]) {
      const codec = codecs[channel] as { encode(e: unknown): string; decode(raw: string): unknown };
      expect(codec.decode(codec.encode(samples[channel]))).toEqual(samples[channel]);
      expect(codec.decode('{"not":"this"}')).toBeUndefined();
      expect(codec.decode('not json')).toBeUndefined();
    }
  });
});
