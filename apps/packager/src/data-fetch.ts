import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { lstat, mkdir, rm } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { dirname, join, resolve, sep } from 'node:path';
import { PackagingError } from './bundle-builder';
import { addressProblem, guardedLookup as sharedGuardedLookup, hostAllowed } from '../../../libs/net/src';
import type { SourceTree } from './git-tree';

export interface DataFetchOptions {
  /** Hosts a data URL may name; '*.example.com' matches subdomains. Undefined: any host. */
  allowedHosts?: string[];
  /** Allow addresses that are private, loopback, link-local, multicast or reserved (default false). */
  allowPrivateAddresses?: boolean;
  /** Time to connect (default 10 s). */
  connectTimeoutMs?: number;
  /** Time for the whole download (default 600 s). */
  totalTimeoutMs?: number;
  /** Largest file accepted, in bytes (default 1 GiB). */
  maxBytes?: number;
}

export const DATA_DEFAULTS = { connectTimeoutMs: 10_000, totalTimeoutMs: 600_000, maxBytes: 1024 ** 3 } as const;

/** Why an address may not be fetched from: the guard lives in libs/net (the webhooks use it too). */
export { addressProblem };

/** Checks a data URL's form and host; returns why it is refused, or null. */
export function dataUrlProblem(url: string, o: DataFetchOptions = {}): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `data URL ${JSON.stringify(url)} is not a URL`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `data URL scheme ${u.protocol} is not allowed (http, https)`;
  if (u.username || u.password) return 'data URLs must not carry credentials';
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!hostAllowed(host, o.allowedHosts)) return `data host ${host} is not in the allowed hosts`;
  if (isIP(host) && !o.allowPrivateAddresses) {
    const p = addressProblem(host);
    if (p) return `data URL ${url}: ${p}`;
  }
  return null;
}

/** Resolves, then refuses any private answer: the address checked is the address connected to (no DNS rebinding). */
const guardedLookup = (o: DataFetchOptions) => sharedGuardedLookup({ allowPrivateAddresses: o.allowPrivateAddresses }, (m) => new PackagingError(m));

/** The absolute path of `rel` inside `root`, refusing anything that would leave it (.., absolute, a symlinked parent). */
export async function pathInside(root: string, rel: string, source?: SourceTree): Promise<string> {
  const base = resolve(root);
  const target = resolve(base, rel);
  if (rel.startsWith('/') || !target.startsWith(base + sep)) throw new PackagingError(`data path ${JSON.stringify(rel)} leaves the bundle`);
  let dir = base;
  for (const part of target.slice(base.length + 1).split(sep)) {
    dir = join(dir, part);
    // A source held in memory (not checked out into root): the same checks against its entries.
    const inSource = source?.get(dir.slice(base.length + 1));
    if (inSource?.kind === 'symlink') throw new PackagingError(`data path ${JSON.stringify(rel)} goes through a symlink of the source (${dir.slice(base.length + 1)})`);
    if (inSource && dir === target) throw new PackagingError(`data path ${JSON.stringify(rel)} already exists in the source`);
    if (inSource?.kind === 'file') throw new PackagingError(`data path ${JSON.stringify(rel)} goes through a file of the source (${dir.slice(base.length + 1)})`);
    const st = await lstat(dir).catch(() => null);
    if (!st && source) continue;
    if (!st) break;
    if (st.isSymbolicLink()) throw new PackagingError(`data path ${JSON.stringify(rel)} goes through a symlink of the source (${dir.slice(base.length + 1)})`);
    if (dir === target) throw new PackagingError(`data path ${JSON.stringify(rel)} already exists in the source`);
  }
  return target;
}

/**
 * Downloads one data file into `root/path`, checked on the way: scheme, host allowlist,
 * resolved addresses, connect and total timeouts, size cap, and sha256 when given.
 * Returns the file's sha256 (hex). Redirects are refused (they would bypass the checks).
 * `source`: the job's source when it is held in memory rather than written into root.
 */
