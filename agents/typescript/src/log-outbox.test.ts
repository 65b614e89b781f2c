import { describe, expect, it } from 'vitest';
import { LogStream } from '../generated/agent/v1/agent.js';
import { LogOutbox } from './log-outbox.js';

const wide = { maxLines: 1000, maxBytes: 1024 * 1024 };

function outboxWith(lines: number, limits = { maxUnackedLines: 1000, maxUnackedBytes: 1024 * 1024 }): LogOutbox {
  const outbox = new LogOutbox('job-1', 2, limits);
  for (let i = 1; i <= lines; i++) outbox.append(LogStream.LOG_STREAM_STDOUT, `line ${i}`);
  return outbox;
}

const texts = (outbox: LogOutbox, limits = wide): string[] => outbox.nextBatch(limits)?.lines.map((line) => line.text) ?? [];

describe('log outbox', () => {
  it('numbers lines from 1 and batches them in order, up to the line limit', () => {
    const outbox = outboxWith(5);
    const first = outbox.nextBatch({ maxLines: 2, maxBytes: 1024 });
    expect(first).toMatchObject({ jobId: 'job-1', attempt: 2, firstSeq: 1 });
    expect(first?.lines.map((line) => line.text)).toEqual(['line 1', 'line 2']);
    expect(outbox.nextBatch({ maxLines: 2, maxBytes: 1024 })?.firstSeq).toBe(3);
    expect(outbox.nextBatch({ maxLines: 2, maxBytes: 1024 })?.lines.map((line) => line.text)).toEqual(['line 5']);
    expect(outbox.nextBatch({ maxLines: 2, maxBytes: 1024 })).toBeUndefined();
    expect(outbox.allSent).toBe(true);
    expect(outbox.lastSeq).toBe(5);
  });

  it('keeps a batch under the byte limit, but never leaves a single long line behind', () => {
    const outbox = new LogOutbox('job-1', 1);
    outbox.append(LogStream.LOG_STREAM_STDOUT, 'x'.repeat(600));
    outbox.append(LogStream.LOG_STREAM_STDOUT, 'y'.repeat(600));
    expect(outbox.nextBatch({ maxLines: 100, maxBytes: 1000 })?.lines).toHaveLength(1);
    expect(outbox.nextBatch({ maxLines: 100, maxBytes: 100 })?.lines).toHaveLength(1);
  });

  it('keeps lines until they are acknowledged, and acks only move forward', () => {
    const outbox = outboxWith(5);
    outbox.nextBatch(wide);
    outbox.ack(3);
    expect(outbox.unackedLines).toBe(2);
    outbox.ack(1);
    expect(outbox.ackedSeq).toBe(3);
    expect(outbox.unackedLines).toBe(2);
    outbox.ack(99); // more than was ever produced: clamp, never go negative
    expect(outbox.ackedSeq).toBe(5);
    expect(outbox.unackedLines).toBe(0);
    expect(outbox.unackedBytes).toBe(0);
  });

  it('resends everything unacknowledged, in order, after a rewind', () => {
    const outbox = outboxWith(6);
    outbox.nextBatch({ maxLines: 4, maxBytes: 1024 });
    outbox.ack(2);
    outbox.rewind();
    const resent = outbox.nextBatch(wide);
    expect(resent?.firstSeq).toBe(3);
    expect(resent?.lines.map((line) => line.text)).toEqual(['line 3', 'line 4', 'line 5', 'line 6']);
  });

  it('holds lines back once maxInFlightLines await their ack, and sends them as acks arrive', () => {
    const outbox = outboxWith(10);
    const limits = { maxLines: 3, maxBytes: 1024, maxInFlightLines: 4 };
    expect(outbox.nextBatch(limits)?.lines).toHaveLength(3);
    // One more line fits in flight, not a whole batch.
    expect(outbox.nextBatch(limits)?.firstSeq).toBe(4);
    expect(outbox.sentSeq).toBe(4);
    expect(outbox.nextBatch(limits)).toBeUndefined();
    outbox.ack(3);
    const next = outbox.nextBatch(limits);
    expect(next?.firstSeq).toBe(5);
    expect(next?.lines).toHaveLength(3);
    outbox.ack(7);
    expect(texts(outbox, limits)).toEqual(['line 8', 'line 9', 'line 10']);
    expect(outbox.allSent).toBe(true);
  });

  it('skips what the server already stored when its ack runs ahead of what this stream sent', () => {
    const outbox = outboxWith(6);
    outbox.rewind();
    outbox.ack(4);
    expect(outbox.nextBatch(wide)?.firstSeq).toBe(5);
    expect(texts(outbox)).toEqual([]);
  });

  it('reports itself full at the line cap and wakes the reader once an ack makes room', async () => {
    const outbox = outboxWith(3, { maxUnackedLines: 3, maxUnackedBytes: 1024 * 1024 });
    expect(outbox.isFull).toBe(true);
    let woke = false;
    const room = outbox.whenRoom().then(() => {
      woke = true;
    });
    await Promise.resolve();
    expect(woke).toBe(false);
    // Lines are never dropped: the cap stops the reader, not append.
    outbox.append(LogStream.LOG_STREAM_SYSTEM, 'the agent always gets its say');
    expect(outbox.unackedLines).toBe(4);
    outbox.nextBatch(wide);
    outbox.ack(2);
    await room;
    expect(woke).toBe(true);
    expect(outbox.isFull).toBe(false);
  });

  it('is full at the byte cap too', () => {
    const outbox = new LogOutbox('job-1', 1, { maxUnackedLines: 1000, maxUnackedBytes: 200 });
    outbox.append(LogStream.LOG_STREAM_STDERR, 'z'.repeat(150));
    expect(outbox.isFull).toBe(false);
    outbox.append(LogStream.LOG_STREAM_STDERR, 'z'.repeat(150));
    expect(outbox.isFull).toBe(true);
  });
});
