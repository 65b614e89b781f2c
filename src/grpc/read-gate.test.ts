import { credentials, makeGenericClientConstructor, Server, ServerCredentials, type ClientDuplexStream, type Metadata, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { readGateInterceptor, readGateOf } from './read-gate.js';

// A bidirectional stream of raw bytes, to watch what the server side holds while it does not read.
const identity = (b: Buffer) => b;
const service: ServiceDefinition = {
  stream: { path: '/test.Gate/Stream', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'stream' },
};
const GateClient = makeGenericClientConstructor(service, 'Gate');
const MESSAGE = Buffer.alloc(256 * 1024, 'x');
const SENT = 40; // 10 MiB: far more than HTTP/2's windows and grpc-js's read-ahead of 16 messages

describe('the read gate on agent streams', () => {
  let stop: (() => void) | undefined;
  afterEach(() => stop?.());

  async function serve(interceptors: typeof readGateInterceptor[]) {
    const server = new Server({ interceptors });
    const calls: ServerDuplexStream<Buffer, Buffer>[] = [];
    server.addService(service, {
      stream: (call: ServerDuplexStream<Buffer, Buffer>) => {
        // The first call is watched; later ones echo, as round trips over the same connection.
        if (calls.push(call) > 1) call.on('data', (b: Buffer) => call.write(b));
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const client = new GateClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const open = () => (client as unknown as { stream: () => ClientDuplexStream<Buffer, Buffer> }).stream().on('error', () => {}); // cancelled at the end
    const stream = open();
    stop = () => {
      stream.cancel();
      client.close();
      server.forceShutdown();
    };
    await expect.poll(() => calls.length).toBe(1);
    /** A round trip on another stream of the same connection: the server has taken in what reached it before. */
    const roundTrip = async () => {
      const echo = open();
      const back = new Promise((resolve) => echo.once('data', resolve));
      echo.write(Buffer.from('ping'));
      await back;
      echo.cancel();
    };
    return { call: calls[0]!, stream, roundTrip };
  }

  /** Pauses the server's side, writes SENT messages, and waits until the client can write no more (its buffer holds what HTTP/2 flow control refused). */
  async function writeWhilePaused(call: ServerDuplexStream<Buffer, Buffer>, stream: ClientDuplexStream<Buffer, Buffer>, close: () => void) {
    const received: Buffer[] = [];
    call.on('data', (b: Buffer) => received.push(b));
    call.pause();
    close();
    for (let i = 0; i < SENT; i++) stream.write(MESSAGE);
    // The client's buffer stays full only while the server takes nothing more.
    await expect.poll(() => stream.writableLength, { timeout: 20_000 }).toBeGreaterThan(0);
    return received;
  }

  it('holds at most the message already asked for while closed, and lets the rest through once open', async () => {
    const { call, stream, roundTrip } = await serve([readGateInterceptor]);
    const gate = readGateOf(call.metadata as Metadata);
    expect(gate).toBeDefined();
    const received = await writeWhilePaused(call, stream, () => gate!.close());
    await roundTrip();
    expect(call.readableLength).toBeLessThanOrEqual(1);
    expect(received).toEqual([]);

    gate!.open();
    call.resume();
    await expect.poll(() => received.length, { timeout: 20_000 }).toBe(SENT);
  });

  it('is what makes the difference: without it a paused call reads ahead', async () => {
    const { call, stream } = await serve([]);
    await writeWhilePaused(call, stream, () => {});
    await expect.poll(() => call.readableLength, { timeout: 20_000 }).toBeGreaterThan(1);
  });
});
