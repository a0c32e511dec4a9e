import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import * as yauzl from 'yauzl';
import { PackagingError } from './bundle-builder';

/** Limits on an uploaded source archive; a breach fails packaging with the limit named. */
export interface ArchiveLimits {
  /** Total unpacked bytes (default 256 MiB). */
  maxBytes?: number;
  /** Entries, directories included (default 20,000). */
  maxEntries?: number;
  /** Path segments of the deepest entry (default 32). */
  maxDepth?: number;
}

export const ARCHIVE_DEFAULTS = { maxBytes: 256 * 1024 ** 2, maxEntries: 20_000, maxDepth: 32 } as const;

interface Entry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  data?: Buffer;
  target?: string;
}

/** The normalized relative path of an entry, or why it is refused (absolute, '..', NUL, too deep). */
function checkedPath(raw: string, maxDepth: number): string {
  if (raw.includes('\0')) throw new PackagingError(`archive entry ${JSON.stringify(raw)} contains NUL`);
  const p = raw.replace(/\\/g, '/');
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) throw new PackagingError(`archive entry ${JSON.stringify(raw)} is an absolute path`);
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw new PackagingError(`archive entry ${JSON.stringify(raw)} contains '..'`);
  if (parts.length === 0) return '';
  if (parts.length > maxDepth) throw new PackagingError(`archive entry ${JSON.stringify(raw.slice(0, 200))} is deeper than ${maxDepth} levels`);
  // Linux limits: 255 bytes a name, 4096 a path. Said here, before anything is written.
  if (parts.some((s) => Buffer.byteLength(s) > 255)) throw new PackagingError(`archive entry ${JSON.stringify(raw.slice(0, 200))}… has a name longer than 255 bytes`);
  if (Buffer.byteLength(p) > 4096) throw new PackagingError(`archive entry ${JSON.stringify(raw.slice(0, 200))}… is a path longer than 4096 bytes`);
  return parts.join('/');
}

/** A link target stays inside the tree: relative, and resolving (from the link's folder) to no '..'. */
function checkedLink(path: string, target: string): string {
  if (target.startsWith('/') || target.includes('\0')) throw new PackagingError(`archive symlink ${path} points outside the tree (${target})`);
  const resolved = posix.normalize(posix.join(posix.dirname(path), target));
  if (resolved === '..' || resolved.startsWith('../')) throw new PackagingError(`archive symlink ${path} points outside the tree (${target})`);
  return target;
}

/** Walks a link's target step by step: it may not leave the tree, nor pass through another link (which could lead anywhere). */
function checkLinkWalk(path: string, target: string, links: Set<string>): void {
  const at = path.split('/').slice(0, -1);
  const steps = target.split('/').filter((p) => p !== '' && p !== '.');
  steps.forEach((part, i) => {
    if (part === '..') {
      if (at.length === 0) throw new PackagingError(`archive symlink ${path} points outside the tree (${target})`);
      at.pop();
    } else at.push(part);
    // A link to a link is fine as the last step (that link is checked itself); going through one is not.
    if (i < steps.length - 1 && links.has(at.join('/'))) throw new PackagingError(`archive symlink ${path} passes through another link (${at.join('/')})`);
  });
}

class Budget {
  entries = 0;
  bytes = 0;
  constructor(readonly l: Required<ArchiveLimits>) {}
  add(size: number): void {
    if (++this.entries > this.l.maxEntries) throw new PackagingError(`archive has more than ${this.l.maxEntries} entries`);
    this.bytes += size;
    if (this.bytes > this.l.maxBytes) throw new PackagingError(`archive unpacks to more than ${this.l.maxBytes} bytes`);
  }
}

