// The job page: what people open in a browser to watch one job's log live, see the change it made and
// rework it, without writing a client. It is static (HTML, CSS and vanilla JS, no build step) and calls
// the public API like any other client, so serving it needs no token and no knowledge of jobs; it is not
// part of openapi.yaml, like /docs and /metrics. The libraries it draws changes with (diff2html for the
// diff, marked and DOMPurify for the summary) are served from node_modules as their own browser builds,
// so the page still runs only files of its own origin.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * The page runs only its own files and talks only to its own origin (the REST API and the log
 * WebSocket), so an injected log line, summary or diff could neither run code nor send the token
 * anywhere. No form may submit either: the token field must never end up in a URL, and the rework
 * form is sent by the page's script.
 */
const contentSecurityPolicy = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const headers = {
  'content-security-policy': contentSecurityPolicy,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // The files change with the server: revalidating every time (by ETag) is simpler than versioned names.
  'cache-control': 'no-cache',
};

interface Asset {
  type: string;
  body: string;
  etag: string;
}

function asset(type: string, body: string): Asset {
  return { type, body, etag: `"${createHash('sha256').update(body).digest('base64url')}"` };
}

function readAsset(name: string): string {
  return fs.readFileSync(new URL(`./${name}`, import.meta.url), 'utf8');
}

const require = createRequire(import.meta.url);

/** A file of an installed package, found as Node finds the package, whatever files its `exports` list. */
function readPackageFile(name: string, file: string): string {
  for (const dir of require.resolve.paths(name) ?? []) {
    const root = path.join(dir, name);
    if (fs.existsSync(path.join(root, 'package.json'))) return fs.readFileSync(path.join(root, file), 'utf8');
  }
  throw new Error(`the job page needs the package ${name}, which is not installed`);
}

/** The libraries' browser builds, served under /ui/vendor/ as the page loads them. */
const vendorFiles = [
  { name: 'diff2html.min.js', type: 'text/javascript; charset=utf-8', pkg: 'diff2html', path: 'bundles/js/diff2html.min.js' },
  { name: 'diff2html.min.css', type: 'text/css; charset=utf-8', pkg: 'diff2html', path: 'bundles/css/diff2html.min.css' },
  { name: 'marked.esm.js', type: 'text/javascript; charset=utf-8', pkg: 'marked', path: 'lib/marked.esm.js' },
  { name: 'purify.es.mjs', type: 'text/javascript; charset=utf-8', pkg: 'dompurify', path: 'dist/purify.es.mjs' },
] as const;

/** Whether the browser's copy is this one (If-None-Match lists the ETags it holds). */
function fresh(request: FastifyRequest, file: Asset): boolean {
  const held = request.headers['if-none-match'];
  return held !== undefined && held.split(',').some((tag) => tag.trim().replace(/^W\//, '') === file.etag);
}

export async function registerLogViewer(app: FastifyInstance): Promise<void> {
  // Read once at start-up: a missing file fails the start, not a viewer's request.
  const assets: Record<string, Asset> = {
    '/ui/orgs/:orgId/jobs/:jobId': asset('text/html; charset=utf-8', readAsset('log-viewer.html')),
    '/ui/log-viewer.js': asset('text/javascript; charset=utf-8', readAsset('log-viewer.js')),
    '/ui/log-viewer.css': asset('text/css; charset=utf-8', readAsset('log-viewer.css')),
  };
  for (const file of vendorFiles) assets[`/ui/vendor/${file.name}`] = asset(file.type, readPackageFile(file.pkg, file.path));

  const send = (request: FastifyRequest, reply: FastifyReply, file: Asset) => {
    reply.headers(headers).header('etag', file.etag);
    return fresh(request, file) ? reply.code(304).send() : reply.type(file.type).send(file.body);
  };
  for (const [route, file] of Object.entries(assets)) {
    app.get(route, { schema: { hide: true } }, async (request, reply) => send(request, reply, file));
  }
}
