import { credentials, makeGenericClientConstructor, Server, ServerCredentials, type ClientDuplexStream, type Metadata, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { readGateInterceptor, readGateOf, type ReadGate } from './read-gate.js';

// A bidirectional stream of raw bytes, to watch what the server side takes in while it grants no reads.
const identity = (b: Buffer) => b;
const service: ServiceDefinition = {
  stream: { path: '/test.Gate/Stream', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'stream' },
  unary: { path: '/test.Gate/Unary', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'unary' },
};
const GateClient = makeGenericClientConstructor(service, 'Gate');
const MESSAGE = Buffer.alloc(256 * 1024, 'x');
const SENT = 40; // 10 MiB: far more than HTTP/2's windows and grpc-js's read-ahead of 16 messages

describe('the read gate on agent streams', () => {
  let stop: (() => void) | undefined;
  afterEach(() => stop?.());

  async function serve(interceptors: (typeof readGateInterceptor)[]) {
    const server = new Server({ interceptors });
    const calls: ServerDuplexStream<Buffer, Buffer>[] = [];
    server.addService(service, {
      unary: (call: { request: Buffer }, callback: (err: null, reply: Buffer) => void) => callback(null, call.request),
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
    stream.write(MESSAGE); // the call reaches the server with its first message
    await expect.poll(() => calls.length).toBe(1);
    /** A round trip on another stream of the same connection: the server has taken in what reached it before. */
    const roundTrip = async () => {
      const echo = open();
      const back = new Promise((resolve) => echo.once('data', resolve));
      echo.write(Buffer.from('ping'));
      await back;
      echo.cancel();
    };
    const unary = (request: Buffer) =>
      new Promise<Buffer>((resolve, reject) =>
        (client as unknown as { unary: (r: Buffer, cb: (err: Error | null, reply: Buffer) => void) => void }).unary(request, (err, reply) => (err ? reject(err) : resolve(reply))),
      );
    return { call: calls[0]!, stream, roundTrip, unary };
  }

  it('reads one message per grant: a session that grants none holds the one it has, and the agent waits', async () => {
    const { call, stream, roundTrip } = await serve([readGateInterceptor]);
    const gate: ReadGate | undefined = readGateOf(call.metadata as Metadata);
    expect(gate).toBeDefined();
    const received: Buffer[] = [];
    call.on('data', (b: Buffer) => received.push(b));
    for (let i = 1; i < SENT; i++) stream.write(MESSAGE);
    await expect.poll(() => received.length).toBe(1);
    // The client cannot get rid of what it wrote: HTTP/2 flow control holds it.
    await expect.poll(() => stream.writableLength, { timeout: 20_000 }).toBeGreaterThan(0);
    await roundTrip();
    expect(received).toHaveLength(1);
    expect(call.readableLength).toBe(0);

    for (let granted = 1; granted < SENT; granted++) {
      gate!.grant();
      await expect.poll(() => received.length, { timeout: 20_000 }).toBe(granted + 1);
    }
  });

  it('leaves calls with one request message alone: nothing grants their reads, and they are answered', async () => {
    const { unary } = await serve([readGateInterceptor]);
    expect((await unary(Buffer.from('health?'))).toString()).toBe('health?');
  });

  it('is what makes the difference: without it a paused call reads ahead', async () => {
    const { call, stream } = await serve([]);
    call.on('data', () => call.pause()); // takes in the first message, then pauses, as a session over its bound does

    for (let i = 1; i < SENT; i++) stream.write(MESSAGE);
    await expect.poll(() => call.readableLength, { timeout: 20_000 }).toBeGreaterThan(1);
  });
});
