import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { addressProblem, dataUrlProblem, fetchDataFile } from './data-fetch';

const body = Buffer.from('some data\n'.repeat(100));
const digest = createHash('sha256').update(body).digest('hex');

describe('data files', () => {
  let server: Server;
  let base: string;
  let dir: TempDir;
  const local = { allowPrivateAddresses: true };
  /** A real 10 GiB file that takes no disk space (sparse), served as is. */
  let sparse: string;
  const TEN_GB = 10 * 1024 ** 3;

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/data.txt') res.end(body);
      else if (req.url === '/big') {
        res.write(Buffer.alloc(64 * 1024));
        res.end(Buffer.alloc(64 * 1024));
      } else if (req.url === '/sparse' || req.url === '/sparse-chunked') {
        // Without Content-Length, Node sends the body chunked: the size is only known by counting.
        if (req.url === '/sparse') res.setHeader('content-length', String(statSync(sparse).size));
        pipeline(createReadStream(sparse), res, () => undefined);
      } else if (req.url === '/redirect') {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end();
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dir = tempDir('data-fetch');
    sparse = join(dir.path, 'sparse-10g.bin');
    writeFileSync(sparse, '');
    truncateSync(sparse, TEN_GB);
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    dir.remove();
  });

  const fresh = (name: string) => {
    const p = join(dir.path, name);
    mkdirSync(p);
    return p;
  };

  it('downloads a file to its path inside the bundle and returns its sha256', async () => {
    const root = fresh('ok');
    expect(await fetchDataFile({ url: `${base}/data.txt`, path: 'in/put.txt', sha256: digest }, root, local)).toBe(digest);
    expect(readFileSync(join(root, 'in/put.txt')).equals(body)).toBe(true);
  });

  it('fails on a sha256 mismatch, naming both digests, and leaves no file', async () => {
    const root = fresh('mismatch');
    const wrong = '0'.repeat(64);
    const err = await fetchDataFile({ url: `${base}/data.txt`, path: 'x.txt', sha256: wrong }, root, local).catch((e: Error) => e);
    expect((err as Error).message).toContain(wrong);
    expect((err as Error).message).toContain(digest);
    expect(readdirSync(root)).toEqual([]);
  });

  it('refuses loopback and link-local addresses by default', async () => {
    const root = fresh('private');
    await expect(fetchDataFile({ url: `${base}/data.txt`, path: 'x' }, root)).rejects.toThrow(/127\.0\.0\.1 is a private, loopback, link-local or reserved address/);
    await expect(fetchDataFile({ url: 'http://169.254.169.254/latest/meta-data', path: 'x' }, root)).rejects.toThrow(/169\.254\.169\.254 is a private/);
    // A name that resolves to loopback is refused after resolution.
    await expect(fetchDataFile({ url: `http://localhost:${new URL(base).port}/data.txt`, path: 'x' }, root)).rejects.toThrow(/localhost resolves to .*(127\.0\.0\.1|::1) is a private/);
    expect(readdirSync(root)).toEqual([]);
  });

  it('enforces the size cap', async () => {
    const root = fresh('big');
    await expect(fetchDataFile({ url: `${base}/big`, path: 'big' }, root, { ...local, maxBytes: 100 * 1024 })).rejects.toThrow(/102400-byte limit/);
    expect(existsSync(join(root, 'big'))).toBe(false);
  });

  it('a 10 GB file with Content-Length is refused before the download, leaving nothing on disk', async () => {
    const root = fresh('sparse-declared');
    // The default cap (1 GiB).
    await expect(fetchDataFile({ url: `${base}/sparse`, path: 'data/huge.bin' }, root, local)).rejects.toThrow(`data ${base}/sparse: ${TEN_GB} bytes is more than the ${1024 ** 3}-byte limit`);
    expect(readdirSync(root)).toEqual([]);
  });

  it('a 10 GB file sent chunked (no Content-Length) is cut off at the cap, leaving nothing in the bundle folder', async () => {
    const root = fresh('sparse-chunked');
    const maxBytes = 32 * 1024 ** 2; // the default 1 GiB behaves the same, only slower
    await expect(fetchDataFile({ url: `${base}/sparse-chunked`, path: 'data/huge.bin' }, root, { ...local, maxBytes })).rejects.toThrow(
      `data ${base}/sparse-chunked: more than the ${maxBytes}-byte limit`,
    );
    expect(readdirSync(root)).toEqual([]);
  });

  it('refuses redirects rather than following them past the checks', async () => {
    await expect(fetchDataFile({ url: `${base}/redirect`, path: 'r' }, fresh('redirect'), local)).rejects.toThrow(/redirects are not followed/);
  });

  it('keeps the path inside the bundle, also through a symlink of the source', async () => {
    const root = fresh('escape');
    symlinkSync('/tmp', join(root, 'link'));
    await expect(fetchDataFile({ url: `${base}/data.txt`, path: '../out.txt' }, root, local)).rejects.toThrow(/leaves the bundle/);
    await expect(fetchDataFile({ url: `${base}/data.txt`, path: 'link/out.txt' }, root, local)).rejects.toThrow(/through a symlink/);
    expect(existsSync('/tmp/out.txt')).toBe(false);
  });

  it('checks schemes, hosts and literal addresses', () => {
    expect(dataUrlProblem('ftp://example.com/x')).toMatch(/scheme ftp: is not allowed/);
    expect(dataUrlProblem('file:///etc/passwd')).toMatch(/scheme file: is not allowed/);
    expect(dataUrlProblem('https://other.org/x', { allowedHosts: ['data.example.com'] })).toMatch(/not in the allowed hosts/);
    expect(dataUrlProblem('http://[::1]/x')).toMatch(/::1 is a private/);
    expect(addressProblem('::ffff:10.0.0.1')).toMatch(/private/);
    expect(addressProblem('93.184.216.34')).toBeNull();
  });
});
