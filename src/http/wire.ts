// Domain objects carry Dates; the wire carries RFC 3339 strings. One mapped type keeps that
// conversion honest for every resource instead of a hand-written copy per field.
export type Wire<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K];
};

export function toWire<T extends object>(value: T): Wire<T> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) out[key] = field instanceof Date ? field.toISOString() : field;
  return out as Wire<T>;
}
