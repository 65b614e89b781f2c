// SIGTERM drains each role within its stated budget (README, "Stopping"): the API stops taking
// requests and finishes those under way, the gateway moves its agents away, the worker finishes its
// tasks, all side by side. A quiet system stops with nothing forced and no error logged; a client
// that never finishes its request does not hold the stop past the API's budget. (The gateway's side:
// test/gateway-drain.test.ts; viewers' 1001: test/log-stream-going-away.test.ts.)
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { dropTestDatabases, startTestSystem, type LogLine } from './support/system.js';

const errors = (lines: LogLine[]) => lines.filter((line) => line.level >= 50);
const forced = (lines: LogLine[]) => lines.filter((line) => line.msg.endsWith('drain budget spent: cut what was left'));

describe('stopping each role within its drain budget', () => {
  afterAll(() => dropTestDatabases());

  it('stops a quiet system with every role drained, nothing cut and no error logged', async () => {
    const t = await startTestSystem({ driver: 'pglite', captureLog: true });
    await t.stop();
    expect(errors(t.logLines)).toEqual([]);
    expect(forced(t.logLines)).toEqual([]);
    expect(t.logLines.filter((line) => / stopped$/.test(line.msg)).map((line) => line.role).sort()).toEqual(['api', 'gateway', 'worker']);
  });

  it('cuts a request that never completes once the API budget is spent, and says so', async () => {
    const t = await startTestSystem({ driver: 'pglite', captureLog: true, env: { API_DRAIN_TIMEOUT: '1s' } });
    const { hostname, port } = new URL(t.url);
    const socket = net.connect({ host: hostname, port: Number(port) });
    await new Promise((resolve) => socket.once('connect', resolve));
    // Headers begun and never ended: Node's server.close() waits for such a request (up to its
    // headersTimeout, a minute), and so would the stop.
    socket.write('GET /healthz HTTP/1.1\r\nhost: localhost\r\n');
    const cut = new Promise((resolve) => socket.once('close', resolve));
    socket.on('error', () => {});

    await t.stop();
    await cut;
    expect(forced(t.logLines)).toMatchObject([{ role: 'api', level: 40, left: { connections: 1 } }]);
    expect(errors(t.logLines)).toEqual([]);
  });
});