function tarEntries(gz: Buffer, l: Required<ArchiveLimits>): Promise<Entry[]> {
  const budget = new Budget(l);
  const out: Entry[] = [];
  return new Promise((resolve, reject) => {
    let failed: Error | null = null;
    const fail = (e: unknown) => {
      failed ??= e instanceof Error ? e : new Error(String(e));
    };
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (failed) return entry.resume();
        try {
          const path = checkedPath(entry.path, l.maxDepth);
          const mode = entry.mode ?? 0o644;
          switch (entry.type) {
            case 'Directory':
              budget.add(0);
              if (path) out.push({ path, type: 'dir', mode });
              return entry.resume();
            case 'SymbolicLink':
              budget.add(0);
              out.push({ path, type: 'symlink', mode, target: checkedLink(path, entry.linkpath ?? '') });
              return entry.resume();
            case 'File':
            case 'OldFile':
            case 'ContiguousFile': {
              budget.add(entry.size ?? 0);
              const chunks: Buffer[] = [];
              entry.on('data', (c: Buffer) => chunks.push(c));
              entry.on('end', () => out.push({ path, type: 'file', mode, data: Buffer.concat(chunks) }));
              return;
            }
            case 'Link':
              throw new PackagingError(`archive entry ${path} is a hard link, which is not supported`);
            case 'CharacterDevice':
            case 'BlockDevice':
            case 'FIFO':
              throw new PackagingError(`archive entry ${path} is a device or fifo, which is refused`);
            default:
              throw new PackagingError(`archive entry ${path} has unsupported type ${entry.type}`);
          }
        } catch (e) {
          fail(e);
          entry.resume();
        }
      },
    });
    parser.on('warn', (code: string, message: string) => fail(new PackagingError(`archive is not a valid tar.gz: ${message}`)));
    parser.on('error', (e: Error) => fail(new PackagingError(`archive is not a valid tar.gz: ${e.message}`)));
    parser.on('end', () => (failed ? reject(failed) : resolve(out)));
    try {
      // Cap the gunzip too: a small bomb must not fill memory before the budget sees the headers.
      parser.end(gunzipSync(gz, { maxOutputLength: l.maxBytes + 1024 * 1024 + l.maxEntries * 1536 }));
    } catch (e) {
      reject(e instanceof PackagingError ? e : new PackagingError(`archive is not a valid tar.gz or unpacks to too much: ${(e as Error).message}`));
    }
  });
}

const zipError = (e: unknown) => (e instanceof PackagingError ? e : new PackagingError(`archive is not a valid zip: ${(e as Error).message}`));

/**
 * The entries of a zip, read by yauzl (central directory first, sizes validated against what
 * inflates, zip64 as yauzl reads it). File names are taken raw and checked by the same rules
 * as tar entries; encrypted entries and compression methods other than store/deflate are
 * refused; declared sizes count against the budget before anything is inflated.
 */
async function zipEntries(zip: Buffer, l: Required<ArchiveLimits>): Promise<Entry[]> {
  const budget = new Budget(l);
  let file: yauzl.ZipFile;
  try {
    // decodeStrings: false — names come as bytes and are checked here (yauzl would repair or reject them with its own words).
    file = await yauzl.fromBufferPromise(zip, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, strictFileNames: true });
  } catch (e) {
    throw zipError(e);
  }
  if (file.entryCount > l.maxEntries) throw new PackagingError(`archive has more than ${l.maxEntries} entries`);
  const out: Entry[] = [];
  try {
    for (;;) {
      const entry = await new Promise<yauzl.Entry | null>((resolve, reject) => {
        file.once('entry', resolve);
        file.once('end', () => resolve(null));
        file.once('error', reject);
        file.readEntry();
      });
      file.removeAllListeners('entry').removeAllListeners('end').removeAllListeners('error');
      if (!entry) break;
      const raw = Buffer.isBuffer(entry.fileName) ? (entry.fileName as Buffer).toString('utf8') : String(entry.fileName);
      const unixMode = entry.externalFileAttributes >>> 16;
      const kind = unixMode & 0o170000;
      const isDir = raw.endsWith('/') || kind === 0o040000;
      const path = checkedPath(raw, l.maxDepth);
      if (kind !== 0 && kind !== 0o100000 && kind !== 0o040000 && kind !== 0o120000) throw new PackagingError(`archive entry ${path} is a device, fifo or socket, which is refused`);
      if (entry.isEncrypted()) throw new PackagingError(`archive entry ${path} is encrypted, which is refused: upload an archive without a password`);
      budget.add(isDir ? 0 : entry.uncompressedSize);
      if (isDir) {
        if (path) out.push({ path, type: 'dir', mode: 0o755 });
        continue;
      }
      if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
        throw new PackagingError(`archive entry ${path}: compression method ${entry.compressionMethod} is not supported (use deflate or store)`);
      }
      const data = await new Promise<Buffer>((resolve, reject) => {
        file.openReadStream(entry, (err, stream) => {
          if (err) return reject(new PackagingError(`archive entry ${path}: ${err.message}`));
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', (e: Error) => reject(new PackagingError(`archive entry ${path}: ${e.message}`)));
          stream.on('end', () => resolve(Buffer.concat(chunks)));
        });
      });
      if (kind === 0o120000) out.push({ path, type: 'symlink', mode: 0o777, target: checkedLink(path, data.toString('utf8')) });
      else out.push({ path, type: 'file', mode: unixMode & 0o777 || 0o644, data });
    }
  } catch (e) {
    throw zipError(e);
  } finally {
    file.close();
  }
  return out;
}

