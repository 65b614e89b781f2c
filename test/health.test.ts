// What operators and newcomers see without a token: liveness, readiness, Prometheus metrics and the
// API reference, on PostgreSQL and on PGlite.
import fs from 'node:fs';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { drivers, dropTestDatabases, startTestSystem, type TestSystem, useTestSystem } from './support/system.js';

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, { operationId?: string }>>;
}

const contract = parse(fs.readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as OpenApiDocument;

function operationIds(document: OpenApiDocument): string[] {
  return Object.values(document.paths)
    .flatMap((item) => Object.values(item).map((operation) => (operation as { operationId?: string })?.operationId))
    .filter((id): id is string => typeof id === 'string')
    .sort();
}

describe.each(drivers)('health, metrics and docs on %s', (driver) => {
  const t = useTestSystem({ driver });

  it('answers /healthz with 200 {status: ok}, without a token', async () => {
    const { data, response } = await t.client().GET('/healthz');
    expect(response.status).toBe(200);
    expect(data).toEqual({ status: 'ok' });
  });

  it('answers the standard gRPC health check on the agent endpoint with SERVING', async () => {
    const HealthClient = makeGenericClientConstructor(healthService, 'Health');
    const client = new HealthClient(t.grpcAddress, credentials.createInsecure());
    try {
      const reply = await new Promise<{ status: string | number }>((resolve, reject) =>
        (client as unknown as { check: (request: object, cb: (err: Error | null, reply: { status: string | number }) => void) => void }).check({ service: '' }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      expect(reply.status === 'SERVING' || reply.status === 1).toBe(true);
    } finally {
      client.close();
    }
  });

  it('answers /readyz with 200 and every check ok once the database, Temporal and migrations are ready', async () => {
    const { data, response } = await t.client().GET('/readyz');
    expect(response.status).toBe(200);
    expect(data).toEqual({ status: 'ready', checks: { database: 'ok', temporal: 'ok', migrations: 'ok' } });
  });

  it('serves Prometheus metrics, with request latency by route template once a request was served', async () => {
    await t.client().GET('/healthz');
    // /metrics is for scrapers, not part of openapi.yaml: a plain fetch.
    const response = await fetch(`${t.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    expect(text).toContain('# TYPE http_request_duration_seconds histogram');
    expect(text).toMatch(/^http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} [1-9]\d*$/m);
    expect(text).toMatch(/^http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="\/healthz",status="200"\} [1-9]\d*$/m);
    // Process metrics come with it.
    expect(text).toContain('process_cpu_seconds_total');
  });

  it('labels requests by route template, never by the ids in the URL', async () => {
    const orgId = '6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
    await t.client().GET('/v1/orgs/{orgId}/jobs', { params: { path: { orgId } } });
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toContain('route="/v1/orgs/:orgId/jobs",status="401"');
    expect(text).not.toContain(orgId);
  });

  it('serves the API reference at /docs, an HTML page', async () => {
    const response = await fetch(`${t.url}/docs`, { redirect: 'follow' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain('swagger-ui');
    expect(html).toContain('swagger-initializer.js');
  });

  it('renders openapi.yaml itself: the spec behind /docs has the same operations, title and version', async () => {
    // The page loads its document from ./json, relative to /docs/.
    const initializer = await (await fetch(`${t.url}/docs/static/swagger-initializer.js`)).text();
    expect(initializer).toContain("resolveUrl('./json')");

    const json = await fetch(`${t.url}/docs/json`);
    expect(json.status).toBe(200);
    expect(json.headers.get('content-type')).toMatch(/^application\/json/);
    const served = (await json.json()) as OpenApiDocument;
    expect(served.openapi).toBe(contract.openapi);
    expect(served.info).toMatchObject({ title: contract.info.title, version: contract.info.version });
    expect(operationIds(served)).toEqual(operationIds(contract));
    expect(Object.keys(served.paths).sort()).toEqual(Object.keys(contract.paths).sort());
    // Not a document rebuilt from routes: openapi.yaml itself, as written.
    expect(served).toEqual(contract);
    // The WebSocket operation is documented too, though fastify-openapi-glue does not mount it.
    expect(operationIds(served)).toContain('streamJobLogs');

    const yaml = await fetch(`${t.url}/docs/yaml`);
    expect(yaml.status).toBe(200);
    expect(parse(await yaml.text())).toEqual(contract);
  });
});

describe.each(drivers)('readiness without a database on %s', (driver) => {
  let t: TestSystem;
  beforeAll(async () => {
    t = await startTestSystem({ driver });
  });
  afterAll(async () => {
    await t?.stop();
    await dropTestDatabases();
  });

  it('answers /readyz with 503 naming the database as failing once the database is gone, while /healthz stays 200', async () => {
    expect((await t.client().GET('/readyz')).response.status).toBe(200);

    await t.system.database.close();

    const { data, error, response } = await t.client().GET('/readyz');
    expect(response.status).toBe(503);
    // A 503 of this operation carries a Readiness body, not a problem.
    const body = (data ?? error) as unknown as { status: string; checks: Record<string, string> };
    expect(body.status).toBe('not_ready');
    expect(body.checks.database).toBe('failing');
    expect(body.checks.temporal).toBe('ok');

    const health = await t.client().GET('/healthz');
    expect(health.response.status).toBe(200);
    expect(health.data).toEqual({ status: 'ok' });
  });
});
