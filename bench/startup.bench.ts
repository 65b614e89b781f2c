// Start-up, as an operator meets it: the BUILT server (`npm start`: plain node on dist/src/main.js)
// with embedded defaults (PGlite in DATA_DIR, the Temporal CLI's dev server on DATA_DIR's file),
// from its spawn to /readyz answering 200, on a fresh DATA_DIR (first start) and again on the same
// DATA_DIR after one SIGINT (restart). Baseline, in the same run: what no server on these defaults
// can avoid, the Temporal dev server (the same binary and arguments) to its gRPC port accepting,
// side by side with a node process opening an empty PGlite in a fresh folder; then both again on
// the files they made. The start-up log's `ms` of each step is collected to show where time goes.
// Targets (issue 13): /readyz 200 within 10 s of a first start and 5 s of a restart.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, locateTemporalCli } from '../src/temporal/dev-server.js';
import { withOtherLoad } from './support/load.js';
import { fmt, table, type BenchReport, type Benchmark, type Comparison, type ScenarioRow } from './support/report.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const builtMain = path.join(root, 'dist/src/main.js');
const RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 3);
const FIRST_START_TARGET_MS = 10_000;
const RESTART_TARGET_MS = 5_000;
/** A start that takes longer than this is a failure, not a figure. */
const GIVE_UP_MS = 180_000;
const POLL_MS = 20;

const S = {
  oursFirst: 'first start ours: built server, fresh DATA_DIR, spawn -> /readyz 200 (starts)',
  baseFirst: 'first start baseline: temporal start-dev (fresh db file) beside an empty PGlite (fresh folder) (starts)',
  oursRestart: 'restart ours: the same DATA_DIR after SIGINT, spawn -> /readyz 200 (starts)',
  baseRestart: 'restart baseline: temporal start-dev and PGlite again on the files they made (starts)',
  oursStop: 'stop ours: SIGINT -> exit 0, nothing running (stops)',
};

/** What `npm start` runs, fresh from the sources: built again when anything it is built from is newer. */
function ensureBuild(): void {
  const built = (() => {
    try {
      return Math.min(fs.statSync(builtMain).mtimeMs, fs.statSync(path.join(root, 'dist/workflow-bundle.js')).mtimeMs);
    } catch {
      return 0;
    }
  })();
  const newest = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((latest, entry) => {
      const full = path.join(dir, entry.name);
      return Math.max(latest, entry.isDirectory() ? newest(full) : fs.statSync(full).mtimeMs);
    }, 0);
  const sources = Math.max(newest(path.join(root, 'src')), newest(path.join(root, 'generated')), ...['openapi.yaml', 'scripts/build-server.ts', 'package-lock.json'].map((f) => fs.statSync(path.join(root, f)).mtimeMs));
  if (built >= sources) return;
  console.log(`  ${built ? 'dist/ is older than the sources' : 'no dist/'}: running \`npm run build\` first (the bench measures the built server)`);
  const build = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('`npm run build` failed; the startup bench measures the built server (dist/src/main.js)');
}

interface LogLine {
  level: number;
  msg: string;
  time: number;
  ms?: number;
}

interface ServerStart {
  readyMs: number;
  /** From spawn to the server's first log line ("starting"): node itself and the modules it loads. */
  firstLineMs: number;
  /** Each start-up step's `ms` (from startSystem's beginning), by its log message. */
  steps: Map<string, number>;
  otherCores: number;
}

/** One spawned built server: its log, parsed as it comes. */
class BuiltServer {
  readonly lines: LogLine[] = [];
  readonly spawnedAt = Date.now();
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private output = '';

