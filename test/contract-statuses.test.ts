// Every operation of openapi.yaml answers each refusal it declares, as declared: 400 for a malformed id,
// 401 without a token, 403 for a member whose role is too low (a Member on Admin operations; a custom role
// that inherits nothing on the Member ones), 404 for another organisation's path or object (told apart
// from nothing that does not exist), 414 for an overlong id and 431 for oversized headers; a 403 or 404
// changes nothing stored. This file is the one home of the role and tenancy refusals over REST (the log
// stream's close codes live in log-stream.test.ts). The operations come from the contract itself, so a
// new one is covered at once.
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { Problem } from '../generated/sdk/index.js';
import type { OrgRole } from '../src/services/access.js';
import { assertMatchesContract } from './support/contract.js';
import { createOrg, createPopulatedOrg, storedState } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { expectProblem } from './support/problems.js';
import { drivers, useTestSystem } from './support/system.js';

interface Operation {
  operationId: string;
  method: string;
  template: string;
  declared: number[];
  minimumRole: string | undefined;
  /** A WebSocket upgrade: refused before the upgrade with HTTP statuses, after it with close codes. */
  websocket: boolean;
}

const spec = parse(fs.readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as {
  paths: Record<string, Record<string, { operationId?: string; 'x-websocket'?: boolean; responses?: Record<string, unknown>; security?: Record<string, string[]>[] }>>;
};
const operations: Operation[] = Object.entries(spec.paths).flatMap(([template, item]) =>
  Object.entries(item)
    .filter(([, op]) => typeof op === 'object' && op?.operationId)
    .map(([method, op]) => ({
      operationId: op.operationId!,
      method: method.toUpperCase(),
      template,
      declared: Object.keys(op.responses ?? {}).map(Number),
      websocket: op['x-websocket'] === true,
      minimumRole: op.security?.[0]?.bearerAuth?.[0],
    })),
);

/** A body each operation takes, so that only the refusal under test can fail the request. */
function bodyFor(operationId: string, repoId: string | undefined): string | undefined {
  const bodies: Record<string, unknown> = {
    createRepository: { name: `r-${randomUUID().slice(0, 8)}`, cloneUrl: 'https://git.example.test/a.git' },
    createJob: { prompt: 'Fix it', repoId, queueType: 'backlog' },
    cancelJob: {},
    createAgentToken: { name: 'farm' },
  };
  return operationId in bodies ? JSON.stringify(bodies[operationId]) : undefined;
}

async function rawStatus(url: string, request: string): Promise<{ status: number; body: string; contentType: string }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
    socket.write(request);
  });
  const [head = '', body = ''] = Buffer.concat(chunks).toString('utf8').split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), body, contentType: /\r\ncontent-type: *([^\r]+)/i.exec(head)?.[1] ?? '' };
}

