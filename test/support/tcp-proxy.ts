// A loopback TCP proxy in front of a server whose connections a test can cut, as a network would.
import net from 'node:net';

export interface CuttableProxy {
  /** host:port to connect to instead of the target. */
  address: string;
  /** Destroys every open connection (both sides) and returns how many sockets it cut. */
  cut(): number;
  /** Cuts every connection and refuses new ones until heal(): the link is down while both ends live on. */
  partition(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startCuttableProxy(target: string): Promise<CuttableProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  let partitioned = false;
  const server = net.createServer((client) => {
    if (partitioned) {
      client.destroy();
      return;
    }
    const upstream = net.connect(port, host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: proxyPort } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${proxyPort}`,
    cut() {
      const count = sockets.size;
      for (const socket of sockets) socket.destroy();
      return count;
    },
    partition() {
      partitioned = true;
      for (const socket of sockets) socket.destroy();
    },
    heal() {
      partitioned = false;
    },
    // Open connections would keep close() waiting for their ends: cut them first.
    close: () =>
      new Promise<void>((resolve) => {
        partitioned = true;
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
