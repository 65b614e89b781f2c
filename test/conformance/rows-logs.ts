// Logs: what the command prints is what users read back (`GET …/logs` pages), line for line, byte for
// byte, across a dropped stream. What agent.proto's LogLine says: "The line, without its line
// terminator. The agent splits output on newlines and replaces bytes that are not valid UTF-8 with
// U+FFFD." It says nothing of how a long line is cut, only that a message is at most 4 MiB; so the
// huge-line row asks only that the pieces, in order, are the line.
import fs from 'node:fs';
import { sleep } from '../faults/processes.js';
import type { Row, RowContext } from './kit.js';
import { eventTypes } from './kit.js';
import { settings } from './settings.js';

/** Five thousand lines that a careless splitter, encoder or store would change. */
function awkwardLines(count: number): string[] {
  const lines: string[] = [];
  for (let i = 1; i <= count; i++) {
    if (i % 500 === 0) lines.push('');
    else if (i % 97 === 0) lines.push(`  ${i}\tleading spaces, a tab, trailing spaces   `);
    else if (i % 89 === 0) lines.push(`${i} unicode: café, 日本語, emoji 🚀👩‍💻, combining e\u0301, RTL שלום`);
    else if (i % 83 === 0) lines.push(`${i} quotes " ' \` backslash \\ \\n (not a newline) %s %d $HOME {"json":true}`);
    else if (i % 79 === 0) lines.push(`${i} \u001b[31mANSI red\u001b[0m and a bell \u0007 and a form feed \u000c`);
    else if (i % 1000 === 1) lines.push(`${i} long ${'0123456789'.repeat(400)}`);
    else lines.push(`line ${i} of ${count}`);
  }
  return lines;
}

/** 1 MiB of ASCII on one line, each 16-character cell naming its own offset, so a piece out of place shows. */
function hugeLine(bytes: number): string {
  let line = '';
  for (let offset = 0; offset < bytes; offset += 16) line += `<${offset.toString(16).padStart(13, '0')}>`;
  return line;
}

/** Judges the stored stdout of a job that printed `expected`, noting how it differs. */
function sameLines(ctx: RowContext, stored: string[], expected: string[], what: string): boolean {
  if (stored.length === expected.length && stored.every((line, i) => line === expected[i])) {
    ctx.note(`${what}: all ${expected.length} lines stored, identical`);
    return true;
  }
  const firstDiff = stored.findIndex((line, i) => line !== expected[i]);
  const at = firstDiff < 0 ? Math.min(stored.length, expected.length) : firstDiff;
  const seen = new Set(stored);
  const missing = expected.filter((line) => !seen.has(line)).length;
  const counts = new Map<string, number>();
  for (const line of stored) counts.set(line, (counts.get(line) ?? 0) + 1);
  const expectedCounts = new Map<string, number>();
  for (const line of expected) expectedCounts.set(line, (expectedCounts.get(line) ?? 0) + 1);
  const doubled = [...counts].filter(([line, n]) => n > (expectedCounts.get(line) ?? 0)).length;
  ctx.fail(`${what}: ${stored.length} lines stored, ${expected.length} printed; ${missing} missing, ${doubled} extra or doubled; first difference at line ${at + 1}: stored ${JSON.stringify(stored[at]?.slice(0, 60))}, printed ${JSON.stringify(expected[at]?.slice(0, 60))}`);
  return false;
}

/** A job that prints lines 1..n in bursts, behind a link the row cuts; see the two rows below. */
async function cutRow(ctx: RowContext, options: { prompt: string; expected: string[]; cutAfter: string; downMs: number }): Promise<void> {
  const org = await ctx.org();
  const agent = await ctx.agent(org);
  const before = (await ctx.agentRecord(org, agent.name))?.connectedAt;
  const jobId = await ctx.submit(org, options.prompt);
  if (!(await ctx.untilPrinted(org, jobId, options.cutAfter))) return;
  const cut = agent.link.sever();
  if (!ctx.check(cut > 0, `link cut after "${options.cutAfter}" was stored (${cut} connection${cut === 1 ? '' : 's'} reset)`)) return;
  if (options.downMs > 0) await sleep(options.downMs);
  agent.link.restore();
  if (options.downMs > 0) ctx.note(`link down ${(options.downMs / 1000).toFixed(1)} s (lease ${settings.silenceTimeoutMs / 1000} s)`);
  const ended = ctx.runs(jobId).every((run) => run.end !== undefined);
  if (ended) ctx.fail('the command had already ended when the link was cut: the row proves nothing');
  const done = await ctx.untilEnded(org, jobId);
  if (!done) return;
  ctx.check(done.status === 'succeeded' && done.attempt === 1, `job ${ctx.describe(done)}`);
  ctx.check(!done.events.some((e) => e.type === 'requeued'), `events ${eventTypes(done)}`);
  const after = (await ctx.agentRecord(org, agent.name))?.connectedAt;
  ctx.check(after !== before, after !== before ? 'the agent reconnected' : 'the server never saw the agent reconnect');
  sameLines(ctx, await ctx.stdout(org, jobId), options.expected, 'stdout');
}

