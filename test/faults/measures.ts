// What a row measures of one job, from three outside sources: the runs its command recorded (what
// really ran and printed), the log a user downloads (what was stored), and the job as the API shows
// it at the end. Pure: no clock, no I/O, so each rule below can be read on its own.
import type { StoredLine } from './client.js';
import { parseNumberedLine, type Run } from './runs.js';

export interface JobMeasures {
  finalStatus: string;
  attempts: number;
  runs: number;
  /**
   * Numbered lines missing from the stored log. For the attempt the job ended with (once it has
   * ended), every line its runs printed must be stored. For any other attempt, only lines below its
   * highest stored line count: the lines after it may legitimately be gone, because that attempt was
   * ended (its agent killed with them unacknowledged, or its writes fenced once the job had moved
   * on), but a hole before a stored line is a dropped line.
   */
  linesLost: number;
  /** Stored copies of a numbered line beyond the first (same attempt, same number). */
  linesDuplicated: number;
  /**
   * Runs of the job alive at the same time as another run of it: each run lives from its start
   * record to its end record, or to its last printed line when it was killed outright (to within
   * one line interval), or to now if it still runs.
   */
  concurrentRuns: number;
  longestOverlapMs: number;
  /** Runs that wrote their end record with exit 0 while the job did not end succeeded with their attempt. */
  finishedRunsDiscarded: number;
  /** How long a run went on after the job was first seen in a terminal state (0 when none did). */
  ranAfterEndMs: number;
  /** Attempt changes in the stored log with no server line saying so (a system line naming the attempt). */
  unmarkedAttemptChanges: number;
  /** Lines of an earlier attempt stored after lines of a later one. */
  interleavedAttempts: number;
}

export interface MeasureInput {
  runs: Run[];
  /** lastAlive(run) as RunLedger computes it at the time of measuring. */
  lastAlive: (run: Run) => number;
  stored: StoredLine[];
  finalStatus: string;
  finalAttempt: number;
  /** The job has ended (its final attempt is the one whose every printed line must be stored). */
  ended: boolean;
  /** When the job was first seen terminal, if it was. */
  terminalAt: number | undefined;
}

export function measureJob(input: MeasureInput): JobMeasures {
  return {
    finalStatus: input.finalStatus,
    attempts: input.finalAttempt,
    runs: input.runs.length,
    ...countLines(input),
    ...countOverlaps(input.runs, input.lastAlive),
    finishedRunsDiscarded: input.runs.filter((run) => run.end?.code === 0 && !(input.finalStatus === 'succeeded' && input.finalAttempt === run.attempt)).length,
    ranAfterEndMs: input.terminalAt === undefined ? 0 : Math.max(0, ...input.runs.map((run) => input.lastAlive(run) - input.terminalAt!)),
    ...checkAttemptMarkers(input.stored),
  };
}

function countLines(input: MeasureInput): { linesLost: number; linesDuplicated: number } {
  const stored = new Map<number, Map<number, number>>();
  let linesDuplicated = 0;
  for (const line of input.stored) {
    if (line.stream !== 'stdout') continue;
    const numbered = parseNumberedLine(line.text);
    if (!numbered) continue;
    const ofAttempt = stored.get(numbered.attempt) ?? new Map<number, number>();
    const copies = (ofAttempt.get(numbered.line) ?? 0) + 1;
    if (copies > 1) linesDuplicated++;
    ofAttempt.set(numbered.line, copies);
    stored.set(numbered.attempt, ofAttempt);
  }

  const attempts = new Set<number>([...stored.keys(), ...input.runs.map((run) => run.attempt)]);
  let linesLost = 0;
  for (const attempt of attempts) {
    const storedLines = stored.get(attempt) ?? new Map<number, number>();
    const highestStored = Math.max(0, ...storedLines.keys());
    const highestPrinted = Math.max(0, ...input.runs.filter((run) => run.attempt === attempt).flatMap((run) => [...run.printed]));
    // Lines are printed in order, so printing line n means lines 1..n were printed too.
    const mustHave = input.ended && attempt === input.finalAttempt ? Math.max(highestStored, highestPrinted) : highestStored;
    for (let line = 1; line <= mustHave; line++) if (!storedLines.has(line)) linesLost++;
  }
  return { linesLost, linesDuplicated };
}

function countOverlaps(runs: Run[], lastAlive: (run: Run) => number): { concurrentRuns: number; longestOverlapMs: number } {
  const overlapping = new Set<Run>();
  let longestOverlapMs = 0;
  for (const a of runs) {
    for (const b of runs) {
      if (a === b) continue;
      const overlap = Math.min(lastAlive(a), lastAlive(b)) - Math.max(a.startedAt, b.startedAt);
      if (overlap > 0) {
        overlapping.add(a);
        longestOverlapMs = Math.max(longestOverlapMs, overlap);
      }
    }
  }
  return { concurrentRuns: overlapping.size, longestOverlapMs };
}

/**
 * The stored log must not run two attempts together unmarked: between the last numbered line of one
 * attempt and the first of the next there must be a server-written (`system`) line that names the
 * attempt, and no line of an earlier attempt may come after a later one's. The agent's own system
 * lines (preparing, cloning, the command) never contain the word "attempt", so they do not count.
 */
function checkAttemptMarkers(lines: StoredLine[]): { unmarkedAttemptChanges: number; interleavedAttempts: number } {
  let current: number | undefined;
  let markedSinceLast = false;
  let unmarkedAttemptChanges = 0;
  let interleavedAttempts = 0;
  for (const line of lines) {
    if (line.stream === 'system' && /attempt/i.test(line.text)) markedSinceLast = true;
    const numbered = line.stream === 'stdout' ? parseNumberedLine(line.text) : undefined;
    if (!numbered) continue;
    if (current !== undefined && numbered.attempt !== current) {
      if (numbered.attempt < current) interleavedAttempts++;
      else if (!markedSinceLast) unmarkedAttemptChanges++;
    }
    current = current === undefined ? numbered.attempt : Math.max(current, numbered.attempt);
    markedSinceLast = false;
  }
  return { unmarkedAttemptChanges, interleavedAttempts };
}
