// The HTTP server's open connections (requests under way, keep-alive, WebSockets), so that a stop
// whose drain budget is spent can cut them: Node's server.close() waits for every one of them, and
// a request that never completes (or a viewer that never answers the close) would hold it forever.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface OpenConnections {
  /** Destroys every open connection; says how many there were. */
  cutAll(): number;
}

export function trackConnections(server: Server): OpenConnections {
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  return {
    cutAll() {
      const count = open.size;
      for (const socket of open) socket.destroy();
      return count;
    },
  };
}
