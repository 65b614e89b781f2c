// The agent's stable id. The server recognises a reconnecting or restarted agent by it, so it is
// made once and kept in the state directory; a damaged file is an error rather than a silent new
// identity, because a new id would orphan whatever the server still assigns to the old one.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

const ID_FILE = 'agent-id';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class StateDirError extends Error {}

export async function loadOrCreateAgentId(stateDir: string): Promise<{ agentId: string; created: boolean }> {
  const file = path.join(stateDir, ID_FILE);
  const existing = await readIfPresent(file);
  if (existing !== undefined) {
    const agentId = existing.trim();
    if (!UUID.test(agentId)) throw new StateDirError(`${file} does not hold a uuid; fix or delete it (deleting makes this a new agent)`);
    return { agentId, created: false };
  }
  const agentId = randomUUID();
  // Write then rename, so a crash never leaves a half-written id behind.
  const temporary = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temporary, `${agentId}\n`, { mode: 0o600 });
  await fs.rename(temporary, file);
  return { agentId, created: true };
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StateDirError(`cannot read ${file}: ${(err as Error).message}`);
  }
}