/**
 * Conflicts that would make a write land somewhere else than its own path: an entry inside
 * another entry that is a file or a link (a write through a link could leave the tree), a
 * path given twice, a folder that is also a file. Checked before anything is written.
 */
function checkLayout(entries: Entry[]): void {
  const byPath = new Map<string, Entry>();
  for (const e of entries) {
    const seen = byPath.get(e.path);
    if (seen && !(seen.type === 'dir' && e.type === 'dir')) throw new PackagingError(`archive has ${e.path} twice`);
    byPath.set(e.path, e);
  }
  for (const e of entries) {
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = byPath.get(parts.slice(0, i).join('/'));
      if (parent && parent.type !== 'dir') {
        throw new PackagingError(`archive entry ${e.path} is inside ${parent.path}, which is a ${parent.type === 'symlink' ? 'link' : 'file'}`);
      }
    }
  }
}

/**
 * Unpacks an uploaded zip or tar.gz into `root` (an empty folder) after checking every entry:
 * absolute paths, '..', links leaving the tree, hard links, devices and fifos are refused,
 * as are archives over the size, entry-count or depth limits. Nothing is written unless every
 * entry passed; no write goes through a symlink.
 */
export async function unpackArchive(bytes: Buffer, root: string, limits: ArchiveLimits = {}): Promise<{ format: 'zip' | 'tar.gz'; entries: number }> {
  const l = { ...ARCHIVE_DEFAULTS, ...limits };
  let format: 'zip' | 'tar.gz';
  let entries: Entry[];
  if (bytes.length >= 4 && bytes.readUInt32LE(0) === 0x04034b50) {
    format = 'zip';
    entries = await zipEntries(bytes, l);
  } else if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    format = 'tar.gz';
    entries = await tarEntries(bytes, l);
  } else throw new PackagingError('the archive is neither a zip nor a tar.gz');
  checkLayout(entries);
  const links = new Set(entries.filter((e) => e.type === 'symlink').map((e) => e.path));
  for (const e of entries) if (e.type === 'symlink') checkLinkWalk(e.path, e.target!, links);
  // Directories and files first, links last: no write can go through a link of the archive.
  const order = { dir: 0, file: 1, symlink: 2 } as const;
  try {
    await writeEntries(root, [...entries].sort((a, b) => order[a.type] - order[b.type]));
  } catch (err) {
    // Whatever was written goes: a refused archive leaves the folder as empty as it was.
    for (const name of await readdir(root).catch(() => [])) await rm(`${root}/${name}`, { recursive: true, force: true });
    throw err;
  }
  return { format, entries: entries.length };
}

async function writeEntries(root: string, entries: Entry[]): Promise<void> {
  for (const e of entries) {
    const target = `${root}/${e.path}`;
    if (e.type === 'dir') {
      await mkdir(target, { recursive: true });
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    try {
      if (e.type === 'file') await writeFile(target, e.data!, { flag: 'wx', mode: e.mode & 0o111 ? 0o755 : 0o644 });
      else await symlink(e.target!, target);
    } catch (err) {
      throw new PackagingError(`archive entry ${e.path} cannot be written: ${(err as Error).message}`);
    }
  }
}
