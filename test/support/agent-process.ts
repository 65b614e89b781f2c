// The reference agent as a real child process, as a user would start it (`npm run agent`).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface AgentProcess {
  child: ChildProcess;
  stateDir: string;
  /** Everything the agent printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code (or the signal) once the agent exits. */
  exited: Promise<number | NodeJS.Signals>;
  kill(signal?: NodeJS.Signals): void;
  /** Stops the agent if it still runs and removes its folders. */
  dispose(): Promise<void>;
}

export interface AgentOptions {
  /** host:port of the gRPC endpoint. */
  server: string;
  token: string;
  /** The shell command run for every job (--exec). */
  exec: string;
  name?: string;
  labels?: string[];
  capacity?: number;
  /** Kept by dispose(); a fresh folder, removed by dispose(), otherwise. */
  stateDir?: string;
  env?: Record<string, string>;
}

export async function startAgent(options: AgentOptions): Promise<AgentProcess> {
  const stateDir = options.stateDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-agent-')));
  const args = ['--import', 'tsx', path.join(root, 'agents/typescript/src/main.ts'), '--server', options.server, '--exec', options.exec, '--state-dir', stateDir, '--heartbeat', '500ms'];
  if (options.name) args.push('--name', options.name);
  if (options.labels?.length) args.push('--labels', options.labels.join(','));
  if (options.capacity) args.push('--capacity', String(options.capacity));
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...options.env, AGENT_TOKEN: options.token }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | NodeJS.Signals>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'SIGKILL')));
  return {
    child,
    stateDir,
    output: () => output,
    exited,
    kill: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async dispose() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      if (!options.stateDir) await fs.rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Polls until `condition` holds, for what an agent process does in its own time; fails after timeoutMs. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, message: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** True while a process with this id exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
