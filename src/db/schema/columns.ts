import { timestamp } from 'drizzle-orm/pg-core';

/** Millisecond precision, so a JavaScript Date round-trips exactly (keyset cursors rely on it). */
export const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date', precision: 3 });
