// The child process of idle-agents.ts: holds `count` connected, idle agents (Hello, heartbeats, no
// work) until its parent says close or goes away. Run apart from the server so that the server's
// memory, measured by the parent, holds only the server's side of those connections.
import { connectAgents, type BenchAgent } from './agent.js';
import type { IdleAgentsCommand, IdleAgentsReport, IdleAgentsSpec } from './idle-agents.js';

/** However the parent fares, this process does not outlive this. */
const LIFETIME_MS = 10 * 60_000;

const spec = JSON.parse(process.env.BENCH_IDLE_AGENTS ?? '{}') as IdleAgentsSpec;
let agents: BenchAgent[] = [];

const report = (message: IdleAgentsReport, then?: () => void) => process.send?.(message, undefined, {}, () => then?.());

function closeAll(): void {
  for (const agent of agents) agent.close();
  const problems = agents.flatMap((a) => a.problems);
  agents = [];
  // Leave once the report is out, even if a channel lingers.
  report({ kind: 'closed', problems: problems.length, firstProblem: problems[0] ?? null }, () => process.exit(0));
}

process.on('message', (command: IdleAgentsCommand) => {
  if (command.kind === 'close') closeAll();
});
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(2), LIFETIME_MS).unref();

const started = performance.now();
const handshakes: number[] = [];
connectAgents(spec.address, spec.token, spec.count, { parallel: spec.parallel, handshakes }).then(
  (connected) => {
    agents = connected;
    handshakes.sort((x, y) => x - y);
    const at = (q: number) => handshakes[Math.min(handshakes.length - 1, Math.floor(q * handshakes.length))] ?? NaN;
    report({ kind: 'ready', connected: connected.length, seconds: (performance.now() - started) / 1000, handshake: { p50: at(0.5), p99: at(0.99) } });
  },
  (err: unknown) => {
    report({ kind: 'failed', error: err instanceof Error ? err.message : String(err) }, () => process.exit(1));
  },
);
