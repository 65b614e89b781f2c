// The suite's child processes (server roles, the Temporal dev server, agents) as things a row can
// start, kill -9, freeze, thaw, stop and start again. Each runs in a process group of its own, so a
// signal reaches everything it started and a Ctrl-C at the terminal reaches only the suite, which
// then kills every child itself: nothing the suite started outlives it, whichever way it ends.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';

export interface ProcessSpec {
  name: string;
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  /** stdout and stderr go here (appended across restarts), so a failed row can be read afterwards. */
  logFile: string;
  /** Polled after start until true: the process serves what it is for. */
  ready: (process: ManagedProcess) => Promise<boolean>;
  /**
   * Starts made when the process exits before it is ready (1 unless set): for a program that picks
   * some of its ports itself and can lose one to another process before it binds it.
   */
  startAttempts?: number;
}

class ExitedBeforeReady extends Error {}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const live = new Set<ManagedProcess>();

export class ManagedProcess {
  private child: ChildProcess | undefined;
  private exit: Promise<ProcessExit> | undefined;
  private frozen = false;
  /** Offset of the log file when the current life began: readiness looks only at this life's output. */
  private logOffset = 0;

  constructor(readonly spec: ProcessSpec) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get paused(): boolean {
    return this.running && this.frozen;
  }

  /** Starts the process and waits until it is ready; returns how long that took. */
  async start(timeoutMs: number): Promise<number> {
    const attempts = this.spec.startAttempts ?? 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce(timeoutMs);
      } catch (err) {
        if (!(err instanceof ExitedBeforeReady) || attempt >= attempts) throw err;
      }
    }
  }

  private async startOnce(timeoutMs: number): Promise<number> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const startedAt = Date.now();
    this.logOffset = fs.existsSync(this.spec.logFile) ? fs.statSync(this.spec.logFile).size : 0;
    const out = fs.openSync(this.spec.logFile, 'a');
    fs.writeSync(out, `\n--- ${new Date().toISOString()} faults: starting ${this.name}\n`);
    try {
      this.child = spawn(this.spec.file, this.spec.args, { cwd: this.spec.cwd, env: this.spec.env, detached: true, stdio: ['ignore', out, out] });
    } finally {
      fs.closeSync(out);
    }
    this.frozen = false;
    const child = this.child;
    this.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.on('error', () => {});
    live.add(this);
    void this.exit.then(() => live.delete(this));

    const deadline = startedAt + timeoutMs;
    for (;;) {
      if (!this.running) throw new ExitedBeforeReady(`${this.name} exited before it was ready (see ${this.spec.logFile})`);
      if (await this.spec.ready(this).catch(() => false)) return Date.now() - startedAt;
      if (Date.now() > deadline) throw new Error(`${this.name} was not ready within ${timeoutMs} ms (see ${this.spec.logFile})`);
      await sleep(100);
    }
  }

  /** What this life of the process has written so far. */
  output(): string {
    const text = fs.existsSync(this.spec.logFile) ? fs.readFileSync(this.spec.logFile, 'utf8') : '';
    return text.slice(this.logOffset);
  }

  /** Sends a signal to the whole group; false when the process is not running. */
  signal(signal: NodeJS.Signals): boolean {
    const pid = this.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
    } catch {
      return false;
    }
    if (signal === 'SIGSTOP') this.frozen = true;
    if (signal === 'SIGCONT') this.frozen = false;
    return true;
  }

  /** kill -9, and waits until the OS has taken it away. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.signal('SIGKILL');
    await this.exit;
  }

  /** SIGTERM (a clean stop), then SIGKILL if it is still there after graceMs. */
  async stop(graceMs = 10_000): Promise<ProcessExit | undefined> {
    if (!this.running) return undefined;
    if (this.frozen) this.signal('SIGCONT');
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    const exit = await this.exit;
    clearTimeout(timer);
    return exit;
  }

  /** SIGSTOP: the process stays, its sockets stay open, and it answers nothing. */
  freeze(): boolean {
    return this.signal('SIGSTOP');
  }

  thaw(): void {
    this.signal('SIGCONT');
  }

  /** Resolves when the current life ends. */
  exited(): Promise<ProcessExit | undefined> {
    return this.exit ?? Promise.resolve(undefined);
  }
}

/** kill -9 of every child still running; synchronous, so it also works from an 'exit' handler. */
export function killEveryChild(): void {
  for (const child of live) child.signal('SIGKILL');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `condition` holds; returns false (not an exception) at the deadline, for rows to report. */
export async function pollUntil(condition: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}
