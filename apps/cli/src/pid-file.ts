import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

export function writePidFile(file: string, pid: number): void {
  writeFileSync(file, `${pid}\n`);
}

function commandLine(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return null;
  }
}

/**
 * Stops the process a pid file names, if it still runs and its command line holds every
 * one of `mustContain` (so a recycled pid of some other program is never touched).
 * SIGTERM, then SIGKILL after graceMs. True if a process was stopped.
 */
export async function killStaleProcess(file: string, mustContain: string[], graceMs = 5000): Promise<boolean> {
  if (!existsSync(file)) return false;
  const pid = Number(readFileSync(file, 'utf8').trim());
  rmSync(file, { force: true });
  if (!Number.isSafeInteger(pid) || pid <= 1) return false;
  const matches = () => {
    const cmd = commandLine(pid);
    return cmd !== null && mustContain.every((s) => cmd.includes(s));
  };
  if (!matches()) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (matches() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (matches()) process.kill(pid, 'SIGKILL');
  while (matches()) await new Promise((r) => setTimeout(r, 20));
  return true;
}
