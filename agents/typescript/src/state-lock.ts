// One agent process per state directory. Two processes sharing an agent id would keep replacing
// each other's stream (the server keeps only the newest per agent id), so the second one refuses
// to start.
import fs from 'node:fs/promises';
import path from 'node:path';
import { StateDirError } from './agent-identity.js';
import { isProcessAlive } from './proc-table.js';

const LOCK_FILE = 'agent.lock';

export interface StateLock {
  release(): Promise<void>;
}

export async function acquireStateLock(stateDir: string): Promise<StateLock> {
  const file = path.join(stateDir, LOCK_FILE);
  for (let tries = 0; tries < 2; tries++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return { release: () => fs.rm(file, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new StateDirError(`cannot create ${file}: ${(err as Error).message}`);
    }
    const holder = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && (await isProcessAlive(holder))) {
      throw new StateDirError(`another agent (pid ${holder}) is using ${stateDir}; give each agent its own --state-dir (if pid ${holder} is no agent, delete ${file})`);
    }
    // The holder died without cleaning up: the lock is stale.
    await fs.rm(file, { force: true });
  }
  throw new StateDirError(`cannot take ${file}: another agent is starting with the same --state-dir`);
}
