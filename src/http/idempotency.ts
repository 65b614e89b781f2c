// The Idempotency-Key header on the wire (openapi.yaml, IdempotencyKey): the IETF draft makes it a
// Structured Field String (`"…"`); a bare value is taken too, and both spell the same key.

/** The key a validated header value names, or undefined when the request has none. */
export function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return header.length >= 2 && header.startsWith('"') && header.endsWith('"') ? header.slice(1, -1) : header;
}

/** The header that marks an answer as a replay of the first request with the key. */
export function replayHeader(replayed: boolean): { 'Idempotent-Replayed'?: 'true' } {
  return replayed ? { 'Idempotent-Replayed': 'true' } : {};
}
