// Inputs a hostile or careless client sends, which the contract allows or the server used to mishandle:
// numbers past what the server can store, cursors from beyond year 9999, bytes that are not UTF-8, lone
// surrogates, deep nesting, poisoning keys, ids in upper case, WebSocket frames that break the
// protocol. Each gets a 4xx problem (or a documented close code) that says what is wrong, and changes
// nothing stored. Also: the errors a newcomer meets say enough to fix the request.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { Ajv2020 } from 'ajv/dist/2020.js';
import formats from 'ajv-formats';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import WebSocket from 'ws';
import { parse } from 'yaml';
import { websocketOperations } from '../generated/openapi/frames.js';
import { loadConfig } from '../src/config.js';
import { loadOrCreateDevKeys } from '../src/services/auth/dev-keys.js';
import { bindCursor, cursorScope } from '../src/services/cursor.js';
import { mintDevToken } from '../src/services/auth/dev-tokens.js';
import { startSystem, type RunningSystem } from '../src/system.js';
import { assertCloseCodeInContract } from './support/contract.js';
import { createAgentToken, createPopulatedOrg, storedState } from './support/factories.js';
import { LogStreamViewer } from './support/log-stream-client.js';
import { expectProblem, pointers } from './support/problems.js';
import { drivers, useTestSystem } from './support/system.js';

/** The largest `after` (and `seq`) openapi.yaml allows: 2^53 − 1. */
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

