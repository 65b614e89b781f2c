// Opaque keyset cursors: the sort key of the last item a page showed, (createdAt, id) for newest-first
// lists and (name, id) for lists by name. Keyset rather than offset, so rows inserted while a client
// pages never shift what it sees next.
import { createHash, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

export interface KeysetPosition {
  createdAt: Date;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodeCursor(position: KeysetPosition): string {
  return Buffer.from(`${position.createdAt.getTime()}.${position.id}`, 'utf8').toString('base64url');
}

/**
 * The last millisecond of year 9999. A later time has no RFC 3339 form (toISOString writes "+010000-…"),
 * which PostgreSQL refuses; no row was created after it, so no cursor we issued holds one.
 */
const LATEST_CURSOR_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const invalid = () => new InvalidArgumentError('The cursor is not one this API returned', [{ pointer: '/query/cursor', message: 'is not a valid cursor' }]);

export function decodeCursor(cursor: string): KeysetPosition {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const [millis, id, ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split('.');
  if (rest.length > 0 || !millis || !id || !/^\d{1,15}$/.test(millis) || Number(millis) > LATEST_CURSOR_TIME || !UUID.test(id)) throw invalid();
  return { createdAt: new Date(Number(millis)), id: id.toLowerCase() };
}

export interface NamePosition {
  name: string;
  id: string;
}

/** The id comes first: it has a fixed shape, so the name may hold any character, dots included. */
export function encodeNameCursor(position: NamePosition): string {
  return Buffer.from(`${position.id}.${position.name}`, 'utf8').toString('base64url');
}

export function decodeNameCursor(cursor: string): NamePosition {
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  const dot = decoded.indexOf('.');
  const id = decoded.slice(0, dot);
  const name = decoded.slice(dot + 1);
  // Control characters (NUL above all, which PostgreSQL text refuses) are in no name we store.
  if (dot < 0 || !UUID.test(id) || name.length === 0 || /[\u0000-\u001f\u007f]/.test(name)) throw invalid();
  return { name, id: id.toLowerCase() };
}

/**
 * What a cursor was issued for: the list, the organisation and the filters. A cursor is only good for
 * the listing that made it; the page size may change between pages.
 */
export function cursorScope(list: string, orgId: string, filters: Record<string, string | readonly string[] | undefined> = {}): string {
  const canonical = Object.entries(filters)
    .filter((entry): entry is [string, string | readonly string[]] => entry[1] !== undefined)
    .map(([name, value]) => [name, typeof value === 'string' ? value.toLowerCase() : [...new Set(value)].sort()] as const)
    .sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify([list, orgId.toLowerCase(), canonical]);
}

/** base64url of a 128-bit digest. */
const TAG_LENGTH = 22;

function tag(position: string, scope: string): string {
  return createHash('sha256').update(scope).update('\0').update(position).digest().subarray(0, 16).toString('base64url');
}

/**
 * Binds a position cursor to the scope it was issued for: a check over both is appended, so the
 * cursor of another organisation's listing, of other filters or of another list, or one edited by
 * hand, is refused as not valid rather than positioning a page by a foreign row. It is a check, not a
 * signature: a client able to compute it gains nothing, since every read stays within its organisation.
 */
export function bindCursor(position: string, scope: string): string {
  return `${position}${tag(position, scope)}`;
}

/** The position a bound cursor holds, if it was issued for `scope`. */
export function unbindCursor(cursor: string, scope: string): string {
  const position = cursor.slice(0, -TAG_LENGTH);
  if (cursor.length <= TAG_LENGTH || !timingSafeEqualText(cursor.slice(-TAG_LENGTH), tag(position, scope))) throw invalid();
  return position;
}

function timingSafeEqualText(a: string, b: string): boolean {
  // Compare bytes, not characters: a cursor may hold any text, and timingSafeEqual throws on unequal lengths.
  const [x, y] = [Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')];
  return x.length === y.length && timingSafeEqual(x, y);
}
