// The child process of patch-clients.ts: holds the changes benchmark's patch-delivering agents and
// runs its downloads, one call at a time as the parent asks, until the parent goes away.
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import type { RunChange } from '../../generated/proto/agent/v1/agent.js';
import { serveCalls, type Handlers } from './child-calls.js';
import { PatchAgent } from './patch-agent.js';
import { insertPatchBaseline } from './patch-baseline.js';
import type { DownloadResult, PatchClientCalls, Spread } from './patch-clients.js';

let agents: PatchAgent[] = [];
/** Each held job's patch and change, by job id. */
let patches = new Map<string, { patch: Buffer; change: RunChange }>();

async function inParallel(count: number, parallel: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((x, y) => x - y);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { count: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN };
}

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');
const commitId = (seed: string) => createHash('sha1').update(seed).digest('hex');

/**
 * A patch adding one file of random base64 text (76 characters a line, as `base64` writes it),
 * exactly `bytes` long, the way `git diff --binary` prints a new text file.
 */
function patchAddingFile(name: string, bytes: number): { patch: Buffer; lines: number } {
  const lineBytes = 78; // '+', 76 characters, '\n'
  const lines = Math.ceil(bytes / lineBytes);
  const header = `diff --git a/${name} b/${name}\nnew file mode 100644\nindex 0000000000000000000000000000000000000000..${commitId(name)}\n--- /dev/null\n+++ b/${name}\n@@ -0,0 +1,${lines} @@\n`;
  const text = randomBytes(Math.ceil((lines * 76 * 3) / 4)).toString('base64');
  const patch = Buffer.alloc(bytes);
  let at = patch.write(header, 0, 'latin1');
  for (let i = 0; at < bytes; i++) {
    patch[at++] = 0x2b; // '+'
    at += patch.write(text.slice(i * 76, i * 76 + 76), at, 'latin1');
    if (at < bytes) patch[at++] = 0x0a;
  }
  // The last line may be cut short; it still ends the patch with a newline.
  patch[bytes - 1] = 0x0a;
  return { patch, lines };
}

const handlers: Handlers<PatchClientCalls> = {
  async connectAgents({ address, token, count, parallel }) {
    const connected: PatchAgent[] = [];
    try {
      await inParallel(count, parallel, async () => {
        connected.push(await PatchAgent.connect(address, token));
      });
    } catch (err) {
      for (const a of connected) a.close();
      throw err;
    }
    agents.push(...connected);
    return { connected: connected.length, maxPatchBytes: connected[0]?.maxPatchBytes ?? 0 };
  },

  async takeJobs({ jobIds, timeoutMs }) {
    // Assignments may move (a run the server takes back goes to another agent): wait until every
    // agent holds exactly one run and together they hold every job asked for.
    const wanted = new Set(jobIds);
    const deadline = performance.now() + timeoutMs;
    const settled = () => {
      const held = agents.map((a) => a.holding);
      return held.every((h) => h.length === 1) && new Set(held.map((h) => h[0]!.jobId)).size === wanted.size && held.every((h) => wanted.has(h[0]!.jobId));
    };
    while (!settled()) {
      if (performance.now() > deadline) {
        const holding = agents.map((a) => a.holding.length);
        throw new Error(`after ${timeoutMs} ms the agents hold ${holding.reduce((s, n) => s + n, 0)} runs (${holding.filter((n) => n !== 1).length} agents not exactly one) of the ${wanted.size} jobs; ${agents.flatMap((a) => a.problems).slice(0, 3).join('; ')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const agent of agents) agent.hold();
    return { drops: agents.flatMap((a) => a.drops.splice(0)), problems: agents.flatMap((a) => a.problems) };
  },

  async preparePatches({ bytes }) {
    patches = new Map();
    for (const agent of agents) {
      const jobId = agent.heldJobId;
      if (!jobId) throw new Error(`agent ${agent.agentId} holds no job to make a patch for`);
      const { patch, lines } = patchAddingFile(`payload-${jobId}.txt`, bytes);
      const base = commitId(`base ${jobId}`);
      const head = commitId(`head ${jobId}`);
      const change: RunChange = {
        branch: `agent-jobs/${jobId}`,
        pushed: true,
        baseCommit: base,
        headCommit: head,
        commits: [{ sha: head, subject: 'Add a payload of random text' }],
        commitCount: 1,
        diffStat: { filesChanged: 1, insertions: lines, deletions: 0 },
        summary: '',
        pullRequestUrl: '',
        patchSize: patch.byteLength,
      };
      patches.set(jobId, { patch, change });
    }
    return { patches: [...patches].map(([jobId, { patch }]) => ({ jobId, bytes: patch.byteLength, md5: md5(patch) })) };
  },

  async deliver({ chunkBytes, windowBytes, timeoutMs }) {
    const started = performance.now();
    const deliveries = await Promise.all(
      agents.map((agent) => {
        const held = patches.get(agent.heldJobId ?? '');
        if (!held) throw new Error(`agent ${agent.agentId} has no patch prepared`);
        return agent.deliver(held.patch, held.change, { chunkBytes, windowBytes, timeoutMs });
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const bytes = [...patches.values()].reduce((sum, p) => sum + p.patch.byteLength, 0);
    patches = new Map();
    return {
      agents: agents.length,
      bytes,
      seconds,
      perAgent: spread(deliveries.map((d) => d.ms)),
      chunkAck: spread(deliveries.flatMap((d) => d.ackMs)),
      maxUnacked: Math.max(0, ...deliveries.map((d) => d.maxUnacked)),
      problems: agents.flatMap((a) => a.problems),
    };
  },

  async download({ downloads, token, parallel, timeoutMs }) {
    const started = performance.now();
    const results: DownloadResult[] = [];
    await inParallel(downloads.length, parallel, async (i) => {
      const { jobId, url } = downloads[i]!;
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
      const body = Buffer.from(await res.arrayBuffer());
      results.push({ jobId, status: res.status, bytes: body.byteLength, md5: md5(body) });
    });
    return { results, seconds: (performance.now() - started) / 1000 };
  },

  async insertBaseline({ databaseUrl, connections, spec }) {
    const clients = await Promise.all(
      Array.from({ length: connections }, async () => {
        const client = new pg.Client({ connectionString: databaseUrl });
        await client.connect();
        return client;
      }),
    );
    try {
      return await insertPatchBaseline(clients, spec);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => {})));
    }
  },

  async closeAgents() {
    const problems = agents.flatMap((a) => a.problems);
    for (const a of agents) a.close();
    agents = [];
    return { problems };
  },
};

serveCalls(handlers, {
  lifetimeMs: 15 * 60_000,
  onDisconnect: () => {
    for (const a of agents) a.close();
  },
});
