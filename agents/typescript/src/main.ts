#!/usr/bin/env node
// The reference agent's entry point: options, state directory, then one connection to the control
// plane until a signal or a refusal ends it. See `--help` (cli-options.ts) for usage.
import fs from 'node:fs/promises';
import path from 'node:path';
import packageJson from '../package.json' with { type: 'json' };
import { Agent } from './agent.js';
import { agentLog } from './agent-log.js';
import { loadOrCreateAgentId, StateDirError } from './agent-identity.js';
import { parseCli, USAGE, UsageError, type AgentOptions } from './cli-options.js';
import { AgentConnection } from './connection.js';
import { formatMs } from './durations.js';
import { RunRecords } from './run-records.js';
import { acquireStateLock, type StateLock } from './state-lock.js';
import { startRunTracer } from './tracing.js';
import { removeStaleRunFolders } from './workspace.js';

const EXIT_STOPPED = 0;
const EXIT_REFUSED = 1;
const EXIT_USAGE = 2;
const EXIT_SECOND_SIGNAL = 130;
/** JobRejected.reason for the jobs a stopping agent gives back. */
const SHUTDOWN_REASON = 'the agent is shutting down';
/** After its runs have stopped, how long a stopping agent waits for their reports to reach the server. */
const FINAL_REPORT_WAIT_MS = 10_000;
/** Signals this soon after the first are that one delivered again, not an operator's second. */
const SAME_SIGNAL_MS = 2_000;
/** How long an exiting agent waits for its last spans to reach the trace collector. */
const SPAN_FLUSH_WAIT_MS = 5_000;

async function main(): Promise<number> {
  let options: AgentOptions;
  try {
    const cli = parseCli(process.argv.slice(2), process.env);
    if (cli.kind === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return EXIT_STOPPED;
    }
    options = cli.options;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`agent: ${err.message}\nRun with --help for usage.\n`);
    return EXIT_USAGE;
  }

  let lock: StateLock;
  let agentId: string;
  try {
    await fs.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    await fs.mkdir(options.workDir, { recursive: true });
    lock = await acquireStateLock(options.stateDir);
    const identity = await loadOrCreateAgentId(options.stateDir);
    agentId = identity.agentId;
    if (identity.created) agentLog.info('new agent identity', { agentId, stateDir: options.stateDir });
  } catch (err) {
    process.stderr.write(`agent: ${err instanceof StateDirError ? err.message : `cannot use ${options.stateDir}: ${String(err)}`}\n`);
    return EXIT_USAGE;
  }

  const records = new RunRecords(path.join(options.stateDir, 'runs'));
  await records.reapLeftovers();
  for (const folder of await removeStaleRunFolders(options.workDir)) agentLog.info('removed a run folder left by a previous agent run', { folder });

  const tracer = options.tracing ? startRunTracer(options.tracing, { agentId, version: packageJson.version }) : undefined;
  const agent = new Agent({
    agentId,
    name: options.name,
    version: packageJson.version,
    labels: options.labels,
    capacity: options.capacity,
    runContext: { command: options.command, workRoot: options.workDir, agentEnv: process.env, records, change: options.change },
    tracer,
  });
  const connection = new AgentConnection({ target: options.server, token: options.token, heartbeatFallbackMs: options.heartbeatFallbackMs }, agent);
  agentLog.info('agent starting', { agentId, name: options.name, server: options.server.address, tls: options.server.tls, capacity: options.capacity, labels: options.labels.join(',') || undefined, workDir: options.workDir, traces: options.tracing?.endpoint });

  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    const now = performance.now();
    if (firstSignalAt === undefined) {
      firstSignalAt = now;
      agentLog.info('stopping: no new jobs; stopping running ones to give them back to the server (signal again to kill at once)', { signal, jobs: agent.heldJobCount });
      void stopGracefully(agent, connection, signal);
      return;
    }
    // One Ctrl-C can arrive more than once: a terminal signals the whole process group, and npm (and
    // tsx) pass the signal on to the agent again. Only a signal after that is the operator's second.
    if (now - firstSignalAt < SAME_SIGNAL_MS) {
      agentLog.debug('the same signal again (passed on by a parent process); still stopping gracefully', { signal });
      return;
    }
    agentLog.warn('second signal: killing every job now', { signal });
    agent.abandonAll();
    void lock.release().finally(() => process.exit(EXIT_SECOND_SIGNAL));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const end = await connection.run();
  if (end.kind === 'fatal') {
    process.stderr.write(`agent: the server refused this agent: ${end.message}\n`);
    // Nothing can be reported any more, but the runs must not outlive the agent.
    await agent.shutDown(`the server refused this agent: ${end.message}`);
  }
  await tracer?.shutdown(SPAN_FLUSH_WAIT_MS);
  await lock.release();
  return end.kind === 'fatal' ? EXIT_REFUSED : EXIT_STOPPED;
}

/**
 * A signal is an operator stopping or restarting the agent, not a user ending a job: running jobs
 * are stopped and given back (JobRejected), and the server runs them again on another agent.
 */
async function stopGracefully(agent: Agent, connection: AgentConnection, signal: NodeJS.Signals): Promise<void> {
  await agent.shutDown(SHUTDOWN_REASON);
  agentLog.info('runs stopped; waiting for their reports to reach the server', { signal, jobs: agent.heldJobCount, upTo: formatMs(FINAL_REPORT_WAIT_MS) });
  if (!(await agent.whenIdle(FINAL_REPORT_WAIT_MS))) {
    agentLog.warn('exiting before every run was reported; the server will treat those as lost', { jobs: agent.heldJobCount, connected: connection.connected });
  }
  await connection.stop();
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    agentLog.error('agent crashed', { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(EXIT_REFUSED);
  },
);
