import { existsSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src';
import { fileBundleCache, trimBundleCache } from './bundle-files';

const HOUR = 3_600_000;
const hex = (c: string) => c.repeat(64);

/** The host's bundle cache on a real filesystem: use marks, a byte budget, least recently used first. */
describe('file bundle cache budget', () => {
  let dir: TempDir;
  beforeEach(() => (dir = tempDir('bundle-cache-')));
  afterEach(() => dir.remove());

  /** A cached bundle of `size` bytes last used `ageMs` ago. */
  const cached = (c: string, size: number, ageMs: number, now: number) => {
    const file = join(dir.path, `${hex(c)}.tar.gz`);
    writeFileSync(file, Buffer.alloc(size));
    utimesSync(file, (now - ageMs) / 1000, (now - ageMs) / 1000);
    return file;
  };

  it('removes the least recently used first until the cache fits, never one used in the last 2 hours', async () => {
    const now = Date.now();
    const a = cached('a', 100, 5 * HOUR, now);
    const b = cached('b', 100, 3 * HOUR, now);
    const c = cached('c', 100, 4 * HOUR, now);
    const recent = cached('d', 100, HOUR, now);
    writeFileSync(join(dir.path, 'unrelated.txt'), Buffer.alloc(1000));
    // 400 bytes of bundles, a budget of 150: a (oldest), then c, then b; d is too recent to remove.
    expect(await trimBundleCache(dir.path, 150, { now })).toEqual([a, c, b]);
    expect(existsSync(recent)).toBe(true);
    expect(existsSync(join(dir.path, 'unrelated.txt'))).toBe(true);
  });

  it('stops as soon as the cache fits', async () => {
    const now = Date.now();
    const a = cached('a', 100, 5 * HOUR, now);
    const b = cached('b', 100, 4 * HOUR, now);
    expect(await trimBundleCache(dir.path, 100, { now })).toEqual([a]);
    expect(existsSync(b)).toBe(true);
  });

  it('a find marks a bundle used, and a write with a budget trims the others, keeping the one written', async () => {
    const now = Date.now();
    const old = cached('a', 100, 5 * HOUR, now);
    const found = cached('b', 100, 6 * HOUR, now);
    const cache = fileBundleCache(dir.path, { maxBytes: 250 });
    expect(await cache.find(hex('b'))).toBe(found);
    expect(await cache.find(hex('e'))).toBeNull();
    // b was just used: a is now the least recently used, and goes when c is written.
    const written = await cache.write(hex('c'), new Uint8Array(100));
    expect(existsSync(written)).toBe(true);
    expect(existsSync(found)).toBe(true);
    expect(existsSync(old)).toBe(false);
  });
});
