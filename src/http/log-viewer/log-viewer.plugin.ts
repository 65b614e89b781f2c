// The log viewer: a page people open in a browser to watch one job's log live without writing a
// client. It is static (HTML, CSS and vanilla JS, no build step) and calls the public API like any
// other client, so serving it needs no token and no knowledge of jobs; it is not part of openapi.yaml,
// like /docs and /metrics.
import fs from 'node:fs';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The page runs only its own files and talks only to its own origin (the REST API and the log
 * WebSocket), so an injected log line could neither run code nor send the token anywhere. No form
 * may submit either: the token field must never end up in a URL.
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
  // The files change with the server, and are small: revalidating every time is simpler than versioned names.
  'cache-control': 'no-cache',
};

function readAsset(name: string): string {
  return fs.readFileSync(new URL(`./${name}`, import.meta.url), 'utf8');
}

export async function registerLogViewer(app: FastifyInstance): Promise<void> {
  // Read once at start-up: a missing file fails the start, not a viewer's request.
  const page = readAsset('log-viewer.html');
  const script = readAsset('log-viewer.js');
  const style = readAsset('log-viewer.css');
  const send = (reply: FastifyReply, type: string, body: string) => reply.headers(headers).type(type).send(body);

  app.get('/ui/orgs/:orgId/jobs/:jobId', { schema: { hide: true } }, async (_request, reply) => send(reply, 'text/html; charset=utf-8', page));
  app.get('/ui/log-viewer.js', { schema: { hide: true } }, async (_request, reply) => send(reply, 'text/javascript; charset=utf-8', script));
  app.get('/ui/log-viewer.css', { schema: { hide: true } }, async (_request, reply) => send(reply, 'text/css; charset=utf-8', style));
}
