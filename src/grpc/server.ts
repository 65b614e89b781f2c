// The gRPC endpoint agents connect to. It serves the standard gRPC health service; the agent.v1
// AgentService is registered by the agent gateway.
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { readGateInterceptor } from './read-gate.js';

export interface GrpcEndpoint {
  server: Server;
  health: HealthImplementation;
  /** The port actually bound (GRPC_PORT, or the one the OS chose for 0). */
  port: number;
  stop(): Promise<void>;
}

const KEEPALIVE = {
  // Agents sit behind NATs and load balancers that drop quiet connections: ping them.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
};

export async function startGrpcEndpoint(host: string, port: number, register: (server: Server) => void = () => {}): Promise<GrpcEndpoint> {
  // Every call gets a ReadGate, so a session that pauses stops reading, not only handling.
  const server = new Server({ ...KEEPALIVE, interceptors: [readGateInterceptor] });
  const health = new HealthImplementation({ '': 'SERVING' });
  health.addToServer(server);
  register(server);
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, actual) => (err ? reject(err) : resolve(actual)));
  });
  return {
    server,
    health,
    port: bound,
    async stop() {
      health.setStatus('', 'NOT_SERVING');
      await new Promise<void>((resolve) => {
        // Open calls end first (the gateway has ended the agents' streams by now; a health check is
        // short): a moment for them, then what is left is cut.
        const force = setTimeout(() => server.forceShutdown(), 1_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
