// Opaque keyset cursors for newest-first lists: the (createdAt, id) of the last item a page showed.
// Keyset rather than offset, so rows inserted while a client pages never shift what it sees next.
import { InvalidArgumentError } from '../errors.js';

export interface KeysetPosition {
  createdAt: Date;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodeCursor(position: KeysetPosition): string {
  return Buffer.from(`${position.createdAt.getTime()}.${position.id}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): KeysetPosition {
  const invalid = () => new InvalidArgumentError('The cursor is not one this API returned', [{ pointer: '/query/cursor', message: 'is not a valid cursor' }]);
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const [millis, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('.');
  if (rest.length > 0 || !millis || !id || !/^\d{1,15}$/.test(millis) || !UUID.test(id)) throw invalid();
  return { createdAt: new Date(Number(millis)), id: id.toLowerCase() };
}
