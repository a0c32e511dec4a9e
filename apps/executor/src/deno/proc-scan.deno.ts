/**
 * What the no-sandbox runner needs to know about the host's processes, under Deno.
 *
 * Deno grants /proc only with --allow-all, so the process table comes from `ps` and the
 * environment markers from `grep` over /proc/<pid>/environ: subprocesses read /proc for
 * us under the --allow-run the executor already needs.
 */

export interface ProcEntry {
  pid: number;
  pgid: number;
  /** 'Z' for a zombie. */
  state: string;
}

const TOOL_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

async function run(program: string, args: string[]): Promise<{ code: number; stdout: string } | null> {
  try {
    const out = await new Deno.Command(program, { args, clearEnv: true, env: TOOL_ENV, stdin: 'null', stdout: 'piped', stderr: 'null' }).output();
    return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
  } catch {
    return null;
  }
}

/** Every process of the host (`ps -A`), or null when ps cannot run. */
export async function listProcesses(): Promise<ProcEntry[] | null> {
  const r = await run('ps', ['-A', '-o', 'pid=,pgid=,stat=']);
  if (!r || r.code !== 0) return null;
  const out: ProcEntry[] = [];
  for (const line of r.stdout.split('\n')) {
    const [pid, pgid, stat] = line.trim().split(/\s+/);
    if (!pid || !stat || !/^\d+$/.test(pid) || !/^\d+$/.test(pgid)) continue;
    out.push({ pid: Number(pid), pgid: Number(pgid), state: stat[0] });
  }
  return out;
}

/** The pids among `pids` whose initial environment holds NAME=value exactly (unreadable ones are skipped). */
export async function withEnvEntry(pids: number[], entry: string): Promise<number[]> {
  if (pids.length === 0) return [];
  // -z: NUL-separated records, -x -F: the whole record, literally; -s: no noise for vanished or foreign processes.
  const r = await run('grep', ['-s', '-l', '-z', '-x', '-F', '-e', entry, ...pids.map((p) => `/proc/${p}/environ`)]);
  if (!r) return [];
  const found: number[] = [];
  for (const name of r.stdout.split(/[\n\0]/)) {
    const m = /^\/proc\/(\d+)\/environ$/.exec(name);
    if (m) found.push(Number(m[1]));
  }
  return found;
}

/** Sends a signal to a pid (or, negative, a process group); false when there is no such target. */
export function sendSignal(target: number, sig: Deno.Signal): boolean {
  // Never 0, -1 or ±1: kill() would hit our own group, every process, or init.
  if (target === 0 || target === 1 || target === -1) return false;
  try {
    Deno.kill(target, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Does any process of the group still run? Zombies do not count: orphans are reaped by
 * init, which on some hosts takes long or never happens, and a zombie holds nothing but its pid.
 */
export async function groupAlive(pgid: number): Promise<boolean> {
  if (!exists(-pgid)) return false;
  const table = await listProcesses();
  // Without ps, a group that exists is taken as alive, zombies included (slower, never wrong).
  if (!table) return true;
  return table.some((p) => p.pgid === pgid && p.state !== 'Z');
}

export async function processAlive(pid: number): Promise<boolean> {
  if (!exists(pid)) return false;
  const table = await listProcesses();
  if (!table) return true;
  return table.some((p) => p.pid === pid && p.state !== 'Z');
}

/** kill(target, 0): the cheap first test (zombies included). */
function exists(target: number): boolean {
  if (target === 0 || target === 1 || target === -1) return false;
  try {
    Deno.kill(target, 0);
    return true;
  } catch (err) {
    return err instanceof Deno.errors.PermissionDenied;
  }
}
