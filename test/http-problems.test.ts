// Every error the HTTP API answers is an RFC 9457 problem, the framework's own included: an overlong
// path segment (414), a malformed percent-encoding (400), oversized headers (431), a method a path does
// not have (405 with Allow, TRACE too), as the contract lists them.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { assertMatchesContract } from './support/contract.js';
import { createPopulatedOrg } from './support/factories.js';
import { expectProblem } from './support/problems.js';
import { drivers, useTestSystem } from './support/system.js';

/** One request over a fresh connection, written byte for byte, and the raw answer until the server closes or answers whole. */
async function rawExchange(url: string, request: string): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? NaN);
      if (split >= 0 && Buffer.byteLength(text.slice(split + 4)) >= length) resolve();
    });
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  socket.write(request);
  await done;
  socket.destroy();
  const text = Buffer.concat(chunks).toString('utf8');
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers = new Map(headerLines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

describe.each(drivers)('problems for every error on %s', (driver) => {
  const t = useTestSystem({ driver });

  it('answers an id of 10,000 characters with a 414 problem that does not echo the URL back', async () => {
    const org = await createPopulatedOrg(t);
    const long = 'a'.repeat(10_000);
    for (const path of [`/v1/orgs/${org.orgId}/jobs/${long}`, `/v1/orgs/${long}/repositories`, `/v1/orgs/${org.orgId}/jobs/${long}/logs/stream`]) {
      const response = await t.fetch(path, { headers: { authorization: `Bearer ${org.tokens.member}` } });
      expect(response.status, path).toBe(414);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as { code: string; detail: string; instance: string };
      expect(problem.code).toBe('uri_too_long');
      expect(problem.detail).not.toContain('aaaaaaaaaa');
      expect(problem.instance.length).toBeLessThan(300);
    }
  });

  it('answers a malformed percent-encoding in the path with a 400 problem', async () => {
    const org = await createPopulatedOrg(t);
    for (const path of [`/v1/orgs/${org.orgId}/jobs/%zz`, `/v1/orgs/%E0%A4%A/jobs`]) {
      const response = await t.fetch(path, { headers: { authorization: `Bearer ${org.tokens.member}` } });
      expect(response.status, path).toBe(400);
      expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      // Not expectProblem: instance escapes the malformed escape itself, so it differs from the path sent.
      const problem = (await response.json()) as { code: string; detail: string; instance: string };
      expect(problem.code).toBe('invalid_argument');
      expect(problem.detail).toMatch(/percent-encoding/);
      expect(problem.instance).toContain('%25');
    }
  });

  it('answers 100 KB of headers with a 431 problem', async () => {
    const org = await createPopulatedOrg(t);
    const path = `/v1/orgs/${org.orgId}/jobs`;
    const answer = await rawExchange(t.url, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(100_000)}\r\n\r\n`);
    expect(answer.status).toBe(431);
    expect(answer.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = JSON.parse(answer.body) as Record<string, unknown>;
    expect(problem).toMatchObject({ type: 'urn:agent-jobs:problem:request-header-fields-too-large', status: 431, code: 'request_header_fields_too_large', instance: path });
    await assertMatchesContract('GET', `${t.url}${path}`, new Response(answer.body, { status: 431, headers: { 'content-type': 'application/problem+json' } }));
  });

  it('answers a request line that is not HTTP with a 400 problem', async () => {
    const answer = await rawExchange(t.url, 'HELLO WORLD\r\n\r\n');
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ status: 400, code: 'invalid_argument' });
  });

  it('answers TRACE, OPTIONS and QUERY on a known path with 405 and the methods it has, whatever their body', async () => {
    const org = await createPopulatedOrg(t);
    // QUERY carries a body, and Fastify wants its Content-Type before it finds there is no such route.
    for (const method of ['TRACE', 'OPTIONS', 'QUERY']) {
      const answer = await rawExchange(t.url, `${method} /v1/orgs/${org.orgId}/jobs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      expect(answer.status, method).toBe(405);
      expect(answer.headers.get('allow')).toBe('GET, HEAD, POST');
      expect(JSON.parse(answer.body)).toMatchObject({ code: 'method_not_allowed', status: 405 });
    }
  });

  it('answers HEAD on a GET operation as GET does, without a body', async () => {
    const response = await fetch(`${t.url}/healthz`, { method: 'HEAD' });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('');
  });
});
