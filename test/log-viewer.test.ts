// Watching a job in a browser: the job page the API serves, in a real headless Chromium against the
// real system, fed by a scripted agent over real gRPC. What a person sees: the job, the lines printed
// before they opened the page, each new line as it is printed, the final status, never a line twice, a
// resume after a dropped connection, and a clear message when their token is missing or refused; then
// the change the job made (its branch, commits, summary and diff) and a rework of it, followed to the
// new job's page.
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobOutcome, LogStream, type RunChange } from '../generated/proto/agent/v1/agent.js';
import { createJob, createOrg, createRepository, waitForJob, type Org, type Repository } from './support/factories.js';
import type { ProtocolClient } from './support/protocol-client.js';
import { runningJob } from './support/running-job.js';
import { changeOf, commitId, scriptedAgent } from './support/scripted-change.js';
import { useTestSystem } from './support/system.js';
import { startCuttableProxy, type CuttableProxy } from './support/tcp-proxy.js';

/** Debian's chromium, driven as it is: Playwright never downloads a browser of its own. */
const chromiumPath = '/usr/bin/chromium';
const haveChromium = fs.existsSync(chromiumPath);
if (!haveChromium) {
  if (process.env.CI) throw new Error(`${chromiumPath} is missing: CI must test the log viewer in a real browser (.ci/run installs Debian's chromium)`);
  console.warn(`Skipping the log viewer tests: ${chromiumPath} is missing (apt-get install chromium).`);
}

type Run = Awaited<ReturnType<typeof runningJob>>;

/** The texts the scripted agent prints for seq from..to. */
const printed = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);
const pageUrl = (base: string, run: Run, token?: string) => `${base}/ui/orgs/${run.org.orgId}/jobs/${run.job.id}${token ? `#token=${token}` : ''}`;
const lineShown = (page: Page, seq: number) => page.locator(`#log .line[data-seq="${seq}"]`).waitFor();
/** Every log line on the page, in order: the seq is drawn by CSS, so this is exactly what was printed. */
const lineTexts = (page: Page) => page.locator('#log .line').allTextContents();
/** Polled from outside: a predicate the page evaluated itself would be refused by its content security policy. */
const scrolledToEnd = (page: Page) => expect.poll(() => page.evaluate<boolean>('scrollY + innerHeight >= document.documentElement.scrollHeight - 24')).toBe(true);
/** Two painted frames: long enough for the page to have scrolled, had it been going to. */
const twoFrames = 'new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))';
const jobPageUrl = (base: string, orgId: string, jobId: string, token?: string) => `${base}/ui/orgs/${orgId}/jobs/${jobId}${token ? `#token=${token}` : ''}`;
const MiB = 1024 * 1024;
const isDiffUrl = (url: string) => new URL(url).pathname.endsWith('/diff');

/**
 * A patch as git makes it (`git diff --binary`): a text file changed, an image added (a git binary
 * patch) and a file in Latin-1, whose bytes are not UTF-8.
 */
const patch = Buffer.concat([
  Buffer.from(
    [
      'diff --git a/src/settings.ts b/src/settings.ts',
      'index 814f4a4..ddc897f 100644',
      '--- a/src/settings.ts',
      '+++ b/src/settings.ts',
      '@@ -1,3 +1,4 @@',
      ' export const settings = {',
      "-  theme: 'light',",
      '+  theme: loadTheme(),',
      '+  darkMode: true,',
      ' };',
      'diff --git a/assets/moon.png b/assets/moon.png',
      'new file mode 100644',
      'index 0000000000000000000000000000000000000000..ed3dfe990848df6e57f3f186bc3721f03860e8c2',
      'GIT binary patch',
      'literal 8',
      'PcmZ?wbhEHbWMlvUBdP#u',
      '',
      'literal 0',
      'HcmV?d00001',
      '',
      '',
    ].join('\n'),
  ),
  Buffer.from(['diff --git a/docs/menu.txt b/docs/menu.txt', 'index 6f83395..7721c5c 100644', '--- a/docs/menu.txt', '+++ b/docs/menu.txt', '@@ -1 +1,2 @@', ' dessert', '+cr\u00e8me br\u00fbl\u00e9e', ''].join('\n'), 'latin1'),
]);

