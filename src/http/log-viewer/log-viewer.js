// The job page. It takes the access token from the URL fragment (which browsers never send to a
// server), shows the job over REST and follows its log over the `streamJobLogs` WebSocket of
// openapi.yaml. Every resume passes `after` = the last line on screen, so a dropped connection neither
// loses nor repeats a line. Once the job has succeeded it shows the change it made (getJobDiff for the
// patch) and offers to rework it (createJob with queueType rework), then follows the new job.
// Plain JS with no build step; the libraries that draw a change (diff2html, marked, DOMPurify) are
// served by the same origin and loaded only when there is a change to draw, so the content security
// policy still allows nothing but this origin's files.

const SUBPROTOCOL = 'agent-jobs.v1';
const TOKEN_SUBPROTOCOL_PREFIX = 'bearer.';
const TOKEN_KEY = 'agent-jobs.access-token';
/** What a subprotocol (RFC 6455 token) may hold; a JWT always fits. */
const TOKEN_PATTERN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Past this many lines the oldest leave the page (the download has them all), so a huge log stays fast. */
const MAX_LINES = 50_000;
/** Trimming in steps keeps it rare. */
const TRIM_STEP = 5_000;
const MAX_BACKOFF_MS = 10_000;
/** Refusals, by HTTP status (a close code 44xx is its status plus 4000): shown, and the page stops. */
const REFUSALS = {
  400: 'The server refused this request.',
  401: 'Your access token was refused: it is missing, invalid or expired.',
  403: 'Your role in this organisation may not read this job.',
  404: 'No such job: it does not exist, or it belongs to another organisation.',
};
const OUTCOMES = { succeeded: 'Succeeded', failed: 'Failed', cancelled: 'Cancelled', timed_out: 'Timed out' };
const STREAMS = new Set(['stdout', 'stderr', 'system']);
/** Past this size the page does not draw a patch (a browser would stall on it); it can still be downloaded. */
const MAX_DRAWN_PATCH_BYTES = 1024 * 1024;
/** How diff2html draws a patch: one column, changed words marked; a file with more changed lines than this is left out. */
const DIFF_OPTIONS = { outputFormat: 'line-by-line', drawFileList: true, matching: 'lines', diffMaxChanges: 5_000, diffMaxLineLength: 5_000, colorScheme: 'light' };
/**
 * What a summary may use of the Markdown it is written in: text structure and links, nothing that
 * loads, runs, submits, styles or names anything (no images, forms, class or id). HTML written into
 * the Markdown shows as the text it is (see loadRenderers); this keeps what Markdown itself makes.
 */
