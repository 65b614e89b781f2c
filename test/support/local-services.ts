// What the suites that run the system as real processes (the fault suite, the conformance kit) need
// of the machine: whether a port answers, and a scratch database on the PostgreSQL server.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';

/** True once something accepts connections on the port (127.0.0.1). */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.setTimeout(1_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

/** A fresh database named `<prefix>_<random>` on the server of `adminUrl`, and how to drop it. */
export async function createScratchDatabase(adminUrl: string, prefix: string): Promise<{ url: URL; drop(): Promise<void> }> {
  const name = `${prefix}_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url,
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`drop database if exists ${name} with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}