export const logRows: Row[] = [
  {
    id: 'logs-5000-lines',
    scenario: 'the command prints 5,000 awkward lines (tabs, spaces, empty lines, emoji, ANSI escapes, quotes, 4 KB lines)',
    expected: 'the stored stdout lines are exactly the printed lines, in order; seqs 1..n with no gap',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const lines = awkwardLines(5_000);
      const file = ctx.file('lines.txt');
      fs.writeFileSync(file, `${lines.join('\n')}\n`);
      const done = await ctx.untilEnded(org, await ctx.submit(org, `cat ${file}`));
      if (!done) return;
      ctx.check(done.status === 'succeeded', `job ${ctx.describe(done)}`);
      sameLines(ctx, await ctx.stdout(org, done.id), lines, 'stdout');
    },
  },
  {
    id: 'logs-crlf-utf8',
    scenario: 'the command prints CRLF, a bare CR, invalid UTF-8, a truncated sequence, a character split across two writes, and a last line with no newline',
    expected: '"crlf" (terminator dropped); "bare\\rcarriage" (a lone CR is no newline); invalid bytes become U+FFFD; "café" whole; the unterminated last line is a line',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const prompt = [
        `printf 'crlf\\r\\n'`,
        `printf 'bare\\rcarriage\\n'`,
        `printf 'bad \\xff\\xfe bytes\\n'`,
        `printf 'cut \\xe2\\x82 short\\n'`,
        `printf 'caf\\xc3'; sleep 0.5; printf '\\xa9 split across writes\\n'`,
        `printf 'no newline at the end'`,
      ].join('\n');
      const done = await ctx.untilEnded(org, await ctx.submit(org, prompt));
      if (!done) return;
      ctx.check(done.status === 'succeeded', `job ${ctx.describe(done)}`);
      const stored = await ctx.stdout(org, done.id);
      const expected: (string | RegExp)[] = ['crlf', 'bare\rcarriage', /^bad \uFFFD+ bytes$/, /^cut \uFFFD+ short$/, 'café split across writes', 'no newline at the end'];
      const names = ['CRLF', 'bare CR', 'invalid bytes', 'truncated sequence', 'split character', 'unterminated last line'];
      const wrong = expected.flatMap((want, i) => {
        const got = stored[i];
        const ok = got !== undefined && (typeof want === 'string' ? got === want : want.test(got));
        return ok ? [] : [`${names[i]}: ${JSON.stringify(got)}`];
      });
      if (stored.length !== expected.length) wrong.push(`${stored.length} lines stored, 6 printed`);
      const replacements = stored.slice(2, 4).map((line) => (line.match(/\uFFFD/g) ?? []).length);
      ctx.check(wrong.length === 0, wrong.length === 0 ? `all 6 as expected (U+FFFD per invalid run: ${replacements.join(', ')})` : `wrong: ${wrong.join('; ')}`);
    },
  },
  {
    id: 'logs-huge-line',
    scenario: 'the command prints a 1 MiB line between two short ones',
    expected: 'the line is stored whole or in pieces that, joined in order, are the line; the lines around it intact',
    async run(ctx) {
      const org = await ctx.org();
      await ctx.agent(org);
      const line = hugeLine(1 << 20);
      const file = ctx.file('huge.txt');
      fs.writeFileSync(file, `${line}\n`);
      const done = await ctx.untilEnded(org, await ctx.submit(org, `echo before; cat ${file}; echo after`));
      if (!done) return;
      ctx.check(done.status === 'succeeded', `job ${ctx.describe(done)}`);
      const stored = await ctx.stdout(org, done.id);
      const pieces = stored.slice(1, -1);
      ctx.check(stored[0] === 'before' && stored.at(-1) === 'after', stored[0] === 'before' && stored.at(-1) === 'after' ? 'lines around it intact' : `first ${JSON.stringify(stored[0]?.slice(0, 20))}, last ${JSON.stringify(stored.at(-1)?.slice(0, 20))}`);
      const joined = pieces.join('');
      ctx.check(joined === line, joined === line ? `stored as ${pieces.length} piece(s), the longest ${Math.max(...pieces.map((p) => p.length))} characters; joined, identical` : `joined pieces differ: ${joined.length} characters stored, ${line.length} printed`);
    },
  },
  {
    id: 'logs-resend-after-cut',
    scenario: "4,000 lines printed fast; the agent's TCP link is reset mid-output and accepts again at once",
    expected: 'the agent reconnects and resends what was not acknowledged: every line stored exactly once, in order; attempt 1 succeeds',
    run: (ctx) =>
      cutRow(ctx, {
        prompt: 'for i in $(seq 0 39); do seq $((i * 100 + 1)) $((i * 100 + 100)); sleep 0.1; done',
        expected: Array.from({ length: 4_000 }, (_, i) => String(i + 1)),
        cutAfter: '1000',
        downMs: 0,
      }),
  },
  {
    id: 'stream-cut-no-requeue',
    scenario: "the agent's link is cut mid-job and stays down 3 s, shorter than the lease",
    expected: 'the run goes on; no requeue (attempt stays 1, no requeued event); the job succeeds with every line once',
    run: (ctx) =>
      cutRow(ctx, {
        prompt: 'for i in $(seq 1 60); do echo "line $i"; sleep 0.1; done',
        expected: Array.from({ length: 60 }, (_, i) => `line ${i + 1}`),
        cutAfter: 'line 10',
        downMs: 3_000,
      }),
  },
];