export async function fetchDataFile(item: { url: string; path: string; sha256?: string }, root: string, o: DataFetchOptions = {}, source?: SourceTree): Promise<string> {
  const problem = dataUrlProblem(item.url, o);
  if (problem) throw new PackagingError(problem);
  const target = await pathInside(root, item.path, source);
  // The first folder mkdir created (if any): removed again when the download fails, so a refusal leaves nothing behind.
  const createdDir = await mkdir(dirname(target), { recursive: true });
  const maxBytes = o.maxBytes ?? DATA_DEFAULTS.maxBytes;
  const u = new URL(item.url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  const hash = createHash('sha256');
  // Opened only once the response passed its checks: a refused download never creates the file.
  let out: WriteStream | undefined;
  try {
    await new Promise<void>((ok, fail) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(total);
        if (err) {
          req.destroy();
          fail(err);
        } else ok();
      };
      const total = setTimeout(() => finish(new PackagingError(`data ${item.url}: not downloaded within ${o.totalTimeoutMs ?? DATA_DEFAULTS.totalTimeoutMs} ms`)), o.totalTimeoutMs ?? DATA_DEFAULTS.totalTimeoutMs);
      const req = request(u, { lookup: guardedLookup(o), headers: { 'user-agent': 'jobline-packager', 'accept-encoding': 'identity' } }, (res: IncomingMessage) => {
        if ((res.statusCode ?? 0) >= 300 && (res.statusCode ?? 0) < 400) return finish(new PackagingError(`data ${item.url}: redirects are not followed (HTTP ${res.statusCode} to ${res.headers.location ?? '?'}); name the final URL`));
        if (res.statusCode !== 200) return finish(new PackagingError(`data ${item.url}: HTTP ${res.statusCode}`));
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > maxBytes) return finish(new PackagingError(`data ${item.url}: ${declared} bytes is more than the ${maxBytes}-byte limit`));
        out = createWriteStream(target, { flags: 'wx', mode: 0o644 });
        out.on('error', (err) => finish(new PackagingError(`data ${item.path}: cannot write: ${err.message}`)));
        const file = out;
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) return finish(new PackagingError(`data ${item.url}: more than the ${maxBytes}-byte limit`));
          hash.update(chunk);
          if (!file.write(chunk)) {
            res.pause();
            file.once('drain', () => res.resume());
          }
        });
        res.on('end', () => file.end(() => finish()));
        res.on('error', (err) => finish(new PackagingError(`data ${item.url}: ${err.message}`)));
      });
      req.on('socket', (socket) => {
        if (socket.connecting === false) return;
        const connect = setTimeout(() => finish(new PackagingError(`data ${item.url}: no connection within ${o.connectTimeoutMs ?? DATA_DEFAULTS.connectTimeoutMs} ms`)), o.connectTimeoutMs ?? DATA_DEFAULTS.connectTimeoutMs);
        socket.once('connect', () => clearTimeout(connect));
        socket.once('close', () => clearTimeout(connect));
      });
      req.on('error', (err) => finish(err instanceof PackagingError ? err : new PackagingError(`data ${item.url}: ${err.message}`)));
      req.end();
    });
  } catch (err) {
    await closed(out);
    await removeDownload(target, createdDir);
    throw err;
  }
  const digest = hash.digest('hex');
  if (item.sha256 && item.sha256 !== digest) {
    await removeDownload(target, createdDir);
    throw new PackagingError(`data ${item.url}: sha256 mismatch: expected ${item.sha256}, got ${digest}`);
  }
  return digest;
}

/** Destroys a write stream and waits until its file is closed (so a removal cannot race its open). */
function closed(out: WriteStream | undefined): Promise<void> {
  if (!out || out.closed) return Promise.resolve();
  return new Promise((resolve) => {
    out.once('close', () => resolve());
    out.destroy();
  });
}

async function removeDownload(target: string, createdDir: string | undefined): Promise<void> {
  await rm(target, { force: true });
  if (createdDir) await rm(createdDir, { recursive: true, force: true });
}
