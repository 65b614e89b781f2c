// Turns the command line and environment into validated agent options. Pure: no I/O, so every bad
// value is reported before the agent touches the disk or the network.
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseHumanDuration } from './durations.js';
import type { TracingOptions } from './tracing.js';

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
                      JOB_RESULT_FILE, REPO_DIR, REPO_URL, REPO_BRANCH, REPO_NAME set, and for
                      rework jobs JOB_PARENT_ID, JOB_PARENT_BRANCH, JOB_PARENT_HEAD,
                      JOB_PARENT_SUMMARY (AGENT_TOKEN removed)

Options:
  --name <name>       name shown to users (default: host name)
  --labels <a,b>      labels this agent offers; jobs needing others are not sent here
  --capacity <n>      jobs run at once (default 1)
  --work-dir <dir>    where job folders are made (default: <state-dir>/work)
  --state-dir <dir>   where the agent keeps its id and run records (default: ~/.agent-jobs)
  --heartbeat <dur>   heartbeat interval used until the server's Welcome names one
                      (default 10s; e.g. 500ms, 10s, 1m; a bare number is ms)

The change (after a command that exits 0): what the command left uncommitted is committed,
the branch pushed and its diff reported to the server. Pushing uses whatever credentials
git on this machine has.
  --branch-prefix <p> branch of a backlog job: <p><job id> (default agent-jobs/)
                      [AGENT_BRANCH_PREFIX]; a rework job pushes onto its parent's branch
  --git-author <a>    author of the agent's commits, "Name <email>" (default
                      "agent-jobs <agent-jobs@localhost>") [AGENT_GIT_AUTHOR]; also the
                      command's GIT_AUTHOR_*/GIT_COMMITTER_* unless the agent's environment
                      sets them
  --no-push           keep branches local; the diff is still reported [AGENT_NO_PUSH=1]

Traces (off unless an endpoint is given): each run is an OpenTelemetry span in the job's
trace (a child of the server's assignment span, JobAssignment.traceparent), sent over
OTLP/HTTP (JSON) as runs end; at exit the agent waits up to 5 s to send the rest.
  --otlp-endpoint <u> a collector's OTLP/HTTP base URL, e.g. http://collector:4318; spans
                      go to <u>/v1/traces [OTEL_EXPORTER_OTLP_ENDPOINT]. The full traces
                      URL may be set in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT instead; the
                      service name in OTEL_SERVICE_NAME (default agent-jobs-agent)

  -h, --help          show this text

Signals: SIGINT/SIGTERM stop taking jobs, stop running ones (SIGTERM, then SIGKILL
after the job's cancel grace) and give them back to the server, which runs them again
on another agent (the attempt counts); then exit 0. A second signal, 2 s or more after
the first (one Ctrl-C reaches the agent more than once under npm), kills at once (130).
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
  change: ChangeOptions;
  /** Where the agent sends the spans of its runs; undefined: it does not trace. */
  tracing: TracingOptions | undefined;
}

/** How the agent turns a successful run into a change (agent.proto, RunChange). */
export interface ChangeOptions {
  branchPrefix: string;
  author: { name: string; email: string };
  push: boolean;
}

export const DEFAULT_BRANCH_PREFIX = 'agent-jobs/';
export const DEFAULT_GIT_AUTHOR = 'agent-jobs <agent-jobs@localhost>';

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

  const change: ChangeOptions = {
    branchPrefix: parseBranchPrefix(flags['branch-prefix'] ?? (nonEmpty(env.AGENT_BRANCH_PREFIX) || DEFAULT_BRANCH_PREFIX)),
    author: parseAuthor(flags['git-author'] ?? (nonEmpty(env.AGENT_GIT_AUTHOR) || DEFAULT_GIT_AUTHOR)),
    push: !(flags['no-push'] === true || parseFlagValue(env.AGENT_NO_PUSH, 'AGENT_NO_PUSH')),
  };

  const tracing = parseTracing(flags['otlp-endpoint'], env);

  return { kind: 'run', options: { server, token, command, name, labels, capacity, workDir, stateDir, heartbeatFallbackMs, change, tracing } };
}

/**
 * OpenTelemetry's own variables, as its SDKs read them: the traces URL as given, else the base URL
 * (the flag first) with /v1/traces appended. Neither: no tracing.
 */
export function parseTracing(flag: string | undefined, env: NodeJS.ProcessEnv): TracingOptions | undefined {
  const base = nonEmpty(flag) ?? nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT);
  const traces = flag === undefined ? nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) : undefined;
  const endpoint = traces ?? (base ? `${base.trim().replace(/\/+$/, '')}/v1/traces` : undefined);
  if (endpoint === undefined) return undefined;
  if (!/^https?:\/\/[^\s/]+/.test(endpoint.trim())) throw new UsageError(`--otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) must be an http:// or https:// URL, got "${traces ?? base}"`);
  return { endpoint: endpoint.trim(), serviceName: nonEmpty(env.OTEL_SERVICE_NAME)?.trim() ?? 'agent-jobs-agent' };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value?.trim() ? value : undefined;
}

/** An on/off variable: unset or empty is off; 1/true on, 0/false off; anything else is a mistake. */
function parseFlagValue(value: string | undefined, name: string): boolean {
  const text = (value ?? '').trim().toLowerCase();
  if (text === '' || text === '0' || text === 'false') return false;
  if (text === '1' || text === 'true') return true;
  throw new UsageError(`${name} must be 1, true, 0 or false, got "${value}"`);
}

/** The server keeps branch names of up to 255 characters; a job id (36) follows the prefix. */
const MAX_BRANCH_PREFIX = 200;

/** A prefix git accepts at the start of a branch name (git check-ref-format, simplified to a safe subset). */
export function parseBranchPrefix(text: string): string {
  const prefix = text.trim();
  const bad =
    prefix.length > MAX_BRANCH_PREFIX || !/^[A-Za-z0-9._/-]*$/.test(prefix) || prefix.includes('..') || prefix.includes('//') || /^[/.-]/.test(prefix) || /\.lock(\/|$)/.test(prefix) || /\/\./.test(prefix);
  if (bad) throw new UsageError(`--branch-prefix must be letters, digits and ._/- that git accepts in a branch name (e.g. agent-jobs/), got "${text}"`);
  return prefix;
}

export function parseAuthor(text: string): { name: string; email: string } {
  const match = /^\s*([^<>]*[^<>\s])\s*<([^<>\s]+)>\s*$/.exec(text);
  if (!match) throw new UsageError(`--git-author must be "Name <email>", got "${text}"`);
  return { name: match[1]!, email: match[2]! };
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
      'branch-prefix': { type: 'string' },
      'git-author': { type: 'string' },
      'no-push': { type: 'boolean' },
      'otlp-endpoint': { type: 'string' },
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
