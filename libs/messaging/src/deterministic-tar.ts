import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import { create as tarCreate, type WriteEntry } from 'tar';

/** The mtime of every entry of a bundle or an artifacts archive. */
export const BUNDLE_MTIME = new Date('2000-01-01T00:00:00Z');

/**
 * A deterministic tar.gz of exactly the given paths (relative to cwd, in the order given:
 * sort them first), fixed mtimes, uid/gid 0 without names, gzip header without time.
 * follow: store what a symlink points to instead of the link (the caller checked where it
 * points). normalizeFileModes: files stored 0755 when executable, else 0644, without
 * touching the files on disk.
 */
export async function tarGzDeterministic(cwd: string, paths: string[], options: { follow?: boolean; normalizeFileModes?: boolean } = {}): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stream = tarCreate(
    {
      cwd,
      portable: true, // no uid, gid, uname, gname, atime, ctime, dev, ino
      mtime: BUNDLE_MTIME,
      noDirRecurse: true, // exactly the sorted list, nothing else
      follow: options.follow ?? false,
      strict: true,
      ...(options.normalizeFileModes
        ? {
            onWriteEntry: (e: WriteEntry) => {
              if (e.type === 'File' && e.stat) e.stat.mode = (e.stat.mode & ~0o7777) | ((e.stat.mode & 0o111) !== 0 ? 0o755 : 0o644);
            },
          }
        : {}),
    },
    paths.map((p) => posix.normalize(p)),
  );
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return gzipDeterministic(Buffer.concat(chunks));
}

/** gzip whose header carries no time and a fixed OS byte, whatever the platform. */
export function gzipDeterministic(data: Buffer): Buffer {
  const gz = gzipSync(data, { level: 6 }); // the level git archive uses
  gz.writeUInt32LE(0, 4); // MTIME
  gz[9] = 3; // OS: Unix
  return gz;
}
