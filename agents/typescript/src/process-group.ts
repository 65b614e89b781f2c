// A child process in a process group of its own, so that stopping it reaches every process it
// started (a shell, the tool, the tool's helpers) and no grandchild outlives the job.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { processGroupMembers } from './proc-table.js';

export interface ProcessExit {
  /** Exit status when the leader exited by itself; null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type SpawnResult = { ok: true } | { ok: false; error: Error };

/** How a stop ended: everyone left after SIGTERM, or SIGKILL was needed after the grace. */
export type StopResult = 'terminated' | 'killed';

const POLL_MS = 50;

export class ProcessGroup {
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles when the OS has started the leader, or could not. */
  readonly spawned: Promise<SpawnResult>;
  /** Resolves when the leader exits (only after a successful spawn). */
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  private stopping: Promise<StopResult> | undefined;
  private killedHard = false;

  constructor(file: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    // detached: the child calls setsid(), so its pid is also the id of a new process group.
    this.child = spawn(file, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.stdout = this.child.stdout!;
    this.stderr = this.child.stderr!;
    this.spawned = new Promise((resolve) => {
      this.child.once('spawn', () => resolve({ ok: true }));
      // 'on', not 'once': a later error (a failed kill) must not go unhandled and crash the agent.
      this.child.on('error', (error) => resolve({ ok: false, error }));
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
  }

  /** The process group id (the leader's pid); undefined if the spawn failed. */
  get pgid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Some process of the group is still alive. Zombies do not count: they are dead, only waiting
   * for a parent (often init, for orphaned grandchildren) to reap them, and signals cannot move them.
   */
  async isAlive(): Promise<boolean> {
    const pgid = this.child.pid;
    if (pgid === undefined) return false;
    try {
      process.kill(-pgid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
    }
    const members = await processGroupMembers(pgid);
    return members === undefined || members.some((member) => member.state !== 'Z');
  }

  /**
   * SIGTERM to the whole group, then SIGKILL to whatever is left after `graceMs`. The grace covers
   * the group, not only the leader: a shell that dies at once must not cut short the tool it ran.
   * Calling again while a stop is under way joins it; graceMs 0 turns it into an immediate kill.
   */
  stop(graceMs: number): Promise<StopResult> {
    if (graceMs <= 0) this.killNow();
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      if (graceMs > 0) this.signal('SIGTERM');
      const deadline = Date.now() + graceMs;
      while (!this.killedHard && Date.now() < deadline && (await this.isAlive())) await sleep(POLL_MS);
      if (!this.killedHard && (await this.isAlive())) this.killNow();
      return this.killedHard ? 'killed' : 'terminated';
    })();
    return this.stopping;
  }

  /** SIGKILL to the whole group, no grace. */
  killNow(): void {
    this.killedHard = true;
    this.signal('SIGKILL');
  }

  private signal(signal: NodeJS.Signals): void {
    const pgid = this.child.pid;
    if (pgid === undefined) return;
    try {
      process.kill(-pgid, signal);
    } catch (err) {
      // ESRCH: the group is already gone, which is what we wanted.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
