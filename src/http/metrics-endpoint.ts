// What a process without the HTTP API (ROLE=gateway or worker) serves so it can be scraped and
// probed like any other: /metrics (the process's registry, as the API serves it), /healthz and
// /readyz (the API's answers), on METRICS_PORT. A bare node:http listener: there is nothing else to
// route, validate or authenticate, and it keeps such a process free of the API's start-up cost.
import http from 'node:http';
import type { Registry } from 'prom-client';
import { readiness, type ReadinessProbes } from './handlers/health.handlers.js';

export interface MetricsEndpoint {
  /** e.g. http://127.0.0.1:9464 */
  url: string;
  stop(): Promise<void>;
}

export async function startMetricsEndpoint(host: string, port: number, registry: Registry, probes: ReadinessProbes): Promise<MetricsEndpoint> {
  const json = (res: http.ServerResponse, status: number, body: object) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const answer = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const pathname = (req.url ?? '/').split('?')[0];
    const route = pathname === '/metrics' || pathname === '/healthz' || pathname === '/readyz' ? pathname : undefined;
    if (!route) return void json(res, 404, { status: 404, title: `No route ${pathname}; this process serves /metrics, /healthz and /readyz` });
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD' }).end();
    if (route === '/metrics') return void res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
    if (route === '/healthz') return void json(res, 200, { status: 'ok' });
    const { status, body } = await readiness(probes);
    json(res, status, body);
  };
  const server = http.createServer((req, res) => {
    answer(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return {
    url: `http://${shown}:${bound}`,
    stop: () =>
      new Promise<void>((resolve) => {
        // Scrapers hold keep-alive connections: they are not waited for.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
