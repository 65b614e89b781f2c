// The child process of log-clients.ts: holds the logs benchmark's agents and viewers and runs its
// baseline and downloads, one call at a time as the parent asks, until the parent goes away.
import pg from 'pg';
import { LogAgent } from './log-agent.js';
import { insertBaselineRows, percentiles } from './log-baseline.js';
import { serveCalls, type Handlers } from './child-calls.js';
import { lineNumber, lineText, type LogClientCalls, type Percentiles, type ViewersSummary } from './log-clients.js';
import { BenchViewer, FrameCache, LatencyHistogram, type LatencyHistograms, type ViewerTally } from './log-viewer.js';

/** However the parent fares, this process does not outlive this. */
const LIFETIME_MS = 15 * 60_000;

let agents: LogAgent[] = [];
let viewers: BenchViewer[] = [];
const histograms = (): LatencyHistograms => ({ printed: new LatencyHistogram(), stamped: new LatencyHistogram() });
let latency = histograms();
const frames = new FrameCache();

/** Runs `one` for 0..count-1, at most `parallel` at a time. */
async function inParallel(count: number, parallel: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

function inMs(h: LatencyHistogram): Percentiles {
  return h.count === 0 ? { count: 0, p50: NaN, p99: NaN, max: NaN } : { count: h.count, p50: h.percentile(0.5), p99: h.percentile(0.99), max: h.max };
}

const handlers: Handlers<LogClientCalls> = {
  async connectAgents({ address, token, count, parallel }) {
    const connected: LogAgent[] = [];
    try {
      await inParallel(count, parallel, async () => {
        connected.push(await LogAgent.connect(address, token));
      });
    } catch (err) {
      for (const a of connected) a.close();
      throw err;
    }
    agents.push(...connected);
    return { connected: connected.length, maxBatchLines: connected[0]?.maxBatchLines ?? 0 };
  },

  async agentJobs({ timeoutMs }) {
    const jobs = await Promise.all(agents.map((a) => a.job(timeoutMs)));
    return { jobIds: jobs.map((j) => j.jobId) };
  },

  async print({ lines, textBytes, timeoutMs }) {
    const started = performance.now();
    const results = await Promise.all(agents.map((a) => a.print(lines, (n) => lineText(n, textBytes), timeoutMs)));
    const seconds = (performance.now() - started) / 1000;
    return {
      agents: agents.length,
      lines: results.reduce((sum, r) => sum + r.lines, 0),
      seconds,
      ack: percentiles(results.flatMap((r) => r.ackMs)),
      problems: agents.flatMap((a) => a.problems),
    };
  },

  async finishAgents({ lastSeq, timeoutMs }) {
    await Promise.all(agents.map((a) => a.finish(lastSeq, timeoutMs)));
    return { finished: agents.length };
  },

  async closeAgents() {
    const problems = agents.flatMap((a) => a.problems);
    for (const a of agents) a.close();
    agents = [];
    return { problems };
  },

  async openViewers({ baseUrl, orgId, jobId, token, count, parallel, after, measureLatency }) {
    if (measureLatency) latency = histograms();
    const handshakes: number[] = [];
    const started = performance.now();
    const opened: BenchViewer[] = [];
    try {
      await inParallel(count, parallel, async () => {
        const t0 = performance.now();
        const viewer = new BenchViewer(baseUrl, orgId, jobId, token, { after, frames, ...(measureLatency ? { latency } : {}) });
        opened.push(viewer);
        await viewer.opened;
        handshakes.push(performance.now() - t0);
      });
    } catch (err) {
      for (const v of opened) v.terminate();
      throw err;
    }
    viewers.push(...opened);
    return { opened: opened.length, seconds: (performance.now() - started) / 1000, handshake: percentiles(handshakes) };
  },

  async viewersDone({ timeoutMs }) {
    const waiting = viewers;
    viewers = [];
    let stuck = 0;
    const timer = setTimeout(() => {
      // Whoever has not closed by now never got its end frame: terminate it, it counts as a failure.
      for (const v of waiting) v.terminate();
    }, timeoutMs);
    const tallies: ViewerTally[] = await Promise.all(
      waiting.map(async (v) => {
        const tally = await v.done;
        if (tally.closeCode === 1006 && tally.endSeq === undefined) stuck += 1;
        return tally;
      }),
    );
    clearTimeout(timer);
    const summary: ViewersSummary = {
      viewers: tallies.length,
      lines: 0,
      duplicates: 0,
      lost: 0,
      noEnd: 0,
      badFrames: 0,
      stuck,
      closeCodes: {},
      reasons: {},
      minLastSeq: Infinity,
      maxLastSeq: 0,
      latency: inMs(latency.printed),
      fromAgentStamp: inMs(latency.stamped),
    };
    for (const t of tallies) {
      summary.lines += t.lines;
      summary.duplicates += t.duplicates;
      summary.lost += t.lost;
      summary.badFrames += t.badFrames;
      if (t.endSeq === undefined) summary.noEnd += 1;
      summary.closeCodes[t.closeCode] = (summary.closeCodes[t.closeCode] ?? 0) + 1;
      if (t.closeCode !== 1000) summary.reasons[t.closeCode] ??= t.closeReason;
      summary.minLastSeq = Math.min(summary.minLastSeq, t.lastSeq);
      summary.maxLastSeq = Math.max(summary.maxLastSeq, t.lastSeq);
    }
    if (!Number.isFinite(summary.minLastSeq)) summary.minLastSeq = 0;
    latency = histograms();
    return summary;
  },

  async download({ url, token, timeoutMs }) {
    const started = performance.now();
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    let lines = 0;
    let bytes = 0;
    let numbered = 0;
    let outOfOrder = 0;
    if (res.ok && res.body) {
      const decoder = new TextDecoder();
      let rest = '';
      const take = (line: string) => {
        lines += 1;
        // `<at> <stream> <text>`: the text starts after the second space.
        const text = line.slice(line.indexOf(' ', line.indexOf(' ') + 1) + 1);
        const n = lineNumber(text);
        if (n === undefined) return;
        numbered += 1;
        if (n !== numbered) outOfOrder += 1;
      };
      for await (const chunk of res.body) {
        bytes += chunk.byteLength;
        const text = rest + decoder.decode(chunk, { stream: true });
        const parts = text.split('\n');
        rest = parts.pop() ?? '';
        for (const line of parts) take(line);
      }
      rest += decoder.decode();
      if (rest) take(rest);
    }
    return { lines, bytes, seconds: (performance.now() - started) / 1000, numbered, outOfOrder, status: res.status };
  },

  async insertBaseline({ databaseUrl, rows }) {
    const clients = await Promise.all(
      Array.from({ length: rows.connections }, async () => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        return client;
      }),
    );
    try {
      return await insertBaselineRows(clients, rows);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    }
  },
};

serveCalls(handlers, {
  lifetimeMs: LIFETIME_MS,
  onDisconnect: () => {
    for (const a of agents) a.close();
    for (const v of viewers) v.terminate();
  },
});