const SUMMARY_HTML = {
  ALLOWED_TAGS: ['p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'del', 's', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'sup', 'sub', 'kbd'],
  ALLOWED_ATTR: ['href', 'title', 'align', 'start'],
  RETURN_DOM_FRAGMENT: true,
};

const ui = {
  jobId: byId('job-id'),
  status: byId('status'),
  attempt: byId('attempt'),
  connection: byId('connection'),
  download: byId('download'),
  message: byId('message'),
  tokenForm: byId('token-form'),
  tokenInput: byId('token-input'),
  job: byId('job'),
  prompt: byId('prompt'),
  trimmed: byId('trimmed'),
  log: byId('log'),
  outcome: byId('outcome'),
  follow: byId('follow'),
  parent: byId('parent'),
  parentLink: byId('parent-link'),
  promptTitle: byId('prompt-title'),
  change: byId('change'),
  noChange: byId('no-change'),
  changeMade: byId('change-made'),
  branch: byId('change-branch'),
  pushed: byId('change-pushed'),
  base: byId('change-base'),
  head: byId('change-head'),
  statFiles: byId('stat-files'),
  statInsertions: byId('stat-insertions'),
  statDeletions: byId('stat-deletions'),
  pullRequestRow: byId('change-pr-row'),
  pullRequest: byId('change-pr'),
  commits: byId('change-commits'),
  moreCommits: byId('more-commits'),
  summary: byId('change-summary'),
  patch: byId('patch'),
  patchNote: byId('patch-note'),
  patchRetry: byId('patch-retry'),
  patchDownload: byId('patch-download'),
  diff: byId('diff'),
  rework: byId('rework'),
  revisions: byId('revisions'),
  reworkForm: byId('rework-form'),
  reworkFeedback: byId('rework-feedback'),
  reworkSubmit: byId('rework-submit'),
  reworkState: byId('rework-state'),
  reworkProblem: byId('rework-problem'),
};
const scroller = document.scrollingElement ?? document.documentElement;
const ids = parsePath(location.pathname);

const viewer = {
  token: '',
  maxAttempts: 0,
  /** The job as GET answered it (its repository and revisions are what a rework needs). */
  job: null,
  /** Which change is on the page (`attempt/headCommit`), so the job and the end frame draw it once. */
  shownChange: '',
  /** The seq of the last line on screen: what a resume asks to come after. */
  lastSeq: 0,
  shown: 0,
  trimmed: 0,
  ended: false,
  stopped: false,
  /** @type {WebSocket | null} */
  socket: null,
  retries: 0,
  retryTimer: 0,
  /** @type {(() => void) | null} */
  retry: null,
  /** Whether the person is at the bottom of the log: only then do new lines scroll it. */
  following: true,
  scrollQueued: false,
  /** Where the page last scrolled itself to, to tell its own scroll events from the reader's. */
  autoScrolledTo: -1,
};
/** Where the token lives when the browser refuses storage. */
let memoryToken = '';
/** The rework being sent: a retry of the same feedback after no answer keeps its Idempotency-Key. */
const rework = { busy: false, /** @type {{ prompt: string, key: string } | null} */ pending: null };
/** @type {Promise<{ markdown: any, purify: any, diff2html: any }> | null} */
let renderers = null;

main();

function main() {
  wireControls();
  if (!ids) return stop('This address names no job: open /ui/orgs/<orgId>/jobs/<jobId>.');
  ui.jobId.textContent = `job ${ids.jobId}`;
  takeTokenFromFragment();
  const token = storedToken();
  if (!token) return askForToken('Paste an access token to watch this job.');
  start(token);
}

function start(token) {
  if (!TOKEN_PATTERN.test(token)) {
    storeToken('');
    return askForToken('That is not an access token: paste the whole token, nothing else.');
  }
  viewer.token = token;
  viewer.stopped = false;
  viewer.retries = 0;
  ui.message.hidden = true;
  ui.tokenForm.hidden = true;
  void load();
}

// --- the token -------------------------------------------------------------------------------------

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token')?.trim();
  if (token === undefined) return;
  fragment.delete('token');
  const rest = fragment.toString();
  // Out of the address bar, the history and any bookmark at once.
  history.replaceState(history.state, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  if (token) storeToken(token);
}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? memoryToken;
  } catch {
    return memoryToken;
  }
}

function storeToken(token) {
  memoryToken = token;
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage is disabled: the token lasts as long as this page.
  }
}

function askForToken(text, detail) {
  stop(text, detail);
  ui.tokenForm.hidden = false;
  ui.tokenInput.focus();
}

// --- the job and its stream ------------------------------------------------------------------------

async function load() {
  setConnection('connecting', 'loading…');
  let response;
  try {
    response = await fetch(apiPath(''), { headers: { authorization: `Bearer ${viewer.token}`, accept: 'application/json' }, cache: 'no-store' });
  } catch {
    return retryLater(load, backoff());
  }
  if (viewer.stopped) return;
  if (!response.ok) {
    const problem = await response.json().catch(() => null);
    if (REFUSALS[response.status]) return refuse(response.status, problem?.detail);
    return retryLater(load, backoff());
  }
  showJob(await response.json());
  connect();
}

function connect() {
  if (viewer.stopped || viewer.ended) return;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // The token travels as a subprotocol: browsers cannot set headers, and URLs end up in logs.
  const socket = new WebSocket(`${scheme}//${location.host}${apiPath('/logs/stream')}?after=${viewer.lastSeq}`, [SUBPROTOCOL, `${TOKEN_SUBPROTOCOL_PREFIX}${viewer.token}`]);
  viewer.socket = socket;
  let heard = false;
  setConnection('connecting', 'connecting…');
  socket.addEventListener('open', () => setConnection('live', 'live'));
  socket.addEventListener('message', (event) => {
    heard = true;
    onFrame(JSON.parse(event.data));
  });
  socket.addEventListener('close', (event) => {
    // A socket the page already let go of (it stopped, or started over) decides nothing.
    if (viewer.socket !== socket) return;
    viewer.socket = null;
    if (heard) viewer.retries = 0;
    onClose(event.code, event.reason);
  });
}

