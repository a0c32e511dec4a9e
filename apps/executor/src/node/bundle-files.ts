import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BundleCache } from '../core/bundle';
import { LaunchError } from '../core/process-runner.port';

const run = promisify(execFile);

/** Bundles kept on this host under dir/<hex>.tar.gz, written atomically. */
export function fileBundleCache(dir: string): BundleCache {
  return {
    async find(hex) {
      const file = join(dir, `${hex}.tar.gz`);
      return existsSync(file) ? file : null;
    },
    async write(hex, bytes) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const file = join(dir, `${hex}.tar.gz`);
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
      await writeFile(tmp, bytes, { mode: 0o600 });
      await rename(tmp, file);
      return file;
    },
  };
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
