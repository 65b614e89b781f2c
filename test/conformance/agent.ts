// The agent under test as a real process, started from any command line (`--agent`): the kit
// appends the reference agent's CLI (--server --exec --state-dir --name --capacity --heartbeat
// [--labels], and a row's own such as --git-author) and passes the token in AGENT_TOKEN, as the
// README tells operators to. Nothing here knows which agent it is: readiness is read from the
// server (listAgents), never from the agent's output. Each agent reaches the gateway through a TCP proxy of its own, so a row can cut its link.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ManagedProcess, type ProcessExit } from '../faults/processes.js';
import { startProxy, type Proxy } from '../faults/proxy.js';
import { settings } from './settings.js';

export interface AgentUnderTest {
  name: string;
  stateDir: string;
  /** The agent's network link: sever() cuts it while both ends live, setTargets() moves it. */
  link: Proxy;
  process: ManagedProcess;
  /** TCP connections the agent has opened to its server address so far (its attempts to connect). */
  connectionsMade(): number;
  /** The agent's own pid (the command is exec'd, so not a shell's). */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Sends a signal to the agent's own pid only, as `kill <pid>` does: not to its process group. */
  signal(signal: NodeJS.Signals): boolean;
  /** kill -9 of the agent alone (what it started lives on, as after a crash); waits until it is gone. */
  crash(): Promise<void>;
  exited(): Promise<ProcessExit | undefined>;
  /** Starts the agent again with the same arguments (and state directory). */
  restart(): Promise<void>;
  /** What the agent printed, for the kit's log when a row fails. */
  output(): string;
  dispose(): Promise<void>;
}

export interface AgentSpec {
  /** The --agent command line. */
  command: string;
  name: string;
  /** AGENT_TOKEN; undefined leaves it out of the environment. */
  token: string | undefined;
  exec: string;
  gateways: string[];
  stateDir: string;
  logFile: string;
  capacity?: number;
  labels?: string[];
  /** More of the reference agent's flags (its USAGE), after the kit's own: --git-author, say. */
  extraArgs?: string[];
  /** Polled until true after start; by default the agent counts as started at once. */
  ready?: () => Promise<boolean>;
}

/** The kit's arguments, as the reference agent's USAGE names them. */
function cliArgs(spec: AgentSpec, server: string): string[] {
  const args = [
    '--server', server,
    '--exec', spec.exec,
    '--state-dir', spec.stateDir,
    '--name', spec.name,
    '--capacity', String(spec.capacity ?? 1),
    '--heartbeat', `${settings.heartbeatIntervalMs}ms`,
  ];
  if (spec.labels?.length) args.push('--labels', spec.labels.join(','));
  if (spec.extraArgs) args.push(...spec.extraArgs);
  return args;
}

/**
 * A forwarder in front of the link that counts the connections made through it: test/faults/proxy.ts
 * counts only open ones, and "it tried, was refused, and did not try again" needs the total.
 */
async function countingForwarder(target: string): Promise<{ address: string; count(): number; close(): Promise<void> }> {
  const port = Number(target.slice(target.lastIndexOf(':') + 1));
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((client) => {
    count++;
    const upstream = net.connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    count: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export async function launchAgent(spec: AgentSpec): Promise<AgentUnderTest> {
  const link = await startProxy(spec.gateways);
  const counter = await countingForwarder(link.address);
  fs.mkdirSync(spec.stateDir, { recursive: true });
  fs.mkdirSync(path.dirname(spec.logFile), { recursive: true });
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined && !entry[0].startsWith('AGENT_')));
  if (spec.token !== undefined) env.AGENT_TOKEN = spec.token;
  const proc = new ManagedProcess({
    name: `agent ${spec.name}`,
    // The command may carry quotes and assignments; `exec` makes the agent the process the kit
    // signals, rather than a shell in front of it.
    file: '/bin/sh',
    args: ['-c', `exec ${spec.command} "$@"`, 'agent', ...cliArgs(spec, counter.address)],
    env,
    cwd: process.cwd(),
    logFile: spec.logFile,
    ready: spec.ready ?? (async () => true),
  });
  const start = async () => {
    await proc.start(settings.processReadyMs);
  };
  try {
    await start();
  } catch (err) {
    await proc.kill();
    await counter.close();
    await link.close();
    throw err;
  }
  return {
    name: spec.name,
    stateDir: spec.stateDir,
    link,
    process: proc,
    connectionsMade: () => counter.count(),
    get pid() {
      return proc.pid;
    },
    get running() {
      return proc.running;
    },
    signal(signal) {
      const pid = proc.pid;
      if (pid === undefined) return false;
      try {
        process.kill(pid, signal);
        return true;
      } catch {
        return false;
      }
    },
    async crash() {
      const pid = proc.pid;
      if (pid === undefined) return;
      process.kill(pid, 'SIGKILL');
      await proc.exited();
    },
    exited: () => proc.exited(),
    restart: start,
    output: () => proc.output(),
    async dispose() {
      // The whole group: whatever the agent left behind in it goes too.
      await proc.kill();
      await counter.close();
      await link.close();
    },
  };
}
