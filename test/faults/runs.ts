// What actually ran, seen from outside the system: every job's command is this suite's script,
// which prints numbered lines and appends a record of each run to one file (start, one tick per
// printed line, end with the exit status), with the JOB_ID and JOB_ATTEMPT the agent gave it and
// the wall clock. Concurrent runs, lines printed and finished runs are read from here, never from
// the server's own account.
import fs from 'node:fs';
import path from 'node:path';

export interface Run {
  jobId: string;
  attempt: number;
  /** The shell's pid; one run is one shell (an attempt run twice shows as two runs). */
  pid: number;
  pgid: number;
  startedAt: number;
  /** Numbered lines this run printed (a tick is written after the line, so each is surely printed). */
  printed: Set<number>;
  lastTickAt: number | undefined;
  /** Exit status and time, when the shell got to write them (not after kill -9). */
  end: { code: number; at: number } | undefined;
}

export interface JobCommand {
  /** The agent's --exec. */
  exec: string;
  /** The job's prompt, which carries the command's parameters. */
  prompt(lines: number): string;
}

/** Writes the script into `dir`; every run appends to `recordsFile`. */
export function writeJobCommand(dir: string, recordsFile: string, lineIntervalS: number): JobCommand & { ledger: RunLedger } {
  const script = path.join(dir, 'faults-job.sh');
  // Signals become exits so the EXIT trap writes the end record; only kill -9 leaves a run without
  // one, and then its last tick says when it was last alive (to within one line interval).
  fs.writeFileSync(
    script,
    `#!/usr/bin/env bash
# A fault-suite job: prints numbered lines and records the run in ${recordsFile}.
records=${JSON.stringify(recordsFile)}
lines=10
[[ $JOB_PROMPT =~ lines=([0-9]+) ]] && lines=\${BASH_REMATCH[1]}
now() { date +%s%N; }
read -r _ _ _ _ pgid _ < /proc/$$/stat
echo "start $JOB_ID $JOB_ATTEMPT $$ $pgid $(now)" >> "$records"
trap 'status=$?; echo "end $JOB_ID $JOB_ATTEMPT $$ $status $(now)" >> "$records"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
# A retry prints five times faster: the rows only need the first attempt to be slow enough for the
# fault to land in the middle of it, and the suite is shorter for it.
interval=${lineIntervalS}
(( JOB_ATTEMPT > 1 )) && interval=$(awk "BEGIN { print $interval / 5 }")
for ((i = 1; i <= lines; i++)); do
  echo "a$JOB_ATTEMPT line $i"
  echo "tick $JOB_ID $JOB_ATTEMPT $$ $i $(now)" >> "$records"
  sleep "$interval"
done
exit 0
`,
    { mode: 0o755 },
  );
  return { exec: `exec bash ${script}`, prompt: (lines) => `fault suite: print lines=${lines}`, ledger: new RunLedger(recordsFile, script) };
}

/** The numbered line a run prints, as it appears in the stored log. */
export function parseNumberedLine(text: string): { attempt: number; line: number } | undefined {
  const match = /^a(\d+) line (\d+)$/.exec(text);
  return match ? { attempt: Number(match[1]), line: Number(match[2]) } : undefined;
}

/** The records file and the script that writes it; `script` tells the suite's runs from other processes. */
export class RunLedger {
  constructor(
    readonly recordsFile: string,
    readonly script: string,
  ) {}

  /** Every run recorded so far, by job id. */
  runs(): Map<string, Run[]> {
    const text = fs.existsSync(this.recordsFile) ? fs.readFileSync(this.recordsFile, 'utf8') : '';
    const byPid = new Map<number, Run>();
    for (const line of text.split('\n')) {
      const [kind, jobId, attemptText, pidText, a, b] = line.split(' ');
      // A line being appended while it is read may be cut short: take only whole ones.
      if (!kind || !jobId || ![attemptText, pidText, a, b].every((field) => field !== undefined && /^\d+$/.test(field))) continue;
      const pid = Number(pidText);
      if (!a || !b) continue;
      if (kind === 'start') {
        byPid.set(pid, { jobId, attempt: Number(attemptText), pid, pgid: Number(a), startedAt: nsToMs(b), printed: new Set(), lastTickAt: undefined, end: undefined });
        continue;
      }
      const run = byPid.get(pid);
      if (!run || run.jobId !== jobId) continue;
      if (kind === 'tick') {
        run.printed.add(Number(a));
        run.lastTickAt = nsToMs(b);
      } else if (kind === 'end') {
        run.end = { code: Number(a), at: nsToMs(b) };
      }
    }
    const byJob = new Map<string, Run[]>();
    for (const run of byPid.values()) byJob.set(run.jobId, [...(byJob.get(run.jobId) ?? []), run]);
    return byJob;
  }

  runsOf(jobId: string): Run[] {
    return this.runs().get(jobId) ?? [];
  }

  /** The run's shell still exists, is not a zombie, and is the suite's script (pids are reused). */
  isAlive(run: Run): boolean {
    try {
      const cmdline = fs.readFileSync(`/proc/${run.pid}/cmdline`, 'utf8');
      const stat = fs.readFileSync(`/proc/${run.pid}/stat`, 'utf8');
      const state = stat.charAt(stat.lastIndexOf(')') + 2);
      return cmdline.includes(this.script) && state !== 'Z';
    } catch {
      return false;
    }
  }

  /** The last moment a run is known to have been alive; `now` while it still is. */
  lastAlive(run: Run, now: number): number {
    if (run.end) return run.end.at;
    if (this.isAlive(run)) return now;
    return run.lastTickAt ?? run.startedAt;
  }

  /** Kills the process groups of runs still alive (left by a killed agent, or by a failed row). */
  killLive(): number {
    let killed = 0;
    for (const runs of this.runs().values()) {
      for (const run of runs) {
        if (!this.isAlive(run)) continue;
        try {
          process.kill(-run.pgid, 'SIGKILL');
          killed++;
        } catch {
          // Gone meanwhile.
        }
      }
    }
    return killed;
  }
}

/** Timestamps are nanoseconds since the epoch; the suite's clock is milliseconds. */
function nsToMs(ns: string): number {
  return Number(BigInt(ns) / 1_000_000n);
}
