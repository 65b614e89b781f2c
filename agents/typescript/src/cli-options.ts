// Turns the command line and environment into validated agent options. Pure: no I/O, so every bad
// value is reported before the agent touches the disk or the network.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseHumanDuration } from './durations.js';

export const USAGE = `Usage: agent-jobs-agent --server <host:port> --token <token> --exec '<shell command>' [options]
       (from a checkout: npm run agent -- --server ... --exec ...)

Runs jobs from the agent-jobs control plane: clones each job's repository and runs
<shell command> in it with /bin/sh -c.

Required (flag or environment):
  --server <addr>     gRPC endpoint: host:port (plaintext) or https://host[:port] (TLS)
                      [AGENT_SERVER]
  --token <token>     organisation agent token [AGENT_TOKEN]; prefer the environment
                      variable, since flags are visible in the process list
  --exec <command>    shell command run for each job [AGENT_EXEC]. It runs in the clone
                      with JOB_ID, JOB_ATTEMPT, JOB_PROMPT, JOB_QUEUE, JOB_REVISES_JOB_ID,
                      REPO_DIR, REPO_URL, REPO_BRANCH, REPO_NAME set (AGENT_TOKEN removed)

Options:
  --name <name>       name shown to users (default: host name)
  --labels <a,b>      labels this agent offers; jobs needing others are not sent here
  --capacity <n>      jobs run at once (default 1)
  --work-dir <dir>    where job folders are made (default: <state-dir>/work)
  --state-dir <dir>   where the agent keeps its id and run records (default: ~/.agent-jobs)
  --heartbeat <dur>   heartbeat interval used until the server's Welcome names one
                      (default 10s; e.g. 500ms, 10s, 1m)
  -h, --help          show this text

Signals: SIGINT/SIGTERM stop taking jobs, stop running ones (SIGTERM, then SIGKILL
after the job's cancel grace) and give them back to the server, which runs them again
on another agent (the attempt counts); then exit 0. A second signal kills at once (130).
Exit codes: 0 stopped by a signal, 1 the server refused the agent (e.g. revoked token)
or the address does not speak gRPC, 2 bad arguments or state directory.`;

export interface ServerTarget {
  /** host:port as grpc-js takes it. */
  address: string;
  tls: boolean;
}

export interface AgentOptions {
  server: ServerTarget;
  token: string;
  command: string;
  name: string;
  labels: string[];
  capacity: number;
  workDir: string;
  stateDir: string;
  heartbeatFallbackMs: number;
}

export type CliResult = { kind: 'run'; options: AgentOptions } | { kind: 'help' };

/** A mistake in the arguments; main prints it with the usage and exits 2. */
export class UsageError extends Error {}

export function parseCli(argv: string[], env: NodeJS.ProcessEnv, homeDir: string = os.homedir()): CliResult {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const flags = parsed.values;
  if (flags.help) return { kind: 'help' };
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument: ${parsed.positionals[0]} (did you forget to quote --exec?)`);

  const server = parseServer(required(flags.server ?? env.AGENT_SERVER, '--server (or AGENT_SERVER)'));
  const token = required(flags.token ?? env.AGENT_TOKEN, '--token (or AGENT_TOKEN)');
  const command = required(flags.exec ?? env.AGENT_EXEC, '--exec (or AGENT_EXEC)');
  const stateDir = path.resolve(expandHome(flags['state-dir'] ?? path.join(homeDir, '.agent-jobs'), homeDir));
  const workDir = path.resolve(expandHome(flags['work-dir'] ?? path.join(stateDir, 'work'), homeDir));

  const capacityText = flags.capacity ?? '1';
  const capacity = Number(capacityText);
  if (!/^\d+$/.test(capacityText) || capacity < 1 || capacity > 1000) throw new UsageError(`--capacity must be a whole number from 1 to 1000, got "${capacityText}"`);

  const heartbeatText = flags.heartbeat ?? '10s';
  const heartbeatFallbackMs = parseHumanDuration(heartbeatText);
  if (heartbeatFallbackMs === undefined || heartbeatFallbackMs < 100) throw new UsageError(`--heartbeat must be a duration of at least 100ms (e.g. 10s), got "${heartbeatText}"`);

  const labels = [...new Set((flags.labels ?? '').split(',').map((label) => label.trim()).filter((label) => label.length > 0))];
  const name = (flags.name ?? os.hostname()).trim();
  if (!name) throw new UsageError('--name must not be empty');

  return { kind: 'run', options: { server, token, command, name, labels, capacity, workDir, stateDir, heartbeatFallbackMs } };
}

function parseFlags(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      server: { type: 'string' },
      token: { type: 'string' },
      exec: { type: 'string' },
      name: { type: 'string' },
      labels: { type: 'string' },
      capacity: { type: 'string' },
      'work-dir': { type: 'string' },
      'state-dir': { type: 'string' },
      heartbeat: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

function required(value: string | undefined, what: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`${what} is required`);
  return value.trim();
}

function expandHome(dir: string, homeDir: string): string {
  return dir === '~' || dir.startsWith('~/') ? path.join(homeDir, dir.slice(1)) : dir;
}

/** host:port and http://host:port are plaintext; https://host[:port] is TLS (port 443 by default). */
export function parseServer(text: string): ServerTarget {
  const schemeMatch = /^(https?):\/\/(.+?)\/?$/.exec(text);
  const tls = schemeMatch?.[1] === 'https';
  const hostPort = schemeMatch ? schemeMatch[2]! : text;
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(hostPort);
  const port = match?.[2] ?? (tls ? '443' : undefined);
  if (!match || port === undefined || Number(port) < 1 || Number(port) > 65535) {
    throw new UsageError(`--server must be host:port or https://host[:port], got "${text}"`);
  }
  return { address: `${match[1]}:${port}`, tls };
}
