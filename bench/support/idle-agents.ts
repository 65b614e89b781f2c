// Many connected, idle agents in a child process (idle-agents.child.ts), so the server's memory can
// be measured in this process without the clients' own.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface IdleAgentsSpec {
  address: string;
  token: string;
  count: number;
  /** Handshakes in flight at once. */
  parallel: number;
}

export type IdleAgentsReport =
  | { kind: 'ready'; connected: number; seconds: number; handshake: { p50: number; p99: number } }
  | { kind: 'failed'; error: string }
  | { kind: 'closed'; problems: number; firstProblem: string | null };

export type IdleAgentsCommand = { kind: 'close' };

export interface IdleAgents {
  connected: number;
  /** Time to connect them all (Hello answered by Welcome). */
  seconds: number;
  /** One agent's connect → Welcome, in ms. */
  handshake: { p50: number; p99: number };
  /** Closes every stream and waits for the child to leave; resolves with what the agents objected to. */
  close(): Promise<{ problems: number; firstProblem: string | null }>;
}

const childPath = fileURLToPath(new URL(`./idle-agents.child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

export async function startIdleAgents(spec: IdleAgentsSpec, timeoutMs: number): Promise<IdleAgents> {
  // The child inherits this process's loader flags (tsx), so it runs from source as this does.
  const child = fork(childPath, [], { env: { ...process.env, BENCH_IDLE_AGENTS: JSON.stringify(spec) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const ready = await nextReport(child, timeoutMs);
    if (ready.kind !== 'ready') throw new Error(`idle agents: ${ready.kind === 'failed' ? ready.error : ready.kind}`);
    return {
      connected: ready.connected,
      seconds: ready.seconds,
      handshake: ready.handshake,
      async close() {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        const closed = nextReport(child, 30_000);
        child.send({ kind: 'close' } satisfies IdleAgentsCommand);
        const report = await closed.catch((err: unknown) => ({ kind: 'closed' as const, problems: 1, firstProblem: String(err) }));
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
        return report.kind === 'closed' ? { problems: report.problems, firstProblem: report.firstProblem } : { problems: 1, firstProblem: `unexpected ${report.kind}` };
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

function nextReport(child: ChildProcess, timeoutMs: number): Promise<IdleAgentsReport> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      child.off('message', onMessage).off('exit', onExit);
    };
    const onMessage = (message: IdleAgentsReport) => {
      done();
      resolve(message);
    };
    const onExit = (code: number | null) => {
      done();
      reject(new Error(`the idle agents' process exited (${code}) before reporting`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the idle agents' process did not report within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage).on('exit', onExit);
  });
}
