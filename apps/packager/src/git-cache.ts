import { lstat, mkdir, open, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The per-URL git cache: one bare mirror per URL under a folder, each with a lock, its last
 * use kept as the mirror folder's mtime, and a byte budget enforced least recently used first.
 */

const mirrorLocks = new Map<string, Promise<void>>();

/**
 * Runs `fn` holding the mirror's lock: in this process a queue per mirror, across
 * processes a lock file created exclusively (one left by a dead process is taken over).
 * A mirror that exists afterwards is marked used now (the LRU order of trimGitCache).
 */
export async function withMirrorLock<T>(mirror: string, fn: () => Promise<T>): Promise<T> {
  const before = mirrorLocks.get(mirror) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const tail = before.then(() => mine);
  mirrorLocks.set(mirror, tail);
  await before;
  const lockFile = `${mirror}.lock`;
  try {
    await mkdir(join(mirror, '..'), { recursive: true });
    await acquireFileLock(lockFile, true);
    try {
      return await fn();
    } finally {
      const now = new Date();
      await utimes(mirror, now, now).catch(() => undefined);
      await rm(lockFile, { force: true });
    }
  } finally {
    release();
    if (mirrorLocks.get(mirror) === tail) mirrorLocks.delete(mirror);
  }
}

/** Takes the lock file; with wait false, gives up (false) when another live holder has it. */
async function acquireFileLock(lockFile: string, wait: boolean): Promise<boolean> {
  for (;;) {
    try {
      const h = await open(lockFile, 'wx');
      await h.writeFile(String(process.pid));
      await h.close();
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(await readFile(lockFile, 'utf8').catch(() => ''));
    const age = Date.now() - ((await stat(lockFile).catch(() => null))?.mtimeMs ?? Date.now());
    // A dead holder's lock, or one whose pid was never written (its writer died at once).
    if ((holder > 0 && !processAlive(holder)) || (!(holder > 0) && age > 30_000)) {
      await rm(lockFile, { force: true });
      continue;
    }
    if (!wait) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface CachedMirror {
  /** The mirror's folder. */
  path: string;
  /** Bytes of its files. */
  bytes: number;
  /** When a job last used it (ms since the epoch). */
  lastUsedMs: number;
}

/** The cache's mirrors, least recently used first. */
export async function listGitCache(mirrorDir: string): Promise<CachedMirror[]> {
  const names = await readdir(mirrorDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const out: CachedMirror[] = [];
  for (const name of names) {
    // Only finished mirrors (<sha256>.git); locks and half-made `.new-<pid>` folders are not the cache's to judge.
    if (!/^[0-9a-f]{64}\.git$/.test(name)) continue;
    const path = join(mirrorDir, name);
    const st = await lstat(path).catch(() => null);
    if (!st?.isDirectory()) continue;
    out.push({ path, bytes: await folderBytes(path), lastUsedMs: st.mtimeMs });
  }
  return out.sort((a, b) => a.lastUsedMs - b.lastUsedMs || (a.path < b.path ? -1 : 1));
}

export interface TrimResult {
  /** Mirrors removed, in the order they were (least recently used first). */
  removed: string[];
  /** Bytes the cache holds afterwards. */
  bytes: number;
}

/**
 * Removes mirrors, least recently used first, until the cache holds at most `maxBytes`.
 * `keep` (the mirror a job just used) is never removed, nor a mirror in use (locked);
 * each removal holds the mirror's lock, so no fetch or read is under way in it.
 */
export async function trimGitCache(mirrorDir: string, maxBytes: number, keep?: string): Promise<TrimResult> {
  const mirrors = await listGitCache(mirrorDir);
  let bytes = mirrors.reduce((n, m) => n + m.bytes, 0);
  const removed: string[] = [];
  for (const m of mirrors) {
    if (bytes <= maxBytes) break;
    if (m.path === keep || mirrorLocks.has(m.path)) continue;
    const lockFile = `${m.path}.lock`;
    if (!(await acquireFileLock(lockFile, false))) continue;
    try {
      await rm(m.path, { recursive: true, force: true });
    } finally {
      await rm(lockFile, { force: true });
    }
    bytes -= m.bytes;
    removed.push(m.path);
  }
  return { removed, bytes };
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await folderBytes(p);
    else if (e.isFile()) total += (await lstat(p).catch(() => null))?.size ?? 0;
  }
  return total;
}