function onFrame(frame) {
  if (frame.type === 'lines') appendLines(frame.lines);
  else if (frame.type === 'status') showStatus(frame.status, frame.attempt);
  else if (frame.type === 'end') showEnd(frame);
}

/** 1000 follows the end frame; 44xx refusals stop; anything else (1001, 4408, 1006, 1011) resumes. */
function onClose(code, reason) {
  if (viewer.ended || viewer.stopped) return;
  if (REFUSALS[code - 4000]) return refuse(code - 4000, reason);
  // Too slow: the server let go of a viewer that fell behind; nothing is wrong, come straight back.
  retryLater(connect, code === 4408 ? 100 : backoff());
}

function retryLater(action, delayMs) {
  if (viewer.stopped) return;
  setConnection('waiting', `reconnecting in ${Math.max(1, Math.round(delayMs / 1000))}s…`);
  clearTimeout(viewer.retryTimer);
  viewer.retry = action;
  viewer.retryTimer = setTimeout(retryNow, delayMs);
}

function retryNow() {
  const action = viewer.retry;
  viewer.retry = null;
  clearTimeout(viewer.retryTimer);
  action?.();
}

/** Doubling with jitter, so a restarted server is not met by every viewer at the same instant. */
function backoff() {
  const ceiling = Math.min(500 * 2 ** viewer.retries, MAX_BACKOFF_MS);
  viewer.retries += 1;
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}

function refuse(status, detail) {
  // Only these details say more than the summary; a 404's would only repeat it.
  const shownDetail = status === 400 || status === 401 ? detail : '';
  if (status !== 401) return stop(REFUSALS[status], shownDetail);
  storeToken('');
  askForToken(`${REFUSALS[status]} Paste a new one to continue.`, shownDetail);
}

function stop(text, detail) {
  viewer.stopped = true;
  viewer.retry = null;
  clearTimeout(viewer.retryTimer);
  const socket = viewer.socket;
  viewer.socket = null;
  socket?.close();
  setConnection('stopped', 'stopped');
  showMessage(text, detail);
}

// --- rendering -------------------------------------------------------------------------------------

function showJob(job) {
  viewer.job = job;
  viewer.maxAttempts = job.maxAttempts;
  ui.prompt.textContent = job.prompt;
  if (job.parentJobId) {
    ui.promptTitle.textContent = 'Feedback';
    ui.parentLink.textContent = `job ${job.parentJobId}`;
    ui.parentLink.href = jobPagePath(job.parentJobId);
    ui.parent.hidden = false;
  }
  ui.job.hidden = false;
  ui.download.hidden = false;
  showStatus(job.status, job.attempt);
  showChangeOf(job.status, job.change);
}

function showStatus(status, attempt) {
  ui.status.textContent = status.replace('_', ' ');
  ui.status.dataset.status = status;
  ui.status.hidden = false;
  if (attempt !== undefined) ui.attempt.textContent = attempt > 0 ? `attempt ${attempt} of ${viewer.maxAttempts}` : '';
  document.title = `${status.replace('_', ' ')} · job ${ids.jobId.slice(0, 8)} · Agent Jobs`;
}

function showEnd(frame) {
  viewer.ended = true;
  showStatus(frame.status);
  const parts = [OUTCOMES[frame.status] ?? frame.status];
  if (frame.exitCode !== null) parts.push(`exit code ${frame.exitCode}`);
  if (frame.failureReason) parts.push(frame.failureReason);
  ui.outcome.textContent = parts.join(' · ');
  ui.outcome.dataset.status = frame.status;
  ui.outcome.hidden = false;
  setConnection('finished', 'finished');
  showChangeOf(frame.status, frame.change);
  queueScroll();
}

