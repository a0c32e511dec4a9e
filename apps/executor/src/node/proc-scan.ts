import { readdirSync, readFileSync } from 'node:fs';

/** Linux /proc helpers for the no-sandbox runner, which has no cgroup to ask "what is still running". */

export interface ProcEntry {
  pid: number;
  pgid: number;
  /** 'Z' for a zombie. */
  state: string;
}

/** Every process visible in /proc (skipping ones that vanish while we look). */
export function listProcesses(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) out.push(stat);
  }
  return out;
}

export function readStat(pid: number): ProcEntry | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parentheses: parse after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, state: rest[0], pgid: Number(rest[2]) };
}

/** True when the process' initial environment holds NAME=value exactly. */
export function hasEnvEntry(pid: number, entry: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(entry);
  } catch {
    return false;
  }
}

/** Clock ticks per second of /proc/<pid>/stat times; USER_HZ is 100 on every mainstream Linux build. */
const USER_HZ = 100;

/** CPU time and peak resident memory of one live process, null once it is gone. */
export function sampleUsage(pid: number): { cpuMs: number; maxRssBytes: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime are fields 14-17 (1-based), i.e. 11-14 after the comm.
    const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return { cpuMs: Math.round((ticks * 1000) / USER_HZ), maxRssBytes: hwm ? Number(hwm[1]) * 1024 : 0 };
  } catch {
    return null;
  }
}

/**
 * kill(2) for a process that may be gone already; a negative target is a process group.
 * 0, 1 and -1 (our own group, init, every process) are never targets.
 */
export function killQuietly(target: number, sig: NodeJS.Signals): void {
  if (Math.abs(target) <= 1) return;
  try {
    process.kill(target, sig);
  } catch {
    // ESRCH: already gone.
  }
}