describe.each(drivers)('hostile input on %s', (driver) => {
  const t = useTestSystem({ driver });

  async function populatedOrg() {
    const org = await createPopulatedOrg(t);
    const raw = (method: string, pathname: string, body?: string | Uint8Array, contentType = 'application/json', token = org.tokens.owner) =>
      t.fetch(pathname, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
        ...(body !== undefined ? { body } : {}),
      });
    const jobs = `/v1/orgs/${org.orgId}/jobs`;
    return { ...org, raw, jobs, stored: () => storedState(org.owner, org.orgId) };
  }
  type Org = Awaited<ReturnType<typeof populatedOrg>>;

  async function refusedAndNothingStored(org: Org, request: () => Promise<Response>, status: number, code: Parameters<typeof expectProblem>[2]) {
    const before = await org.stored();
    const problem = await expectProblem(await request(), status, code);
    expect(await org.stored()).toEqual(before);
    return problem;
  }

  describe('numbers past what the server can store', () => {
    it.each([
      ['99999999999999999999', 'past any integer type'],
      ['9223372036854775807', 'the bigint maximum, past what a JSON number carries exactly'],
      ['9007199254740993', 'one past 2^53, which a JSON number would silently round to 2^53'],
      [String(MAX_SEQ + 1), '2^53'],
      ['1e400', 'infinite'],
    ])('refuses a log page after=%s (%s) with 400 at /query/after', async (after) => {
      const org = await populatedOrg();
      const problem = await expectProblem(await org.raw('GET', `${org.jobs}/${org.job.id}/logs?after=${after}`), 400, 'invalid_argument');
      expect(pointers(problem)).toEqual(['/query/after']);
    });

    it('refuses an infinite limit, which the parameter coercion would let past its maximum', async () => {
      const org = await populatedOrg();
      for (const pathname of [`${org.jobs}/${org.job.id}/logs?limit=1e400`, `${org.jobs}?limit=1e400`, `/v1/orgs/${org.orgId}/repositories?limit=1e400`]) {
        const problem = await expectProblem(await org.raw('GET', pathname), 400, 'invalid_argument');
        expect(pointers(problem), pathname).toEqual(['/query/limit']);
      }
    });

    it('accepts after=2^53 − 1, the maximum the contract states, and answers an empty page there', async () => {
      const org = await populatedOrg();
      const response = await org.raw('GET', `${org.jobs}/${org.job.id}/logs?after=${MAX_SEQ}`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ items: [], nextAfter: MAX_SEQ, jobFinished: false });
    });

    it('closes a log stream whose after is out of range with 4400 and sends nothing first', async () => {
      const org = await populatedOrg();
      for (const after of ['99999999999999999999', '9223372036854775807', String(MAX_SEQ + 1)]) {
        const viewer = new LogStreamViewer(t.url, org.orgId, org.job.id, { token: org.tokens.member, query: `after=${after}` });
        expect(await viewer.closed).toMatchObject({ code: 4400, reason: expect.stringContaining('/query/after') });
        expect(viewer.frames).toEqual([]);
      }
    });
  });

  describe('cursors', () => {
    // Bound to the listing as the server binds its own, so the time is what is checked.
    const cursorAt = (orgId: string, millis: number) => bindCursor(Buffer.from(`${millis}.${randomUUID()}`).toString('base64url'), cursorScope('jobs', orgId));

    it('refuses a well-formed cursor whose time is past year 9999 with 400 "not a valid cursor"', async () => {
      const org = await populatedOrg();
      for (const millis of [Date.UTC(9999, 11, 31, 23, 59, 59, 999) + 1, 999_999_999_999_999]) {
        const problem = await expectProblem(await org.raw('GET', `${org.jobs}?cursor=${cursorAt(org.orgId, millis)}`), 400, 'invalid_argument');
        expect(problem.errors).toEqual([{ pointer: '/query/cursor', message: 'is not a valid cursor' }]);
      }
    });

    it('takes a cursor at the last millisecond of year 9999 (everything is older)', async () => {
      const org = await populatedOrg();
      const response = await org.raw('GET', `${org.jobs}?cursor=${cursorAt(org.orgId, Date.UTC(9999, 11, 31, 23, 59, 59, 999))}`);
      expect(response.status).toBe(200);
      expect(((await response.json()) as { items: { id: string }[] }).items.map((j) => j.id)).toEqual([org.job.id]);
    });
  });

  describe('text the server cannot store unchanged', () => {
    it('refuses a body with bytes that are not UTF-8 with 400, instead of storing U+FFFD', async () => {
      const org = await populatedOrg();
      const json = Buffer.from(JSON.stringify({ prompt: 'Fix it XX', repoId: org.repo.id, queueType: 'backlog' }));
      const at = json.indexOf('XX');
      json[at] = 0xff;
      json[at + 1] = 0xfe;
      const problem = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, json), 400, 'invalid_argument');
      expect(problem.detail).toMatch(/UTF-8/);
    });

    it('refuses a lone surrogate escape with 400 pointing at the field, and keeps a surrogate pair exactly', async () => {
      const org = await populatedOrg();
      for (const [pathname, body, pointer] of [
        [org.jobs, `{"prompt": "Fix \\ud800 it", "repoId": "${org.repo.id}", "queueType": "backlog"}`, '/prompt'],
        [org.jobs, `{"prompt": "Fix it", "repoId": "${org.repo.id}", "queueType": "backlog", "labels": ["ok", "\\udfff"]}`, '/labels/1'],
        [`${org.jobs}/${org.job.id}/cancel`, '{"reason": "\\udc00"}', '/reason'],
        [`/v1/orgs/${org.orgId}/agent-tokens`, '{"name": "farm \\ud83d"}', '/name'],
      ] as const) {
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', pathname, body), 400, 'invalid_argument');
        expect(problem.errors, body).toEqual([{ pointer, message: expect.stringContaining('lone surrogate') }]);
      }
      const taken = await org.raw('POST', org.jobs, `{"prompt": "Fix \\ud83d\\ude00 it", "repoId": "${org.repo.id}", "queueType": "backlog"}`);
      expect(taken.status).toBe(201);
      expect(((await taken.json()) as { prompt: string }).prompt).toBe('Fix 😀 it');
    });

    it('refuses NUL where the contract refuses it, so the contract and the server agree', async () => {
      const org = await populatedOrg();
      const contract = contractValidators();
      const cases = [
        ['CreateRepositoryRequest', `/v1/orgs/${org.orgId}/repositories`, { name: 'nul', cloneUrl: 'https://git.example.test/a\u0000b.git' }, '/cloneUrl'],
        ['CreateRepositoryRequest', `/v1/orgs/${org.orgId}/repositories`, { name: 'nul', cloneUrl: 'git@host:a\u0000b' }, '/cloneUrl'],
        ['CreateRepositoryRequest', `/v1/orgs/${org.orgId}/repositories`, { name: 'nul', cloneUrl: 'https://git.example.test/a.git', defaultBranch: 'ma\u0000in' }, '/defaultBranch'],
        ['CreateJobRequest', org.jobs, { prompt: 'Fix\u0000it', repoId: org.repo.id, queueType: 'backlog' }, '/prompt'],
        ['CreateJobRequest', org.jobs, { prompt: '\u0000', repoId: org.repo.id, queueType: 'backlog' }, '/prompt'],
        ['CancelJobRequest', `${org.jobs}/${org.job.id}/cancel`, { reason: 'no\u0000pe' }, '/reason'],
        ['CreateAgentTokenRequest', `/v1/orgs/${org.orgId}/agent-tokens`, { name: 'farm\u0000' }, '/name'],
      ] as const;
      for (const [schema, pathname, body, pointer] of cases) {
        expect(contract(schema, body), `${schema} ${JSON.stringify(body)}`).toBe(false);
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', pathname, JSON.stringify(body)), 400, 'invalid_argument');
        expect(problem.errors, JSON.stringify(body)).toEqual([{ pointer, message: 'must not contain a NUL character' }]);
      }
      // What the contract takes, the server takes.
      expect(contract('CreateJobRequest', { prompt: ' \tFix it', repoId: org.repo.id, queueType: 'backlog' })).toBe(true);
      expect((await org.raw('POST', org.jobs, JSON.stringify({ prompt: ' \tFix it', repoId: org.repo.id, queueType: 'backlog' }))).status).toBe(201);
    });
  });

  describe('bodies built to break the parser', () => {
    it('refuses JSON nested thousands deep with a 400 that says so, not a stack overflow', async () => {
      const org = await populatedOrg();
      for (const depth of [33, 2_500, 100_000]) {
        const body = `{"prompt": "Fix it", "repoId": "${org.repo.id}", "queueType": "backlog", "labels": ${'['.repeat(depth)}${']'.repeat(depth)}}`;
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, body), 400, 'invalid_argument');
        expect(problem.detail).toMatch(/nested more than 32 levels/);
      }
      // Brackets inside strings are text, not nesting.
      const bracketed = await org.raw('POST', org.jobs, JSON.stringify({ prompt: `Fix ${'[{'.repeat(100)} it`, repoId: org.repo.id, queueType: 'backlog' }));
      expect(bracketed.status).toBe(201);
    });

    it('refuses a __proto__ or constructor.prototype key with a 400 that names it', async () => {
      const org = await populatedOrg();
      for (const body of [
        `{"__proto__": {"admin": true}, "prompt": "Fix it", "repoId": "${org.repo.id}", "queueType": "backlog"}`,
        `{"constructor": {"prototype": {"admin": true}}, "prompt": "Fix it", "repoId": "${org.repo.id}", "queueType": "backlog"}`,
      ]) {
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, body), 400, 'invalid_argument');
        expect(problem.detail).toContain('__proto__');
      }
    });

    it('says where JSON that does not parse goes wrong', async () => {
      const org = await populatedOrg();
      const problem = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, '{"prompt": "Fix it",}'), 400, 'invalid_argument');
      expect(problem.detail).toMatch(/^The request body is not valid JSON: .+/);
    });
  });

  describe('ids in upper case', () => {
    it('treats an organisation id in upper case like a job id in upper case: the same object', async () => {
      const org = await populatedOrg();
      const ORG = org.orgId.toUpperCase();
      const JOB = org.job.id.toUpperCase();
      const job = await org.raw('GET', `/v1/orgs/${ORG}/jobs/${JOB}`);
      expect(job.status).toBe(200);
      expect(((await job.json()) as { id: string }).id).toBe(org.job.id);
      const list = await org.raw('GET', `/v1/orgs/${ORG}/repositories/${org.repo.id.toUpperCase()}`);
      expect(list.status).toBe(200);
      const created = await org.raw('POST', `/v1/orgs/${ORG}/jobs`, JSON.stringify({ prompt: 'Fix it', repoId: org.repo.id.toUpperCase(), queueType: 'backlog' }));
      expect(created.status).toBe(201);
      // The Location names the job as stored, in lower case.
      expect(created.headers.get('location')).toMatch(new RegExp(`^/v1/orgs/${org.orgId}/jobs/[0-9a-f-]{36}$`));
      const viewer = new LogStreamViewer(t.url, ORG, JOB, { token: org.tokens.member });
      await viewer.until((v) => v.statuses.length > 0);
      viewer.cut();
    });
  });

  describe('WebSocket frames that break the protocol', () => {
    /** A viewer following a queued job, with its raw socket so the test can send what a browser would not. */
    async function followingSocket(org: Org): Promise<{ socket: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
      const { subprotocol, tokenSubprotocolPrefix, path: template } = websocketOperations.streamJobLogs;
      const url = `${t.url.replace(/^http/, 'ws')}${template.replace('{orgId}', org.orgId).replace('{jobId}', org.job.id)}`;
      const socket = new WebSocket(url, [subprotocol, `${tokenSubprotocolPrefix}${org.tokens.member}`]);
      socket.on('error', () => {});
      const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
      // The status frame says the server follows the job.
      await new Promise<void>((resolve) => socket.once('message', () => resolve()));
      return { socket, closed };
    }

    it.each([
      ['a message over 4 KiB', 1009, (s: WebSocket) => s.send('x'.repeat(5000))],
      ['a text frame that is not UTF-8', 1007, (s: WebSocket) => s.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })],
      // FIN + reserved opcode 0x3, masked, empty: no WebSocket client sends this on purpose.
      ['a frame with an unknown opcode', 1002, (s: WebSocket) => rawSocketOf(s).write(Buffer.from([0x83, 0x80, 0, 0, 0, 0]))],
    ])('closes a viewer that sends %s with %i, a code the contract lists', async (_, code, send) => {
      const org = await populatedOrg();
      const { socket, closed } = await followingSocket(org);
      send(socket);
      expect((await closed).code).toBe(code);
      assertCloseCodeInContract(code);
    });
  });

  describe('errors a newcomer meets', () => {
    it('lists the allowed values of an enum it refuses', async () => {
      const org = await populatedOrg();
      const query = await expectProblem(await org.raw('GET', `${org.jobs}?queueType=urgent`), 400, 'invalid_argument');
      expect(query.errors).toEqual([{ pointer: '/query/queueType', message: 'must be one of: "backlog", "rework"' }]);
      const body = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, JSON.stringify({ prompt: 'Fix it', repoId: org.repo.id, queueType: 'urgent' })), 400, 'invalid_argument');
      expect(body.errors).toEqual([{ pointer: '/queueType', message: 'must be one of: "backlog", "rework"' }]);
    });

    it('says which content type it got and which one to send in a 415', async () => {
      const org = await populatedOrg();
      for (const contentType of ['application/xml', 'text/plain', 'multipart/form-data; boundary=x']) {
        const problem = await refusedAndNothingStored(org, () => org.raw('POST', org.jobs, '<job/>', contentType), 415, 'unsupported_media_type');
        expect(problem.detail, contentType).toMatch(new RegExp(`"${contentType.split(';')[0]}.*send application/json`));
      }
    });

    it('says an agent token is an agent token when one is sent to the HTTP API or the log stream', async () => {
      const org = await populatedOrg();
      const { secret } = await createAgentToken(org.admin, org.orgId);
      const problem = await expectProblem(await org.raw('GET', org.jobs, undefined, undefined, secret), 401, 'unauthenticated');
      expect(problem.detail).toMatch(/agent token.*gRPC/);
      const viewer = new LogStreamViewer(t.url, org.orgId, org.job.id, { token: secret, tokenInHeader: true });
      expect(await viewer.closed).toMatchObject({ code: 4401, reason: expect.stringMatching(/agent token/) });
    });
  });
});

