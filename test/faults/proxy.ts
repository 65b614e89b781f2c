// A loopback TCP proxy the suite controls, standing for the network between two parts of the
// system: each agent reaches the gateways through one of its own (so a row can cut one agent's link
// while both ends live), and the roles reach PostgreSQL through one (so a row can take the database
// away from under them). A new connection goes to the first target that accepts it, which is how a
// load balancer in front of two gateways moves an agent off one that died.
import net from 'node:net';

export interface Proxy {
  /** host:port to connect to instead of the targets. */
  address: string;
  port: number;
  /** Replaces the targets new connections go to; open connections stay where they are. */
  setTargets(targets: string[]): void;
  /** Which target each open connection goes to (a connection counts once). */
  connectionsByTarget(): Map<string, number>;
  /** Drops every open connection (both sides) and refuses new ones until restore(): a cut link. */
  sever(): number;
  /** Accepts and forwards connections again. */
  restore(): void;
  readonly severed: boolean;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  target: string;
}

function splitAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/** Connects to the first target that accepts, in order; undefined when none does. */
async function connectFirst(targets: readonly string[]): Promise<{ socket: net.Socket; target: string } | undefined> {
  for (const target of targets) {
    const { host, port } = splitAddress(target);
    const socket = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect({ host, port });
      const fail = () => {
        s.destroy();
        resolve(undefined);
      };
      // A frozen (SIGSTOPped) target still completes the TCP handshake in the kernel, as a hung
      // server does; only a dead one refuses. That difference is the point of the freeze rows.
      s.setTimeout(2_000, fail);
      s.once('error', fail);
      s.once('connect', () => {
        s.setTimeout(0);
        s.removeListener('error', fail);
        resolve(s);
      });
    });
    if (socket) return { socket, target };
  }
  return undefined;
}

export async function startProxy(targets: string[], port = 0): Promise<Proxy> {
  let current = [...targets];
  let severed = false;
  const pairs = new Set<Pair>();

  const server = net.createServer((client) => {
    client.on('error', () => client.destroy());
    if (severed) {
      client.destroy();
      return;
    }
    // Hold what the client sends until the upstream is open.
    client.pause();
    void connectFirst(current).then((found) => {
      if (!found || severed || client.destroyed) {
        found?.socket.destroy();
        client.destroy();
        return;
      }
      const pair: Pair = { client, upstream: found.socket, target: found.target };
      pairs.add(pair);
      const { upstream } = pair;
      upstream.on('error', () => upstream.destroy());
      client.on('close', () => {
        upstream.destroy();
        pairs.delete(pair);
      });
      upstream.on('close', () => {
        client.destroy();
        pairs.delete(pair);
      });
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: listening } = server.address() as net.AddressInfo;

  return {
    address: `127.0.0.1:${listening}`,
    port: listening,
    setTargets(next) {
      current = [...next];
    },
    connectionsByTarget() {
      const counts = new Map<string, number>();
      for (const pair of pairs) counts.set(pair.target, (counts.get(pair.target) ?? 0) + 1);
      return counts;
    },
    sever() {
      severed = true;
      const count = pairs.size;
      for (const pair of [...pairs]) {
        // resetAndDestroy sends RST, as a broken network path or a killed proxy leaves the peer with.
        pair.client.resetAndDestroy();
        pair.upstream.resetAndDestroy();
      }
      pairs.clear();
      return count;
    },
    restore() {
      severed = false;
    },
    get severed() {
      return severed;
    },
    close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