/** One frame, one DOM insertion: a backlog of thousands of lines costs one layout, not thousands. */
function appendLines(lines) {
  const rows = document.createDocumentFragment();
  for (const line of lines) {
    // The server never repeats a line; this keeps the screen right even if a resume overlapped.
    if (line.seq <= viewer.lastSeq) continue;
    const row = document.createElement('div');
    row.className = `line ${STREAMS.has(line.stream) ? line.stream : 'stdout'}`;
    row.dataset.seq = String(line.seq);
    row.title = line.at;
    // Text, never markup: a log line is whatever the job printed.
    row.textContent = line.text;
    rows.append(row);
    viewer.lastSeq = line.seq;
    viewer.shown += 1;
  }
  ui.log.append(rows);
  queueScroll();
}

/** Scrolls once per painted frame however many frames arrived, and only for someone at the bottom. */
function queueScroll() {
  if (viewer.scrollQueued) return;
  viewer.scrollQueued = true;
  requestAnimationFrame(() => {
    viewer.scrollQueued = false;
    if (!viewer.following) return;
    trim();
    scroller.scrollTop = ui.change.hidden ? scroller.scrollHeight : logEndAt();
    viewer.autoScrolledTo = scroller.scrollTop;
  });
}

/** With a change below the log, the end of the log (and the outcome) stays in the upper part of the screen, the change under it. */
function logEndAt() {
  const end = ui.outcome.hidden ? ui.log : ui.outcome;
  return end.getBoundingClientRect().bottom + scroller.scrollTop - (innerHeight * 2) / 3;
}

/** Only while following: removing lines above someone reading them would move the text under their eyes. */
function trim() {
  const excess = viewer.shown - MAX_LINES;
  if (excess < TRIM_STEP) return;
  const range = document.createRange();
  range.setStartBefore(ui.log.firstElementChild);
  range.setEndBefore(ui.log.children[excess]);
  range.deleteContents();
  viewer.shown -= excess;
  viewer.trimmed += excess;
  ui.trimmed.textContent = `${viewer.trimmed.toLocaleString()} earlier lines are not shown here; download the log to read them all.`;
  ui.trimmed.hidden = false;
}

function onScroll() {
  // The page's own scroll to the end is reported a frame later, when more lines may already have made
  // the page taller: it must not read as the reader leaving the bottom.
  if (scroller.scrollTop === viewer.autoScrolledTo) return;
  viewer.autoScrolledTo = -1;
  viewer.following = atBottom();
  // Once the job has ended there is nothing more to follow.
  ui.follow.hidden = viewer.following || viewer.ended;
}

function atBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 24;
}

function setConnection(state, text) {
  ui.connection.dataset.state = state;
  ui.connection.textContent = text;
}

function showMessage(text, detail) {
  const details = document.createElement('small');
  details.textContent = detail ? `The server said: ${detail}` : '';
  ui.message.replaceChildren(text, details);
  ui.message.hidden = false;
}

/** Saves what an API path answers as a file: the token goes in a header, so a plain link would not do. */
async function download(button, suffix, filename, what) {
  button.disabled = true;
  try {
    const response = await fetch(apiPath(suffix), { headers: { authorization: `Bearer ${viewer.token}` }, cache: 'no-store' });
    if (!response.ok) {
      const problem = await response.json().catch(() => null);
      throw new Error(problem?.detail ?? REFUSALS[response.status] ?? `the server answered ${response.status}`);
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showMessage(`The ${what} could not be downloaded: ${err instanceof Error ? err.message : err}`);
  } finally {
    button.disabled = false;
  }
}

function wireControls() {
  window.addEventListener('scroll', onScroll, { passive: true });
  window.addEventListener('resize', queueScroll);
  // Back online: no need to sit out the rest of a backoff.
  window.addEventListener('online', retryNow);
  ui.follow.addEventListener('click', () => {
    viewer.following = true;
    ui.follow.hidden = true;
    queueScroll();
  });
  ui.download.addEventListener('click', () => void download(ui.download, '/logs/download', `job-${ids.jobId}.log`, 'log'));
  ui.patchDownload.addEventListener('click', () => void download(ui.patchDownload, '/diff', `job-${ids.jobId}.diff`, 'patch'));
  ui.patchRetry.addEventListener('click', () => void drawDiff());
  // Sent from here, never by the browser: the policy allows no form submission (form-action 'none').
  ui.reworkForm.addEventListener('submit', (event) => {
    event.preventDefault();
    void submitRework();
  });
  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    ui.tokenInput.value = '';
    storeToken(token);
    start(token);
  });
}