  constructor(readonly env: Record<string, string>, cwd: string) {
    this.child = spawn(process.execPath, [builtMain], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const line of complete) {
        this.output += `${line}\n`;
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          // Not the JSON log: kept in the output only.
        }
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  async ready(url: string): Promise<ServerStart> {
    const t0 = performance.now();
    const { result: readyMs, otherCores } = await withOtherLoad(async () => {
      for (;;) {
        if (await fetch(url).then((r) => r.status === 200, () => false)) return performance.now() - t0;
        if (this.child.exitCode !== null) throw new Error(`the server exited with ${this.child.exitCode} before /readyz answered 200:\n${this.output}`);
        if (performance.now() - t0 > GIVE_UP_MS) throw new Error(`/readyz did not answer 200 within ${GIVE_UP_MS / 1000} s:\n${this.output}`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    });
    // The spawn happened just before t0; the first line's own timestamp says when node got that far.
    const first = this.lines.find((l) => l.msg === 'starting');
    const steps = new Map(this.lines.filter((l) => typeof l.ms === 'number').map((l) => [l.msg, l.ms!] as const));
    return { readyMs, firstLineMs: first ? first.time - this.spawnedAt : NaN, steps, otherCores };
  }

  /** One SIGINT, as a terminal's Ctrl-C: how long until it exits, and whether it logged an error. */
  async stop(): Promise<{ ms: number; code: number | null; errors: string[] }> {
    const t0 = performance.now();
    this.child.kill('SIGINT');
    const code = await Promise.race([this.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 60_000))]);
    if (code === 'hung') {
      this.child.kill('SIGKILL');
      throw new Error(`one SIGINT did not stop the server within 60 s:\n${this.output.slice(-4000)}`);
    }
    return { ms: performance.now() - t0, code, errors: this.lines.filter((l) => l.level >= 50).map((l) => JSON.stringify(l)) };
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

async function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Opens an empty PGlite (or the one a previous run left) in a node process of its own, held open until stopped. */
const PGLITE_OPENER = `
const { PGlite } = await import('@electric-sql/pglite');
const db = await PGlite.create(process.argv[1]);
await db.query('select 1');
process.stdout.write('open\\n');
process.stdin.on('end', () => db.close().then(() => process.exit(0)));
process.stdin.resume();
`;

interface BaselineStart {
  readyMs: number;
  temporalMs: number;
  pgliteMs: number;
  otherCores: number;
  stop(): Promise<void>;
}

/** Temporal's dev server (as src/temporal/dev-server.ts runs it) and a PGlite opener, started together. */
async function startBaseline(cli: string, dir: string): Promise<BaselineStart> {
  const port = await freePort();
  await fsp.mkdir(path.join(dir, 'temporal'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'pglite'), { recursive: true });
  const children: ChildProcess[] = [];
  const t0 = performance.now();
  const measured = await withOtherLoad(async () => {
    const temporal = spawn(cli, ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--headless', '--log-level', 'error', '--db-filename', path.join(dir, 'temporal', 'dev.db')], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(temporal);
    // Resolved from the project, as the server resolves it.
    const pglite = spawn(process.execPath, ['--input-type=module', '-e', PGLITE_OPENER, path.join(dir, 'pglite')], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(pglite);
    const temporalReady = (async () => {
      while (!(await portAccepts(port))) {
        if (temporal.exitCode !== null) throw new Error(`temporal server start-dev exited with ${temporal.exitCode}`);
        if (performance.now() - t0 > GIVE_UP_MS) throw new Error('temporal server start-dev did not open its port');
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
      return performance.now() - t0;
    })();
    const pgliteReady = new Promise<number>((resolve, reject) => {
      pglite.stdout!.once('data', () => resolve(performance.now() - t0));
      pglite.once('exit', (code) => reject(new Error(`the PGlite opener exited with ${code}`)));
    });
    const [temporalMs, pgliteMs] = await Promise.all([temporalReady, pgliteReady]);
    return { temporalMs, pgliteMs, readyMs: Math.max(temporalMs, pgliteMs) };
  }).catch((err: unknown) => {
    for (const child of children) child.kill('SIGKILL');
    throw err;
  });
  const [temporal, pglite] = children as [ChildProcess, ChildProcess];
  return {
    ...measured.result,
    otherCores: measured.otherCores,
    async stop() {
      const exited = (child: ChildProcess) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve())));
      pglite.stdin!.end();
      temporal.kill('SIGTERM');
      await Promise.all([exited(pglite), exited(temporal)]);
    },
  };
}

const median = (values: number[]) => {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y);
  if (sorted.length === 0) return NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

function row(scenario: string, values: number[], otherCores: number[], errors = 0): ScenarioRow {
  return { scenario, requests: values.length, rps: NaN, p50: median(values), p99: Math.max(...values), errors, non2xx: 0, otherCores: Math.max(0, ...otherCores) };
}

async function run(): Promise<BenchReport> {
  ensureBuild();
  const scratch = await fsp.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-bench-startup-'));
  const live: (() => void)[] = [];
  try {
    const cli = locateTemporalCli(scratch, process.env.TEMPORAL_CLI_PATH);
    if (!cli) throw new Error('the startup bench needs the Temporal CLI: on PATH, or TEMPORAL_CLI_PATH');
    const ours = { first: [] as ServerStart[], restart: [] as ServerStart[], stops: [] as number[], errors: [] as string[] };
    const base = { first: [] as BaselineStart[], restart: [] as BaselineStart[] };

    for (let i = 0; i < RUNS; i++) {
      // The baseline first, then ours, in each round: both meet the same machine, round by round.
      const baseDir = path.join(scratch, `baseline-${i}`);
      for (const phase of ['first', 'restart'] as const) {
        const started = await startBaseline(cli.path, baseDir);
        live.push(() => void started.stop());
        base[phase].push(started);
        await started.stop();
      }

      const dataDir = path.join(scratch, `data-${i}`);
      await fsp.mkdir(dataDir, { recursive: true });
      const [httpPort, grpcPort, temporalPort] = [await freePort(), await freePort(), await freePort()];
      const env = {
        DATABASE_URL: '',
        TEMPORAL_ADDRESS: '',
        DATA_DIR: dataDir,
        HOST: '127.0.0.1',
        PORT: String(httpPort),
        GRPC_PORT: String(grpcPort),
        TEMPORAL_DEV_PORT: String(temporalPort),
        TEMPORAL_CLI_PATH: cli.path,
        LOG_LEVEL: 'info',
      };
      for (const phase of ['first', 'restart'] as const) {
        const server = new BuiltServer(env, dataDir);
        live.push(() => server.kill());
        const start = await server.ready(`http://127.0.0.1:${httpPort}/readyz`);
        ours[phase].push(start);
        const stopped = await server.stop();
        if (stopped.code !== 0) ours.errors.push(`${phase} start, run ${i + 1}: one SIGINT ended the server with ${stopped.code}`);
        ours.errors.push(...stopped.errors.map((line) => `${phase} start, run ${i + 1}: ${line}`));
        ours.stops.push(stopped.ms);
      }
      const [first, restart] = [ours.first.at(-1)!, ours.restart.at(-1)!];
      const [bFirst, bRestart] = [base.first.at(-1)!, base.restart.at(-1)!];
      console.log(`  run ${i + 1}/${RUNS}: first start ${fmt.ms(first.readyMs)} ms (baseline ${fmt.ms(bFirst.readyMs)}), restart ${fmt.ms(restart.readyMs)} ms (baseline ${fmt.ms(bRestart.readyMs)}), other load up to ${Math.max(first.otherCores, restart.otherCores, bFirst.otherCores, bRestart.otherCores).toFixed(2)} cores`);
    }

    const rows: ScenarioRow[] = [
      row(S.baseFirst, base.first.map((s) => s.readyMs), base.first.map((s) => s.otherCores)),
      row(S.oursFirst, ours.first.map((s) => s.readyMs), ours.first.map((s) => s.otherCores)),
      row(S.baseRestart, base.restart.map((s) => s.readyMs), base.restart.map((s) => s.otherCores)),
      row(S.oursRestart, ours.restart.map((s) => s.readyMs), ours.restart.map((s) => s.otherCores)),
      row(S.oursStop, ours.stops, [], ours.errors.length),
    ];
    const comparisons: Comparison[] = [
      { kind: 'limit', name: 'first start: spawn -> /readyz 200, median', value: median(ours.first.map((s) => s.readyMs)), unit: 'ms', ceiling: FIRST_START_TARGET_MS },
      { kind: 'limit', name: 'restart: spawn -> /readyz 200, median', value: median(ours.restart.map((s) => s.readyMs)), unit: 'ms', ceiling: RESTART_TARGET_MS },
      { kind: 'latency', name: 'first start: ours beside temporal start-dev + empty PGlite', ours: S.oursFirst, baseline: S.baseFirst, target: 0.5, informative: true },
      { kind: 'latency', name: 'restart: ours beside temporal start-dev + PGlite reopened', ours: S.oursRestart, baseline: S.baseRestart, target: 0.5, informative: true },
      { kind: 'limit', name: 'stops with an exit code other than 0, or error lines logged', value: ours.errors.length, unit: 'failures', ceiling: 0 },
    ];

    // Where the time goes: the start-up log's steps, median over the runs, beside the baseline's parts.
    const stepNames = [...new Set([...ours.first, ...ours.restart].flatMap((s) => [...s.steps.keys()]))];
    const stepAt = (starts: ServerStart[], name: string) => median(starts.map((s) => s.steps.get(name) ?? NaN));
    const breakdown = [
      ['spawn -> first log line (node starts, loads the modules)', fmt.ms(median(ours.first.map((s) => s.firstLineMs))), fmt.ms(median(ours.restart.map((s) => s.firstLineMs)))],
      ...stepNames.map((name) => [`  + ${name} (ms after that line)`, fmt.ms(stepAt(ours.first, name)), fmt.ms(stepAt(ours.restart, name))]),
      ['spawn -> /readyz 200', fmt.ms(median(ours.first.map((s) => s.readyMs))), fmt.ms(median(ours.restart.map((s) => s.readyMs)))],
      ['baseline: temporal start-dev -> port accepting', fmt.ms(median(base.first.map((s) => s.temporalMs))), fmt.ms(median(base.restart.map((s) => s.temporalMs)))],
      ['baseline: node + PGlite open (an empty folder; then the same again)', fmt.ms(median(base.first.map((s) => s.pgliteMs))), fmt.ms(median(base.restart.map((s) => s.pgliteMs)))],
      ['baseline: both, side by side', fmt.ms(median(base.first.map((s) => s.readyMs))), fmt.ms(median(base.restart.map((s) => s.readyMs)))],
    ];
    const notes = [
      'How to read this:',
      `- ${RUNS} round(s) (BENCH_STARTUP_RUNS); p50 is the median, p99 the slowest. Each round: the baseline (first, then again on its`,
      '  files), then ours: `node dist/src/main.js` (what `npm start` runs) on embedded defaults in a fresh DATA_DIR until /readyz',
      '  answers 200 (polled every 20 ms), one SIGINT, then the same DATA_DIR again. The bench builds dist/ first when it is missing',
      '  or older than the sources.',
      `- Temporal CLI: ${cli.path} (${cli.source}), for both sides. The baseline waits for the dev server's gRPC port to accept`,
      '  (as the server does before it connects), and for a node process that imports PGlite and opens it (select 1).',
      `- Targets (issue 13): first start <= ${FIRST_START_TARGET_MS / 1000} s, restart <= ${RESTART_TARGET_MS / 1000} s; the ratio to the baseline is shown, not judged.`,
      '',
      'Where the time goes (medians, ms; the steps are the start-up log\'s own `ms`, counted from its first line):',
      table(['', 'first start', 'restart'], breakdown, [false, true, true]),
      ...(ours.errors.length ? ['', `PROBLEMS (${ours.errors.length}):`, ...ours.errors.slice(0, 10)] : []),
    ];
    return { title: 'Start-up: the built server on embedded defaults, to /readyz 200', rows, comparisons, notes };
  } finally {
    for (const stop of live) stop();
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

const benchmark: Benchmark = { title: 'startup', run };
export default benchmark;
