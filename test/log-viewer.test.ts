// Watching a job in a browser: the log viewer page the API serves, in a real headless Chromium against
// the real system, fed by a scripted agent over real gRPC. What a person sees: the job, the lines
// printed before they opened the page, each new line as it is printed, the final status, never a line
// twice, a resume after a dropped connection, and a clear message when their token is missing or refused.
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LogStream } from '../generated/proto/agent/v1/agent.js';
import { createOrg } from './support/factories.js';
import type { ProtocolClient } from './support/protocol-client.js';
import { runningJob } from './support/running-job.js';
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
  });

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
    const streams = urls.filter((url) => url.startsWith('ws:'));
    expect(streams.map((url) => new URL(url).search)).toEqual(['?after=0', '?after=40']);
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
});
