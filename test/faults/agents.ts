// The reference agent as a real process (`node --import tsx agents/typescript/src/main.ts`, what
// `npm run agent` runs), each with a state directory of its own and its own cuttable link to the
// gateways.
import fs from 'node:fs';
import path from 'node:path';
import { ManagedProcess } from './processes.js';
import { startProxy, type Proxy } from './proxy.js';
import { settings } from './settings.js';
import { root } from './system.js';

export interface Agent {
  name: string;
  process: ManagedProcess;
  /** The agent's network link: sever() cuts it while both ends live. */
  link: Proxy;
  /** Times this life of the agent has been welcomed by a gateway. */
  connections(): number;
  dispose(): Promise<void>;
}

export interface AgentSpec {
  name: string;
  secret: string;
  exec: string;
  /** Gateway addresses, in the order the link tries them. */
  gateways: string[];
  capacity?: number;
  dir: string;
}

export async function startAgent(spec: AgentSpec): Promise<Agent> {
  const link = await startProxy(spec.gateways);
  const stateDir = path.join(spec.dir, spec.name);
  fs.mkdirSync(stateDir, { recursive: true });
  const connections = (proc: ManagedProcess) => proc.output().match(/ INFO\s+connected /g)?.length ?? 0;
  const proc = new ManagedProcess({
    name: `agent ${spec.name}`,
    file: process.execPath,
    args: [
      '--import', 'tsx', path.join(root, 'agents/typescript/src/main.ts'),
      '--server', link.address,
      '--exec', spec.exec,
      '--state-dir', stateDir,
      '--name', spec.name,
      '--capacity', String(spec.capacity ?? 1),
      '--heartbeat', `${settings.heartbeatIntervalMs}ms`,
    ],
    // The token in the environment, as the agent's help asks (flags show in the process list).
    env: { ...(process.env as Record<string, string>), AGENT_TOKEN: spec.secret },
    cwd: root,
    logFile: path.join(spec.dir, `${spec.name}.log`),
    ready: async (self) => connections(self) > 0,
  });
  try {
    await proc.start(settings.roleReadyTimeoutMs);
  } catch (err) {
    await link.close();
    throw err;
  }
  return {
    name: spec.name,
    process: proc,
    link,
    connections: () => connections(proc),
    async dispose() {
      await proc.kill();
      await link.close();
    },
  };
}