/** Markdown a coding tool might write, with markup that must stay inert on the page. */
const summary = [
  '## Dark mode',
  '',
  'Added a **toggle** to the settings page:',
  '',
  '- stores the choice',
  '- reads it on load',
  '',
  'See [the docs](https://docs.example.test/dark-mode) and [this](javascript:window.injected=1).',
  '',
  '<img src=x onerror="window.injected = \'img\'">',
  '<script>window.injected = \'script\'</script>',
  '<p onclick="window.injected = \'click\'" style="position:fixed;inset:0">Click anywhere</p>',
  '<form action="https://evil.example.test"><input name="token"></form>',
].join('\n');

/** The change of the patch above: two of its three commits listed. */
const changeWithPatch = (overrides: Partial<RunChange> = {}) =>
  changeOf(
    {
      branch: 'agent-jobs/dark-mode',
      baseCommit: commitId('base'),
      headCommit: commitId('second'),
      commits: [
        { sha: commitId('first'), subject: 'Read the theme from storage' },
        { sha: commitId('second'), subject: 'Add the dark mode toggle' },
      ],
      commitCount: 3,
      diffStat: { filesChanged: 3, insertions: 3, deletions: 1 },
      summary,
      pullRequestUrl: 'https://git.example.test/acme/app/pull/7',
      ...overrides,
    },
    patch,
  );

