// Conversions between protobuf Durations (what the server sends) and the milliseconds timers use.
import type { Duration } from '../generated/google/protobuf/duration.js';

/** Milliseconds in a Duration; undefined when the field was not set, so callers can fall back. */
export function durationToMs(duration: Duration | undefined): number | undefined {
  if (!duration) return undefined;
  return duration.seconds * 1000 + Math.round(duration.nanos / 1_000_000);
}

/**
 * Parses a human duration from the command line: "500ms", "10s", "2m", "1h"; a bare number is
 * milliseconds, as in the server's settings, so one number means one thing everywhere.
 */
export function parseHumanDuration(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) return undefined;
  const amount = Number(match[1]);
  const unitMs = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(amount * unitMs);
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}