// --- the change ------------------------------------------------------------------------------------

/** A job that succeeded with a change shows it, and may be reworked; the job and its end frame both call this. */
function showChangeOf(status, change) {
  if (status !== 'succeeded' || !change) return;
  ui.rework.hidden = false;
  showRevisions(viewer.job?.revisions ?? []);
  const key = `${change.attempt}/${change.headCommit}`;
  if (viewer.shownChange === key) return;
  viewer.shownChange = key;
  ui.change.hidden = false;
  ui.noChange.hidden = change.changed;
  ui.changeMade.hidden = !change.changed;
  if (change.changed) showCommits(change);
  void showSummary(change.summary);
  showPatch(change);
}

function showCommits(change) {
  ui.branch.textContent = change.branch ?? '';
  ui.pushed.textContent = change.pushed ? 'pushed' : 'not pushed: only the agent that ran the job has it';
  ui.pushed.dataset.pushed = String(change.pushed);
  showCommitId(ui.base, change.baseCommit);
  showCommitId(ui.head, change.headCommit);
  const { filesChanged, insertions, deletions } = change.diffStat;
  ui.statFiles.textContent = `${filesChanged.toLocaleString()} ${filesChanged === 1 ? 'file' : 'files'} changed`;
  ui.statInsertions.textContent = `+${insertions.toLocaleString()}`;
  ui.statDeletions.textContent = `−${deletions.toLocaleString()}`;
  const rows = change.commits.map((commit) => {
    const row = document.createElement('li');
    const sha = document.createElement('code');
    showCommitId(sha, commit.sha);
    const subject = document.createElement('span');
    subject.className = 'subject';
    subject.textContent = commit.subject;
    row.append(sha, ' ', subject);
    return row;
  });
  ui.commits.replaceChildren(...rows);
  const more = change.commitCount - change.commits.length;
  ui.moreCommits.textContent = more > 0 ? `…and ${more.toLocaleString()} more ${more === 1 ? 'commit' : 'commits'} on the branch.` : '';
  ui.moreCommits.hidden = more <= 0;
  const pullRequest = change.pullRequestUrl ? webUrl(change.pullRequestUrl) : null;
  ui.pullRequestRow.hidden = !pullRequest;
  if (pullRequest) {
    ui.pullRequest.href = pullRequest;
    ui.pullRequest.textContent = pullRequest;
  }
}

function showCommitId(element, sha) {
  element.textContent = sha.slice(0, 7);
  element.title = sha;
  element.classList.add('sha');
}

/** The coding tool's Markdown, drawn as HTML only once DOMPurify has taken out everything but text structure and links. */
async function showSummary(summary) {
  ui.summary.hidden = !summary;
  if (!summary) return ui.summary.replaceChildren();
  let fragment;
  try {
    const { markdown, purify } = await loadRenderers();
    fragment = purify.sanitize(markdown.parse(summary), SUMMARY_HTML);
  } catch {
    // Without the libraries, the text as it was written is still worth reading.
    fragment = document.createElement('pre');
    fragment.textContent = summary;
  }
  for (const link of fragment.querySelectorAll('a')) {
    const href = webUrl(link.getAttribute('href') ?? '');
    if (!href) {
      link.replaceWith(...link.childNodes);
      continue;
    }
    link.href = href;
    link.rel = 'noopener noreferrer';
    link.target = '_blank';
  }
  ui.summary.replaceChildren(fragment);
}

