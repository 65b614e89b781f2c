// The one --exec every agent under test gets: a bash script that records each run in the format of
// test/faults/runs.ts (start with pid and process group, end with the exit status) so RunLedger
// reads it, then runs the job's prompt as a bash script. Rows put their scenario in the prompt.
// Signals become exits (143 for SIGTERM) so the end record is written; a prompt may trap them
// itself (the "ignores SIGTERM" row does). Only kill -9 leaves a run without an end record.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RunLedger } from '../faults/runs.js';

export function writeJobCommand(dir: string): { exec: string; ledger: RunLedger } {
  const records = path.join(dir, 'runs.log');
  const script = path.join(dir, 'conformance-job.sh');
  fs.writeFileSync(
    script,
    `#!/usr/bin/env bash
# A conformance-kit job: records the run in ${records}, then runs $JOB_PROMPT.
records=${JSON.stringify(records)}
now() { date +%s%N; }
read -r _ _ _ _ pgid _ < /proc/$$/stat
echo "start $JOB_ID $JOB_ATTEMPT $$ $pgid $(now)" >> "$records"
trap 'status=$?; echo "end $JOB_ID $JOB_ATTEMPT $$ $status $(now)" >> "$records"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
eval "$JOB_PROMPT"
`,
    { mode: 0o755 },
  );
  return { exec: `exec bash ${script}`, ledger: new RunLedger(records, script) };
}

/**
 * An address that accepts TCP connections and never says a word: a clone from
 * `https://<address>/…` hangs in its TLS handshake until the agent stops it.
 */
export async function startSilentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `https://127.0.0.1:${port}/hanging-clone.git`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