describe.each(drivers)('every operation answers the refusals it declares, on %s', (driver) => {
  const t = useTestSystem({ driver });

  async function fixture() {
    const org = await createPopulatedOrg(t);
    // PropelAuth organisations may define roles of their own; one that inherits nothing is below Member.
    const outsider = await t.token({ orgs: { [org.orgId]: 'Guest' as OrgRole } });
    const ids = (overrides: Record<string, string> = {}): Record<string, string> => ({ orgId: org.orgId, repoId: org.repo.id, jobId: org.job.id, tokenId: org.token.id, ...overrides });
    const pathOf = (op: Operation, values: Record<string, string>) => op.template.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? '');
    // createJob names its repository in the body: there, repoId is the object the request is about.
    const send = (op: Operation, values: Record<string, string>, token: string | undefined) => {
      const body = bodyFor(op.operationId, values.repoId);
      return t.fetch(pathOf(op, values), {
        method: op.method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body } : {}),
      });
    };
    return { org, outsider, ids, pathOf, send, stored: () => storedState(org.owner, org.orgId) };
  }

  /** A problem as a client could compare it: its instance (the path) set aside and `id` masked, where the detail names it. */
  const comparable = (problem: Problem, id?: string) => {
    const { instance: _instance, ...rest } = problem;
    return id ? (JSON.parse(JSON.stringify(rest).replaceAll(id, '{id}')) as typeof rest) : rest;
  };

  for (const op of operations) {
    describe(`${op.operationId} (${op.method} ${op.template})`, () => {
      const parameters = [...op.template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
      /** The id of the one object the request names besides its organisation, in the path or (createJob) the body. */
      const objectParameter = op.operationId === 'createJob' ? 'repoId' : parameters.filter((p) => p !== 'orgId').at(-1);

      it.runIf(op.declared.includes(401))('401 without a token', async () => {
        const f = await fixture();
        await expectProblem(await f.send(op, f.ids(), undefined), 401, 'unauthenticated');
      });

      it.runIf(op.declared.includes(404))(
        "404 on another organisation's path, to its neighbour's Owner and to a user of no organisation, exactly as for an organisation that does not exist, and nothing changes",
        async () => {
          const f = await fixture();
          const before = await f.stored();
          const neighbour = await createOrg(t);
          const loner = await t.token({ orgs: {} });
          const missing = await expectProblem(await f.send(op, f.ids({ orgId: randomUUID() }), f.org.tokens.owner), 404, 'not_found');
          // An Owner, so that an Admin operation still answers 404 rather than 403: the path reveals nothing.
          for (const token of [neighbour.tokens.owner, loner]) {
            const foreign = await expectProblem(await f.send(op, f.ids(), token), 404, 'not_found');
            expect(comparable(foreign)).toEqual(comparable(missing));
          }
          expect(await f.stored()).toEqual(before);
        },
      );

      it.runIf(op.declared.includes(404) && objectParameter !== undefined)(
        `404 for another organisation's ${objectParameter} named in my own organisation's request, exactly as for one that does not exist, and nothing changes`,
        async () => {
          const f = await fixture();
          const mine = await createOrg(t);
          const theirsBefore = await f.stored();
          const mineBefore = await storedState(mine.owner, mine.orgId);
          const theirId = f.ids()[objectParameter!]!;
          const noneId = randomUUID();
          const foreign = await expectProblem(await f.send(op, f.ids({ orgId: mine.orgId }), mine.tokens.owner), 404, 'not_found');
          const missing = await expectProblem(await f.send(op, f.ids({ orgId: mine.orgId, [objectParameter!]: noneId }), mine.tokens.owner), 404, 'not_found');
          expect(comparable(foreign, theirId)).toEqual(comparable(missing, noneId));
          expect(await f.stored()).toEqual(theirsBefore);
          expect(await storedState(mine.owner, mine.orgId)).toEqual(mineBefore);
        },
      );

      it.runIf(op.declared.includes(400) && op.websocket)('400 for a malformed percent-encoding, before any upgrade', async () => {
        const f = await fixture();
        const response = await f.send(op, f.ids({ jobId: '%zz' }), f.org.tokens.owner);
        expect(response.status).toBe(400);
      });

      it.runIf(op.websocket)('4403 after the upgrade for a member whose role is below Member', async () => {
        const f = await fixture();
        const viewer = new LogStreamViewer(t.url, f.org.orgId, f.org.job.id, { token: f.outsider });
        expect((await viewer.closed).code).toBe(4403);
      });

      it.runIf(op.declared.includes(400) && parameters.length > 0 && !op.websocket)('400 for an id that is not a uuid', async () => {
        const f = await fixture();
        await expectProblem(await f.send(op, f.ids({ [parameters.at(-1)!]: 'not-a-uuid' }), f.org.tokens.owner), 400, 'invalid_argument');
      });

      it.runIf(op.declared.includes(403))('403 for a member whose role is below the one the operation needs, and nothing changes', async () => {
        const f = await fixture();
        const before = await f.stored();
        const token = op.minimumRole === 'Member' ? f.outsider : f.org.tokens.member;
        await expectProblem(await f.send(op, f.ids(), token), 403, 'permission_denied');
        expect(await f.stored()).toEqual(before);
      });

      it.runIf(op.declared.includes(414))('414 for an id of 200 characters', async () => {
        const f = await fixture();
        const response = await f.send(op, f.ids({ [parameters.at(-1)!]: 'a'.repeat(200) }), f.org.tokens.owner);
        expect(response.status).toBe(414);
        expect(((await response.json()) as { code: string }).code).toBe('uri_too_long');
      });

      it.runIf(op.declared.includes(431))('431 for 100 KB of headers', async () => {
        const f = await fixture();
        const pathname = f.pathOf(op, f.ids());
        const answer = await rawStatus(t.url, `${op.method} ${pathname} HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(100_000)}\r\n\r\n`);
        expect(answer.status).toBe(431);
        await assertMatchesContract(op.method, `${t.url}${pathname}`, new Response(answer.body, { status: 431, headers: { 'content-type': answer.contentType } }));
      });
    });
  }
});
