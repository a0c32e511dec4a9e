import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BundleCache } from '../core/bundle';
import { LaunchError } from '../core/process-runner.port';

const run = promisify(execFile);

export interface FileBundleCacheOptions {
  /** Byte budget: after each write the least recently used bundles are removed until the cache fits. Undefined: none. */
  maxBytes?: number;
  /**
   * Bundles used more recently than this are never removed (default 2 hours): an attempt unpacks
   * its bundle before its start deadline (at most one lease, ≤ 1 hour, after its dispatch).
   */
  keepRecentMs?: number;
  clock?: () => number;
}

export const BUNDLE_CACHE_KEEP_RECENT_MS = 2 * 3_600_000;

/**
 * Bundles kept on this host under dir/<hex>.tar.gz, written atomically. Each use marks the
 * file used (its mtime); with a budget, the least recently used go first.
 */
export function fileBundleCache(dir: string, options: FileBundleCacheOptions = {}): BundleCache {
  const clock = options.clock ?? Date.now;
  const touch = (file: string) => utimes(file, clock() / 1000, clock() / 1000).catch(() => undefined);
  return {
    async find(hex) {
      const file = join(dir, `${hex}.tar.gz`);
      if (!existsSync(file)) return null;
      await touch(file);
      return file;
    },
    async write(hex, bytes) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const file = join(dir, `${hex}.tar.gz`);
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, bytes, { mode: 0o600 });
      await rename(tmp, file);
      await touch(file);
      if (options.maxBytes !== undefined) await trimBundleCache(dir, options.maxBytes, { keep: file, keepRecentMs: options.keepRecentMs, now: clock() }).catch(() => undefined);
      return file;
    },
  };
}

/**
 * Removes cached bundles, least recently used first, until the cache holds at most `maxBytes`;
 * never `keep` nor one used within `keepRecentMs`. Returns the files removed, in order.
 */
export async function trimBundleCache(dir: string, maxBytes: number, o: { keep?: string; keepRecentMs?: number; now?: number } = {}): Promise<string[]> {
  const now = o.now ?? Date.now();
  const keepRecentMs = o.keepRecentMs ?? BUNDLE_CACHE_KEEP_RECENT_MS;
  const entries: { file: string; bytes: number; usedMs: number }[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{64}\.tar\.gz$/.test(name)) continue;
    const file = join(dir, name);
    const st = await stat(file).catch(() => null);
    if (st?.isFile()) entries.push({ file, bytes: st.size, usedMs: st.mtimeMs });
  }
  entries.sort((a, b) => a.usedMs - b.usedMs || (a.file < b.file ? -1 : 1));
  let total = entries.reduce((n, e) => n + e.bytes, 0);
  const removed: string[] = [];
  for (const e of entries) {
    if (total <= maxBytes) break;
    if (e.file === o.keep || now - e.usedMs < keepRecentMs) continue;
    await rm(e.file, { force: true });
    total -= e.bytes;
    removed.push(e.file);
  }
  return removed;
}

/**
 * Unpacks a verified bundle into a fresh workspace. GNU tar refuses '..' members and strips
 * leading '/'; owner is not restored from the archive; with `owner`, the tree is handed to it.
 */
export async function unpackBundle(file: string, workspace: string, owner?: { uid: number; gid: number }): Promise<void> {
  try {
    await run('tar', ['-xzf', file, '-C', workspace, '--no-same-owner', '--delay-directory-restore'], { env: { PATH: '/usr/bin:/bin' } });
    if (owner) await run('chown', ['-R', '--no-dereference', `${owner.uid}:${owner.gid}`, workspace], { env: { PATH: '/usr/bin:/bin' } });
  } catch (err) {
    throw new LaunchError(`cannot unpack the bundle: ${(err as Error).message.split('\n')[0]}`, 127, { cause: err });
  }
}
