import { describe, expect, it } from 'vitest';
import { AppError } from '../errors.js';
import { bindCursor, cursorScope, decodeCursor, decodeNameCursor, encodeCursor, encodeNameCursor, unbindCursor } from './cursor.js';

describe('list cursors', () => {
  it('round-trips the position of the last item shown', () => {
    const position = { createdAt: new Date('2026-11-25T10:00:00.123Z'), id: '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b' };
    expect(decodeCursor(encodeCursor(position))).toEqual(position);
  });

  it('accepts the last millisecond of year 9999 and refuses the one after, which PostgreSQL cannot read', () => {
    const id = '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b';
    const last = new Date('9999-12-31T23:59:59.999Z');
    expect(decodeCursor(encodeCursor({ createdAt: last, id }))).toEqual({ createdAt: last, id });
    expect(() => decodeCursor(Buffer.from(`${last.getTime() + 1}.${id}`).toString('base64url'))).toThrow(
      expect.objectContaining({ statusCode: 400, fieldErrors: [{ pointer: '/query/cursor', message: 'is not a valid cursor' }] }),
    );
    expect(() => decodeCursor(Buffer.from(`999999999999999.${id}`).toString('base64url'))).toThrow(AppError);
  });

  it.each(['', 'not a cursor', 'AAAA', Buffer.from('12.not-a-uuid').toString('base64url'), Buffer.from('x.0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b').toString('base64url')])(
    'rejects %j as an invalid argument pointing at the cursor',
    (cursor) => {
      try {
        decodeCursor(cursor);
        expect.unreachable('decodeCursor accepted a forged cursor');
      } catch (err) {
        expect(err).toBeInstanceOf(AppError);
        expect((err as AppError).statusCode).toBe(400);
        expect((err as AppError).fieldErrors[0]?.pointer).toBe('/query/cursor');
      }
    },
  );
});

describe('name cursors', () => {
  it('round-trips a name with dots and dashes and the id', () => {
    const position = { name: 'web.app-v2_1', id: '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b' };
    expect(decodeNameCursor(encodeNameCursor(position))).toEqual(position);
  });

  it.each([
    '',
    'not a cursor',
    encodeCursor({ createdAt: new Date('2026-11-25T10:00:00.123Z'), id: '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b' }),
    Buffer.from('0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b.').toString('base64url'),
    Buffer.from('0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b.a\u0000b').toString('base64url'),
  ])('rejects %j, a cursor of another list among them', (cursor) => {
    expect(() => decodeNameCursor(cursor)).toThrow(expect.objectContaining({ statusCode: 400, fieldErrors: [{ pointer: '/query/cursor', message: 'is not a valid cursor' }] }));
  });

  it('is refused by the newest-first lists, whose cursors it cannot stand for', () => {
    expect(() => decodeCursor(encodeNameCursor({ name: 'web-app', id: '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b' }))).toThrow(AppError);
  });
});

describe('cursors bound to the listing that issued them', () => {
  const org = '0b6f5a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b';
  const position = encodeCursor({ createdAt: new Date('2026-11-25T10:00:00.123Z'), id: '1c7f6a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b' });
  const scope = cursorScope('jobs', org, { status: ['running', 'queued'], queueType: 'backlog', repoId: undefined });

  it('gives the position back to the same listing, however its filters are written', () => {
    const bound = bindCursor(position, scope);
    expect(bound).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(unbindCursor(bound, cursorScope('jobs', org.toUpperCase(), { queueType: 'backlog', status: ['queued', 'running', 'queued'] }))).toBe(position);
  });

  it.each([
    ['another organisation', cursorScope('jobs', '2d8f6a9e-8f7c-4e2a-9d1b-3c4d5e6f7a8b', { status: ['running', 'queued'], queueType: 'backlog' })],
    ['other filters', cursorScope('jobs', org, { status: ['running'], queueType: 'backlog' })],
    ['a filter fewer', cursorScope('jobs', org, { status: ['running', 'queued'] })],
    ['another list', cursorScope('repositories', org)],
  ])('refuses it for %s as not a valid cursor', (_, other) => {
    expect(() => unbindCursor(bindCursor(position, scope), other)).toThrow(
      expect.objectContaining({ statusCode: 400, fieldErrors: [{ pointer: '/query/cursor', message: 'is not a valid cursor' }] }),
    );
  });

  it('refuses a cursor edited by hand, or one without its check', () => {
    const bound = bindCursor(position, scope);
    const edited = `${bound.slice(0, 3)}${bound[3] === 'A' ? 'B' : 'A'}${bound.slice(4)}`;
    // The last: as many characters as a check, more bytes (Schemathesis found it as a 500).
    for (const cursor of [edited, position, bound.slice(-22), 'x', `${position}${'é'.repeat(22)}`]) expect(() => unbindCursor(cursor, scope), cursor).toThrow(AppError);
  });
});
