// The log viewer page. It takes the access token from the URL fragment (which browsers never send to
// a server), shows the job over REST and follows its log over the `streamJobLogs` WebSocket of
// openapi.yaml. Every resume passes `after` = the last line on screen, so a dropped connection neither
// loses nor repeats a line. Plain JS with no dependencies: the page needs no build step and its
// content security policy allows nothing but its own files and origin.

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
};
const scroller = document.scrollingElement ?? document.documentElement;
const ids = parsePath(location.pathname);

const viewer = {
  token: '',
  maxAttempts: 0,
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
  viewer.maxAttempts = job.maxAttempts;
  ui.prompt.textContent = job.prompt;
  ui.job.hidden = false;
  ui.download.hidden = false;
  showStatus(job.status, job.attempt);
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
    scroller.scrollTop = scroller.scrollHeight;
    viewer.autoScrolledTo = scroller.scrollTop;
  });
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
  ui.follow.hidden = viewer.following;
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

async function download() {
  ui.download.disabled = true;
  try {
    const response = await fetch(apiPath('/logs/download'), { headers: { authorization: `Bearer ${viewer.token}` }, cache: 'no-store' });
    if (!response.ok) throw new Error(REFUSALS[response.status] ?? `the server answered ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = `job-${ids.jobId}.log`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showMessage(`The log could not be downloaded: ${err instanceof Error ? err.message : err}`);
  } finally {
    ui.download.disabled = false;
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
  ui.download.addEventListener('click', () => void download());
  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    ui.tokenInput.value = '';
    storeToken(token);
    start(token);
  });
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

function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}