describe('npm run token, as a newcomer types it', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-token-'));
  });
  afterAll(async () => {
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  const run = async (...args: string[]) => {
    const tsx = path.resolve('node_modules/.bin/tsx');
    try {
      const { stdout, stderr } = await promisify(execFile)(tsx, ['scripts/mint-token.ts', ...args], { env: { ...process.env, DATA_DIR: dataDir } });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const failed = err as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  const org = '3F1C9A52-5A8E-4C1E-9A53-1D2C3B4A5E6F';

  it('prints its usage for --help, and for an unknown option without a stack trace', async () => {
    const help = await run('--help');
    expect(help).toMatchObject({ code: 0, stdout: expect.stringMatching(/^usage: npm run token/) });
    const bogus = await run('--bogus');
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/Unknown option '--bogus'[\s\S]*usage:/);
    expect(bogus.stderr).not.toMatch(/\n\s+at /);
  });

  it('takes a role in any letter case, and refuses an unknown one by naming the roles', async () => {
    const admin = await run('--org', org, '--user', 'alice', '--role', 'admin');
    expect(admin.code).toBe(0);
    const claims = JSON.parse(Buffer.from(admin.stdout.trim().split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(JSON.stringify(claims)).toContain('"Admin"');
    expect(JSON.stringify(claims)).toContain(org.toLowerCase());
    const boss = await run('--org', org, '--user', 'alice', '--role', 'boss');
    expect(boss.code).toBe(2);
    expect(boss.stderr).toMatch(/--role boss is not a role; use one of Member, Admin, Owner/);
  });
});

describe('the log of a server whose viewers break the WebSocket protocol', () => {
  const lines: { level: number; msg?: string; err?: { stack?: string } }[] = [];
  let system: RunningSystem;
  let token: string;
  const orgId = randomUUID();
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agent-jobs-wslog-'));
    const config = loadConfig({
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PORT: '0',
      GRPC_PORT: '0',
      DATA_DIR: dataDir,
      LOG_LEVEL: 'info',
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: `jobs-${randomUUID()}`,
      TEMPORAL_WORKFLOW_BUNDLE: inject('workflowBundlePath'),
    });
    // The real logger, writing where the test can read it.
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as (typeof lines)[number]);
        done();
      },
    });
    system = await startSystem(config, pino({ level: 'info' }, sink));
    if (config.auth.mode !== 'dev') throw new Error('dev auth expected');
    token = await mintDevToken(loadOrCreateDevKeys(config.auth.keyDir).privateKeyPem, config.auth.issuer, { userId: 'viewer', orgs: [{ orgId, role: 'Owner' }] });
  });
  afterAll(async () => {
    await system?.stop();
    await fs.rm(dataDir, { recursive: true, force: true });
  });

  it('notes each violation at info level without a stack, and writes no error line', async () => {
    const base = system.httpUrl!;
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const repo = (await (await fetch(`${base}/v1/orgs/${orgId}/repositories`, { method: 'POST', headers, body: JSON.stringify({ name: 'web', cloneUrl: 'https://git.example.test/web.git' }) })).json()) as { id: string };
    const job = (await (await fetch(`${base}/v1/orgs/${orgId}/jobs`, { method: 'POST', headers, body: JSON.stringify({ prompt: 'Fix it', repoId: repo.id, queueType: 'backlog' }) })).json()) as { id: string };
    const { subprotocol, tokenSubprotocolPrefix, path: template } = websocketOperations.streamJobLogs;
    for (const send of [(s: WebSocket) => s.send('x'.repeat(5000)), (s: WebSocket) => s.send(Buffer.from([0xff]), { binary: false })]) {
      const socket = new WebSocket(`${base.replace(/^http/, 'ws')}${template.replace('{orgId}', orgId).replace('{jobId}', job.id)}`, [subprotocol, `${tokenSubprotocolPrefix}${token}`]);
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('message', () => resolve()));
      const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
      send(socket);
      expect([1007, 1009]).toContain(await closed);
    }
    const violations = lines.filter((l) => l.msg === 'log stream viewer broke the WebSocket protocol');
    expect(violations).toHaveLength(2);
    expect(violations.every((l) => l.level === 30 && l.err === undefined)).toBe(true);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  });
});

/** The socket under a ws client, to write bytes no conforming client would. */
function rawSocketOf(socket: WebSocket): { write(data: Buffer): boolean } {
  return (socket as unknown as { _socket: { write(data: Buffer): boolean } })._socket;
}

/** A validator for each request schema of openapi.yaml, as a client generating requests from it would use. */
function contractValidators(): (schema: string, value: unknown) => boolean {
  const spec = parse(readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  const ajv = new Ajv2020({ strict: false });
  formats.default(ajv);
  ajv.addSchema(spec, 'openapi');
  return (schema, value) => {
    const validate = ajv.getSchema(`openapi#/components/schemas/${schema}`);
    if (!validate) throw new Error(`openapi.yaml has no schema ${schema}`);
    return validate(value) as boolean;
  };
}
