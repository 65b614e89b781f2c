// Reads the Linux process table (/proc). Used where the kernel's own answer is not enough: a
// zombie still counts as a member of its process group for kill(-pgid, 0), and a pid alone does
// not say which job a process belongs to.
import fs from 'node:fs/promises';

export interface ProcessEntry {
  pid: number;
  /** One-letter state: R running, S sleeping, Z zombie (dead, waiting to be reaped), … */
  state: string;
  pgid: number;
}

/** Members of a process group, or undefined where there is no /proc to read. */
export async function processGroupMembers(pgid: number): Promise<ProcessEntry[] | undefined> {
  const names = await fs.readdir('/proc').catch(() => undefined);
  if (!names) return undefined;
  const members: ProcessEntry[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const entry = parseStat(await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => ''));
    if (entry?.pgid === pgid) members.push(entry);
  }
  return members;
}

export async function environmentOf(pid: number): Promise<string[]> {
  const environ = await fs.readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
  return environ.split('\0');
}

/** "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses, so read after the last ')'. */
function parseStat(stat: string): ProcessEntry | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const [state, , pgrp] = stat.slice(close + 2).split(' ');
  const pid = Number(stat.slice(0, stat.indexOf(' ')));
  if (!state || !pgrp) return undefined;
  return { pid, state, pgid: Number(pgrp) };
}

/** The process exists and is not a zombie (a killed process whose parent has not reaped it yet). */
export async function isProcessAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const entry = parseStat(await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''));
  return entry?.state !== 'Z';
}