function showPatch(change) {
  ui.diff.replaceChildren();
  ui.patchRetry.hidden = true;
  // "No changes" says it all: the patch is empty.
  ui.patch.hidden = !change.changed;
  if (!change.changed) return;
  const size = byteSize(change.patch.bytes);
  ui.patchDownload.hidden = !change.patch.available;
  if (!change.patch.available) {
    const holder = change.pushed ? `branch ${change.branch} holds it` : `branch ${change.branch}, on the agent that ran the job, holds it`;
    return setPatchNote('too-large', `The patch (${size}) is too large for the server to keep: ${holder}.`);
  }
  if (change.patch.bytes > MAX_DRAWN_PATCH_BYTES) return setPatchNote('not-drawn', `The patch (${size}) is too large to show here: download it to read it.`);
  void drawDiff();
}

/** Fetches the patch and draws it. Bytes, not text: files need not be UTF-8, and binary ones come as git binary patches. */
async function drawDiff() {
  const shown = viewer.shownChange;
  ui.patchRetry.hidden = true;
  setPatchNote('loading', 'Loading the diff…');
  let response;
  try {
    response = await fetch(apiPath('/diff'), { headers: { authorization: `Bearer ${viewer.token}`, accept: 'text/x-diff, application/problem+json' }, cache: 'no-store' });
  } catch {
    return diffFailed('The diff could not be loaded: the server did not answer.');
  }
  if (!response.ok) {
    const problem = await response.json().catch(() => null);
    if (response.status === 409) return setPatchNote('too-large', problem?.detail ?? 'The patch is too large for the server to keep: the branch holds it.');
    return diffFailed(`The diff could not be loaded: ${problem?.detail ?? REFUSALS[response.status] ?? `the server answered ${response.status}`}`);
  }
  let patch;
  let drawn;
  try {
    patch = decodePatch(new Uint8Array(await response.arrayBuffer()));
    const { purify, diff2html } = await loadRenderers();
    // Whatever the patch holds is text to diff2html, which escapes it; DOMPurify makes sure of it.
    drawn = purify.sanitize(diff2html.html(patch.text, DIFF_OPTIONS), { FORBID_TAGS: ['style', 'form'], RETURN_DOM_FRAGMENT: true });
  } catch (err) {
    return diffFailed(`The diff could not be shown: ${err instanceof Error ? err.message : err}`);
  }
  if (viewer.shownChange !== shown) return;
  ui.diff.replaceChildren(drawn);
  setPatchNote('shown', patch.valid ? '' : 'Some of the patch is not UTF-8: those bytes show as �.');
}

/** UTF-8 as far as it goes; bytes that are not show as U+FFFD. */
function decodePatch(bytes) {
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), valid: true };
  } catch {
    return { text: new TextDecoder('utf-8').decode(bytes), valid: false };
  }
}

function diffFailed(text) {
  setPatchNote('failed', text);
  ui.patchRetry.hidden = false;
}

function setPatchNote(state, text) {
  ui.patch.dataset.state = state;
  ui.patchNote.textContent = text;
}

function byteSize(bytes) {
  if (bytes < 1024) return `${bytes.toLocaleString()} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toLocaleString(undefined, { maximumFractionDigits: 1 })} ${units[unit]}`;
}

/** The libraries, loaded once and only for a page that has a change to draw. */
function loadRenderers() {
  renderers ??= Promise.all([import('/ui/vendor/marked.esm.js'), import('/ui/vendor/purify.es.mjs'), loadScript('/ui/vendor/diff2html.min.js')])
    .then(([marked, purify]) => ({
      // HTML in the Markdown stays text: even parsed inertly for DOMPurify, its handlers and styles would
      // meet the content security policy (blocked, and reported), and `Vec<String>` would lose a word.
      markdown: new marked.Marked({ async: false, gfm: true, renderer: { html: ({ text }) => escapeHtml(text) } }),
      purify: purify.default,
      diff2html: globalThis.Diff2Html,
    }))
    .catch((err) => {
      renderers = null;
      throw err;
    });
  return renderers;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** diff2html's browser build is a classic script that defines the global Diff2Html. */
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = src;
    script.addEventListener('load', () => resolve(undefined));
    script.addEventListener('error', () => reject(new Error(`${src} did not load`)));
    document.head.append(script);
  });
}

// --- rework ----------------------------------------------------------------------------------------