describe.skipIf(!haveChromium)('the log viewer page', () => {
  const t = useTestSystem({ driver: 'pglite' });
  const clients: ProtocolClient[] = [];
  const contexts: BrowserContext[] = [];
  const proxies: CuttableProxy[] = [];
  let browser: Browser;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  });
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
    for (const client of clients.splice(0)) client.close();
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A fresh tab (its own sessionStorage) that records script errors and every URL it requests. */
  async function openTab() {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    contexts.push(context);
    const page = await context.newPage();
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    const urls: string[] = [];
    page.on('request', (request) => urls.push(request.url()));
    page.on('websocket', (socket) => urls.push(socket.url()));
    return { page, errors, urls };
  }

  it('shows the job, the lines printed before it opened, each new line as it is printed, then the final status, no line twice', async () => {
    const run = await runningJob(t, clients);
    await run.print(30);
    const { page, errors, urls } = await openTab();
    const token = run.org.tokens.member;
    const response = await page.goto(pageUrl(t.url, run, token));
    expect(response?.headers()['content-type']).toBe('text/html; charset=utf-8');
    expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");

    await page.locator('#prompt', { hasText: 'print a lot' }).waitFor();
    // The token left the address bar (and so the history) at once.
    expect(page.url()).toBe(pageUrl(t.url, run));
    expect(await page.locator('#status').textContent()).toBe('running');
    expect(await page.locator('#attempt').textContent()).toBe(`attempt 1 of ${run.job.maxAttempts}`);
    await lineShown(page, 30);
    expect(await lineTexts(page)).toEqual(printed(1, 30));
    await page.locator('#connection[data-state="live"]').waitFor();

    await run.print(5, { batch: 1 });
    await lineShown(page, 35);
    await run.print(3, { stream: LogStream.LOG_STREAM_STDERR });
    await run.print(2, { stream: LogStream.LOG_STREAM_SYSTEM });
    await lineShown(page, 40);
    expect(await page.locator('#log .line.stderr').allTextContents()).toEqual(printed(36, 38));
    expect(await page.locator('#log .line.system').allTextContents()).toEqual(printed(39, 40));
    await run.print(460, { batch: 20 });
    await lineShown(page, 500);
    // Lines keep arriving while the page scrolls itself: it still sticks to the end.
    await scrolledToEnd(page);
    expect(await page.locator('#follow').isHidden()).toBe(true);

    await run.finish();
    await page.locator('#outcome', { hasText: 'Succeeded · exit code 0' }).waitFor();
    expect(await page.locator('#status').textContent()).toBe('succeeded');
    expect(await page.locator('#connection').getAttribute('data-state')).toBe('finished');
    expect(await lineTexts(page)).toEqual(printed(1, 500));

    // The tab keeps its token: a reload shows the whole log again, once.
    await page.reload();
    await page.locator('#outcome', { hasText: 'Succeeded' }).waitFor();
    expect(await lineTexts(page)).toEqual(printed(1, 500));

    expect(urls.filter((url) => url.includes(token))).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('follows new lines only while the reader is at the bottom of the log', async () => {
    const run = await runningJob(t, clients);
    await run.print(300);
    const { page, errors } = await openTab();
    await page.goto(pageUrl(t.url, run, run.org.tokens.member));
    await lineShown(page, 300);
    await scrolledToEnd(page);
    expect(await page.locator('#follow').isHidden()).toBe(true);

    // Reading further up: new lines arrive below without moving the page.
    await page.mouse.move(640, 400);
    await page.mouse.wheel(0, -3000);
    await page.locator('#follow').waitFor();
    const readingAt = await page.evaluate<number>('scrollY');
    await run.print(100);
    await lineShown(page, 400);
    await page.evaluate(twoFrames);
    expect(await page.evaluate<number>('scrollY')).toBe(readingAt);

    // Back to following: the page sticks to the end again.
    await page.locator('#follow').click();
    await scrolledToEnd(page);
    await run.print(100);
    await lineShown(page, 500);
    await scrolledToEnd(page);
    expect(await page.locator('#follow').isHidden()).toBe(true);
    expect(await lineTexts(page)).toEqual(printed(1, 500));
    expect(errors).toEqual([]);
  });

  it('keeps a very long log light: past 50,000 lines the oldest leave the page, and it says so', async () => {
    const run = await runningJob(t, clients);
    await run.print(30_000, { batch: 500 });
    const { page, errors } = await openTab();
    await page.goto(pageUrl(t.url, run, run.org.tokens.member));
    await lineShown(page, 30_000);
    await run.print(26_000, { batch: 500 });
    await lineShown(page, 56_000);
    await page.locator('#trimmed', { hasText: 'earlier lines are not shown here' }).waitFor();
    const texts = await lineTexts(page);
    expect(texts.length).toBeLessThanOrEqual(55_000);
    expect(texts).toEqual(printed(56_000 - texts.length + 1, 56_000));
    await scrolledToEnd(page);
    expect(errors).toEqual([]);
    // 56,000 lines through a real browser: a busy two-core machine needs minutes, not the default bound.
  }, 240_000);

  it('resumes by itself after the connection drops, from the last line it showed', async () => {
    const run = await runningJob(t, clients);
    const proxy = await startCuttableProxy(new URL(t.url).host);
    proxies.push(proxy);
    const { page, urls } = await openTab();
    await run.print(40);
    await page.goto(pageUrl(`http://${proxy.address}`, run, run.org.tokens.member));
    await lineShown(page, 40);

    expect(proxy.cut()).toBeGreaterThan(0);
    await run.print(40, { batch: 10 });
    await lineShown(page, 80);
    await run.finish();
    await page.locator('#outcome', { hasText: 'Succeeded' }).waitFor();

    expect(await lineTexts(page)).toEqual(printed(1, 80));
    // The first stream from the start; every reconnect (one, or more should one attempt fail on a busy machine) from line 40.
    const [first, ...reconnects] = urls.filter((url) => url.startsWith('ws:')).map((url) => new URL(url).search);
    expect(first).toBe('?after=0');
    expect(reconnects.length).toBeGreaterThan(0);
    expect(reconnects.every((search) => search === '?after=40')).toBe(true);
  });

  it('asks for a token when the address carries none, says so when one is refused, and watches once a good one is pasted', async () => {
    const run = await runningJob(t, clients);
    await run.print(3);
    const { page } = await openTab();
    await page.goto(pageUrl(t.url, run));
    await page.locator('#message', { hasText: 'Paste an access token' }).waitFor();
    expect(await page.locator('#token-form').isVisible()).toBe(true);

    await page.locator('#token-input').fill('eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl');
    await page.locator('#token-form button[type="submit"]').click();
    await page.locator('#message', { hasText: 'Your access token was refused' }).waitFor();
    expect(await page.locator('#token-form').isVisible()).toBe(true);
    expect(await page.locator('#log .line').count()).toBe(0);

    await page.locator('#token-input').fill(run.org.tokens.member);
    await page.locator('#token-form button[type="submit"]').click();
    await lineShown(page, 3);
    expect(await page.locator('#message').isHidden()).toBe(true);
    expect(await lineTexts(page)).toEqual(printed(1, 3));
  });

  it('says the token is refused when it has expired', async () => {
    const run = await runningJob(t, clients);
    const expired = await t.token({ orgs: { [run.org.orgId]: 'Member' }, expiresInSeconds: -60 });
    const { page } = await openTab();
    await page.goto(pageUrl(t.url, run, expired));
    await page.locator('#message', { hasText: 'Your access token was refused' }).waitFor();
    expect(await page.locator('#token-form').isVisible()).toBe(true);
    expect(await page.locator('#connection').getAttribute('data-state')).toBe('stopped');
  });

  it('tells a member of another organisation that there is no such job', async () => {
    const run = await runningJob(t, clients);
    const stranger = await createOrg(t);
    const { page, urls } = await openTab();
    await page.goto(pageUrl(t.url, run, stranger.tokens.member));
    await page.locator('#message', { hasText: 'No such job' }).waitFor();
    expect(await page.locator('#token-form').isHidden()).toBe(true);
    expect(urls.filter((url) => url.startsWith('ws:'))).toEqual([]);
  });
  it('serves the libraries that draw a change from its own origin, under the same policy, revalidated by ETag', async () => {
    // Not API operations (like the page itself), so fetched plainly rather than checked against openapi.yaml.
    for (const [name, type] of [
      ['vendor/diff2html.min.js', 'text/javascript; charset=utf-8'],
      ['vendor/diff2html.min.css', 'text/css; charset=utf-8'],
      ['vendor/marked.esm.js', 'text/javascript; charset=utf-8'],
      ['vendor/purify.es.mjs', 'text/javascript; charset=utf-8'],
      ['log-viewer.js', 'text/javascript; charset=utf-8'],
    ]) {
      const first = await fetch(`${t.url}/ui/${name}`);
      expect(first.status, name).toBe(200);
      expect(first.headers.get('content-type')).toBe(type);
      expect(first.headers.get('content-security-policy')).toContain("script-src 'self'");
      expect((await first.text()).length).toBeGreaterThan(1000);
      const again = await fetch(`${t.url}/ui/${name}`, { headers: { 'if-none-match': first.headers.get('etag')! } });
      expect(again.status, name).toBe(304);
      expect(await again.text()).toBe('');
    }
  });

  /** An organisation with a repository and a scripted agent that runs its jobs. */
  async function orgWithAgent() {
    const org = await createOrg(t);
    const repo = await createRepository(org.admin, org.orgId);
    return { org, repo, ...(await scriptedAgent(t, org, clients)) };
  }

  /** What the page shows of the change above, read from its DOM. */
  async function expectChangeShown(page: Page) {
    await page.locator('#diff .d2h-file-wrapper').nth(2).waitFor();
    await page.locator('#change-summary h2').waitFor();
    expect(await page.locator('#change-branch').textContent()).toBe('agent-jobs/dark-mode');
    expect(await page.locator('#change-pushed').textContent()).toBe('pushed');
    expect(await page.locator('#change-base').textContent()).toBe(commitId('base').slice(0, 7));
    expect(await page.locator('#change-head').textContent()).toBe(commitId('second').slice(0, 7));
    expect(await page.locator('#change-commits li').allTextContents()).toEqual([`${commitId('first').slice(0, 7)} Read the theme from storage`, `${commitId('second').slice(0, 7)} Add the dark mode toggle`]);
    expect(await page.locator('#more-commits').textContent()).toBe('…and 1 more commit on the branch.');
    expect(await page.locator('#change-stat').innerText()).toBe('3 files changed +3 −1');
    const pullRequest = page.locator('#change-pr');
    expect(await pullRequest.getAttribute('href')).toBe('https://git.example.test/acme/app/pull/7');
    expect(await pullRequest.getAttribute('rel')).toBe('noopener noreferrer');

    // The summary is Markdown drawn as HTML, with nothing in it that loads, runs, styles or submits
    // (and so nothing the content security policy would have to block: errors stays empty).
    const rendered = page.locator('#change-summary');
    expect(await rendered.locator('h2').textContent()).toBe('Dark mode');
    expect(await rendered.locator('strong').textContent()).toBe('toggle');
    expect(await rendered.locator('li').allTextContents()).toEqual(['stores the choice', 'reads it on load']);
    const docs = rendered.locator('a', { hasText: 'the docs' });
    expect(await docs.getAttribute('href')).toBe('https://docs.example.test/dark-mode');
    expect(await docs.getAttribute('rel')).toBe('noopener noreferrer');
    // A link to anything but a web page is left as its text.
    expect(await rendered.locator('a', { hasText: 'this' }).count()).toBe(0);
    expect(await rendered.locator('p', { hasText: 'See the docs and this.' }).count()).toBe(1);
    expect(await rendered.locator('img, script, form, input, style, [onerror], [onclick], [style]').count()).toBe(0);
    // The HTML written into it shows as the text it is.
    const text = await rendered.innerText();
    expect(text).toContain(`<img src=x onerror="window.injected = 'img'">`);
    expect(text).toContain(`<script>window.injected = 'script'</script>`);
    expect(await page.evaluate<string>('typeof window.injected')).toBe('undefined');

    // The diff: each file by name, its lines, the image as a binary patch, Latin-1 bytes as U+FFFD.
    const diff = page.locator('#diff');
    expect(await diff.locator('.d2h-file-header .d2h-file-name').allTextContents()).toEqual(['src/settings.ts', 'assets/moon.png', 'docs/menu.txt']);
    const settings = diff.locator('.d2h-file-wrapper').nth(0);
    expect(await settings.locator('td.d2h-ins .d2h-code-line-ctn').allTextContents()).toEqual(['  theme: loadTheme(),', '  darkMode: true,']);
    expect(await settings.locator('td.d2h-del .d2h-code-line-ctn').allTextContents()).toEqual(["  theme: 'light',"]);
    expect(await diff.locator('.d2h-file-wrapper').nth(1).innerText()).toContain('GIT binary patch');
    expect(await diff.locator('.d2h-file-wrapper').nth(2).locator('td.d2h-ins .d2h-code-line-ctn').allTextContents()).toEqual(['cr\uFFFDme br\uFFFDl\uFFFDe']);
    expect(await page.locator('#patch-note').textContent()).toBe('Some of the patch is not UTF-8: those bytes show as �.');
    // Drawn on screen with diff2html's own styles (served by the page's origin, so the policy lets them apply).
    const box = await diff.boundingBox();
    expect(box?.width).toBeGreaterThan(600);
    expect(box?.height).toBeGreaterThan(200);
    const added = await settings.locator('td.d2h-ins').first().evaluate('(cell) => getComputedStyle(cell).backgroundColor');
    expect(added).not.toBe('rgba(0, 0, 0, 0)');
  }

  it('shows the change a job made as the job ends, and again when the page is opened later', async () => {
    const { org, repo, agent } = await orgWithAgent();
    const job = await createJob(org.member, org.orgId, { repoId: repo.id, prompt: 'Add a dark mode toggle' });
    const assignment = await agent.next('assignment');
    agent.start(job.id, assignment.attempt);
    await waitForJob(org.member, org.orgId, job.id, (j) => j.status === 'running');
    const { page, errors, urls } = await openTab();
    await page.goto(jobPageUrl(t.url, org.orgId, job.id, org.tokens.member));
    await page.locator('#connection[data-state="live"]').waitFor();
    expect(await page.locator('#change').isHidden()).toBe(true);
    expect(await page.locator('#rework').isHidden()).toBe(true);

    // The end frame brings the change: the page shows it without a reload.
    agent.sendPatch(job.id, assignment.attempt, 0, patch);
    await agent.next('patchAck');
    agent.finish(job.id, assignment.attempt, JobOutcome.JOB_OUTCOME_SUCCEEDED, { exitCode: 0, change: changeWithPatch() });
    await agent.next('finishedAck');
    await page.locator('#outcome', { hasText: 'Succeeded · exit code 0' }).waitFor();
    await expectChangeShown(page);
    expect(await page.locator('#rework-form').isVisible()).toBe(true);

    // Opened later, the page shows it from the job, once, though the end frame carries it too.
    await page.reload();
    await page.locator('#connection[data-state="finished"]').waitFor();
    await expectChangeShown(page);
    expect(await page.locator('#diff .d2h-file-wrapper').count()).toBe(3);
    expect(urls.filter((url) => url.endsWith(`/jobs/${job.id}/diff`))).toHaveLength(2);
    expect(urls.filter((url) => url.includes(org.tokens.member))).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('says when a job changed nothing, and fetches no diff', async () => {
    const { org, repo, succeed } = await orgWithAgent();
    const base = commitId('untouched');
    const nothing = changeOf({ branch: '', pushed: false, baseCommit: base, headCommit: base, commits: [], commitCount: 0, diffStat: { filesChanged: 0, insertions: 0, deletions: 0 }, summary: 'Nothing to do: the toggle *exists*.' });
    const { jobId } = await succeed({ repoId: repo.id }, nothing);
    const { page, errors, urls } = await openTab();
    await page.goto(jobPageUrl(t.url, org.orgId, jobId, org.tokens.member));
    await page.locator('#change-summary em', { hasText: 'exists' }).waitFor();
    expect(await page.locator('#no-change').innerText()).toBe('No changes: the job left the repository as it found it.');
    expect(await page.locator('#change-made').isHidden()).toBe(true);
    expect(await page.locator('#patch').isHidden()).toBe(true);
    // A job that changed nothing can still be reworked (it starts afresh).
    expect(await page.locator('#rework-form').isVisible()).toBe(true);
    expect(urls.filter(isDiffUrl)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('says a patch too large for the server is on its branch, and one too large to draw can be downloaded', async () => {
    const { org, repo, succeed } = await orgWithAgent();
    // Over the server's limit: the agent sends none of it and names its size.
    const { jobId: tooLarge } = await succeed({ repoId: repo.id }, changeOf({ branch: 'agent-jobs/huge', patchSize: 33 * MiB }));
    // Kept by the server, but more than the page draws.
    const large = Buffer.from(`diff --git a/big.txt b/big.txt\n--- a/big.txt\n+++ b/big.txt\n@@ -0,0 +1,40000 @@\n${'+0123456789012345678901234567890123456789\n'.repeat(40_000)}`);
    const { jobId: notDrawn } = await succeed({ repoId: repo.id }, changeOf({}, large), large);
    const { page, errors, urls } = await openTab();

    await page.goto(jobPageUrl(t.url, org.orgId, tooLarge, org.tokens.member));
    await page.locator('#patch-note', { hasText: 'too large' }).waitFor();
    expect(await page.locator('#patch-note').textContent()).toBe('The patch (33 MiB) is too large for the server to keep: branch agent-jobs/huge holds it.');
    expect(await page.locator('#patch-download').isHidden()).toBe(true);
    expect(await page.locator('#change-branch').textContent()).toBe('agent-jobs/huge');

    await page.goto(jobPageUrl(t.url, org.orgId, notDrawn));
    await page.locator('#patch-note', { hasText: 'too large to show here' }).waitFor();
    expect(await page.locator('#patch-note').textContent()).toBe('The patch (1.6 MiB) is too large to show here: download it to read it.');
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#patch-download').click()]);
    expect(download.suggestedFilename()).toBe(`job-${notDrawn}.diff`);
    expect(Buffer.from(await fs.promises.readFile((await download.path())!)).equals(large)).toBe(true);

    expect(await page.locator('#diff').innerHTML()).toBe('');
    // Only the download asked for a patch.
    expect(urls.filter(isDiffUrl)).toEqual([`${t.url}/v1/orgs/${org.orgId}/jobs/${notDrawn}/diff`]);
    expect(errors).toEqual([]);
  });

  /** The rework jobs that revise `jobId`, as the API lists them. */
  async function revisionsOf(org: Org, jobId: string) {
    const { data } = await org.member.GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId: org.orgId }, query: { parentJobId: jobId } } });
    return data!.items;
  }

  async function succeededWithChange(change: RunChange, patchBytes?: Buffer): Promise<{ org: Org; repo: Repository; jobId: string }> {
    const { org, repo, succeed } = await orgWithAgent();
    const { jobId } = await succeed({ repoId: repo.id, prompt: 'Add a dark mode toggle' }, change, patchBytes);
    return { org, repo, jobId };
  }

  it('reworks a finished job: the form queues a rework with the feedback, and the page moves to it', async () => {
    const { org, repo, jobId } = await succeededWithChange(changeWithPatch(), patch);
    const { page, errors, urls } = await openTab();
    const posts: { headers: Record<string, string>; body: unknown }[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST') posts.push({ headers: request.headers(), body: request.postDataJSON() });
    });
    await page.goto(jobPageUrl(t.url, org.orgId, jobId, org.tokens.member));
    await page.locator('#diff .d2h-file-wrapper').first().waitFor();

    const feedback = 'Keep the choice across reloads: store it in localStorage.';
    await page.locator('#rework-feedback').fill(feedback);
    await page.locator('#rework-submit').click();
    // The new job's page, its token taken from the fragment and out of the address bar again.
    await page.locator('#prompt', { hasText: feedback }).waitFor();
    const [rework] = await revisionsOf(org, jobId);
    expect(rework).toMatchObject({ queueType: 'rework', parentJobId: jobId, prompt: feedback, repoId: repo.id });
    expect(page.url()).toBe(jobPageUrl(t.url, org.orgId, rework!.id));
    expect(await page.locator('#job-id').textContent()).toBe(`job ${rework!.id}`);
    expect(await page.locator('#prompt-title').textContent()).toBe('Feedback');
    expect(await page.locator('#parent-link').getAttribute('href')).toBe(`/ui/orgs/${org.orgId}/jobs/${jobId}`);
    await page.locator('#status[data-status]:not([data-status=""])').waitFor();
    expect(await page.locator('#change').isHidden()).toBe(true);
    expect(await page.locator('#rework').isHidden()).toBe(true);

    expect(posts).toHaveLength(1);
    expect(posts[0]!.body).toEqual({ queueType: 'rework', parentJobId: jobId, repoId: repo.id, prompt: feedback });
    expect(posts[0]!.headers['idempotency-key']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(await revisionsOf(org, jobId)).toHaveLength(1);

    // Back on the parent (the tab keeps the token), the page names its revision.
    await page.goto(jobPageUrl(t.url, org.orgId, jobId));
    await page.locator('#revisions a', { hasText: rework!.id }).waitFor();
    expect(urls.filter((url) => url.includes(org.tokens.member))).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('shows why the server refused a rework, and stays on the job', async () => {
    // Its branch is on the agent only: no rework can continue it.
    const { org, jobId } = await succeededWithChange(changeWithPatch({ pushed: false }), patch);
    const { page, errors } = await openTab();
    await page.goto(jobPageUrl(t.url, org.orgId, jobId, org.tokens.member));
    expect(await page.locator('#change-pushed').textContent()).toBe('not pushed: only the agent that ran the job has it');

    await page.locator('#rework-feedback').fill('Push it this time.');
    await page.locator('#rework-submit').click();
    const problem = page.locator('#rework-problem');
    await problem.waitFor();
    expect(await problem.locator('.problem-detail').textContent()).toBe('Only a job that succeeded with a change can be reworked');
    expect(await problem.locator('li').allTextContents()).toEqual(['its change was not pushed (branch agent-jobs/dark-mode is on its agent only)']);
    expect(page.url()).toBe(jobPageUrl(t.url, org.orgId, jobId));
    expect(await page.locator('#rework-submit').isEnabled()).toBe(true);
    expect(await page.locator('#rework-feedback').inputValue()).toBe('Push it this time.');
    expect(await revisionsOf(org, jobId)).toEqual([]);
    // Chromium logs each answer that is not a success, as it does for any fetch.
    expect(errors).toEqual(['Failed to load resource: the server responded with a status of 400 (Bad Request)']);
  });
});