function showRevisions(revisions) {
  ui.revisions.hidden = revisions.length === 0;
  if (revisions.length === 0) return;
  const links = revisions.map((jobId) => {
    const link = document.createElement('a');
    link.href = jobPagePath(jobId);
    link.textContent = `job ${jobId}`;
    return link;
  });
  const list = links.flatMap((link, i) => (i === 0 ? [link] : [', ', link]));
  ui.revisions.replaceChildren(`Reworked already in ${links.length === 1 ? '' : 'these jobs: '}`, ...list, '. A new rework continues the latest revision, so rework that one.');
}

/** Queues a rework of this job with the feedback, then follows it: the page moves to the new job. */
async function submitRework() {
  if (rework.busy || !viewer.job) return;
  const prompt = ui.reworkFeedback.value;
  if (!prompt.trim()) return showReworkProblem('Write the feedback first: what should the agent change?');
  // The same feedback sent again after no answer is the same request: the server answers it once.
  const key = rework.pending?.prompt === prompt ? rework.pending.key : newUuid();
  rework.pending = { prompt, key };
  setReworkBusy(true, 'Sending…');
  ui.reworkProblem.hidden = true;
  let response;
  try {
    response = await fetch(`/v1/orgs/${encodeURIComponent(ids.orgId)}/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${viewer.token}`, 'content-type': 'application/json', accept: 'application/json, application/problem+json', 'idempotency-key': key },
      body: JSON.stringify({ queueType: 'rework', parentJobId: ids.jobId, repoId: viewer.job.repoId, prompt }),
      cache: 'no-store',
    });
  } catch {
    setReworkBusy(false, '');
    return showReworkProblem('The rework was not sent: the server did not answer. Send it again: it will be queued once.');
  }
  if (response.status === 201) {
    const job = await response.json();
    setReworkBusy(true, 'Queued: opening it…');
    // The new page takes the token from the fragment, as this one did: it works without storage too.
    location.assign(`${jobPagePath(job.id)}#${new URLSearchParams({ token: viewer.token })}`);
    return;
  }
  const problem = await response.json().catch(() => null);
  // The server answered: a new request, with a fresh key, is what comes next (not a retry of this one).
  if (response.status < 500 && response.status !== 429) rework.pending = null;
  setReworkBusy(false, '');
  showReworkProblem(problem?.detail ?? REFUSALS[response.status] ?? `The server answered ${response.status}.`, problem?.errors);
}

function setReworkBusy(busy, text) {
  rework.busy = busy;
  ui.reworkSubmit.disabled = busy;
  ui.reworkFeedback.readOnly = busy;
  ui.reworkState.textContent = text;
}

/** An RFC 9457 problem: its detail, then what it says of each field. */
function showReworkProblem(detail, errors) {
  const parts = [Object.assign(document.createElement('span'), { className: 'problem-detail', textContent: detail })];
  if (Array.isArray(errors) && errors.length > 0) {
    const list = document.createElement('ul');
    for (const error of errors) {
      const item = document.createElement('li');
      item.textContent = String(error?.message ?? '');
      list.append(item);
    }
    parts.push(list);
  }
  ui.reworkProblem.replaceChildren(...parts);
  ui.reworkProblem.hidden = false;
}

// --- addresses -------------------------------------------------------------------------------------

function parsePath(pathname) {
  const match = /^\/ui\/orgs\/([^/]+)\/jobs\/([^/]+)\/?$/.exec(pathname);
  if (!match) return null;
  try {
    return { orgId: decodeURIComponent(match[1]), jobId: decodeURIComponent(match[2]) };
  } catch {
    return null;
  }
}

function apiPath(suffix) {
  return `/v1/orgs/${encodeURIComponent(ids.orgId)}/jobs/${encodeURIComponent(ids.jobId)}${suffix}`;
}

function jobPagePath(jobId) {
  return `/ui/orgs/${encodeURIComponent(ids.orgId)}/jobs/${encodeURIComponent(jobId)}`;
}

/** An absolute http(s) address, or null: nothing else may become a link the page offers. */
function webUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** crypto.randomUUID needs a secure context; getRandomValues does not, and the page may be served over plain http. */
function newUuid() {
  if (typeof crypto.randomUUID === 'function' && isSecureContext) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}
