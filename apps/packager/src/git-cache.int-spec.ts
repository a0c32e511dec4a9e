import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { listGitCache, trimGitCache } from './git-cache';
import { fetchGitTree, mirrorPath } from './git-source';
import { threeCommitRepo } from './testing/git-repo';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The per-URL git cache against real git: last use recorded, a byte budget enforced least recently used first. */
describe('git cache budget (least recently used first)', () => {
  let work: TempDir;
  const repos: { url: string; commit: string }[] = [];

  beforeAll(() => {
    work = tempDir('git-cache-');
    for (const name of ['a', 'b', 'c', 'd']) {
      const dir = join(work.path, `repo-${name}`);
      mkdirSync(dir);
      const commits = threeCommitRepo(dir);
      repos.push({ url: `file://${dir}`, commit: commits[2] });
    }
  });
  afterAll(() => work?.remove());

  const use = async (mirrorDir: string, i: number, extra: object = {}) => {
    await fetchGitTree(repos[i].url, repos[i].commit, { allowFileUrls: true, mirrorDir, ...extra });
    // mtimes are the LRU clock: keep uses apart on filesystems with coarse timestamps.
    await pause(20);
  };

  it('orders mirrors by last use, and removes the least recently used until the cache fits, keeping the one just used', async () => {
    const mirrorDir = join(work.path, 'mirrors-lru');
    await use(mirrorDir, 0);
    await use(mirrorDir, 1);
    await use(mirrorDir, 2);
    await use(mirrorDir, 0); // a is used again: b is now the least recently used
    const [a, b, c] = [0, 1, 2].map((i) => mirrorPath(mirrorDir, repos[i].url));
    const listed = await listGitCache(mirrorDir);
    expect(listed.map((m) => m.path)).toEqual([b, c, a]);
    expect(listed.every((m) => m.bytes > 0)).toBe(true);
    const size = (p: string) => listed.find((m) => m.path === p)!.bytes;

    // Room for two of the three: only b goes.
    const r1 = await trimGitCache(mirrorDir, size(c) + size(a), a);
    expect(r1).toEqual({ removed: [b], bytes: size(c) + size(a) });
    expect([existsSync(a), existsSync(b), existsSync(c)]).toEqual([true, false, true]);

    // A budget nothing fits in: everything but the mirror just used goes, oldest first.
    const r2 = await trimGitCache(mirrorDir, 1, a);
    expect(r2.removed).toEqual([c]);
    expect(existsSync(a)).toBe(true);

    // Under the budget: nothing is removed.
    expect((await trimGitCache(mirrorDir, 10 * size(a))).removed).toEqual([]);
  });

  it('never removes a mirror in use (its lock is held)', async () => {
    const mirrorDir = join(work.path, 'mirrors-locked');
    await use(mirrorDir, 0);
    await use(mirrorDir, 1);
    const [a, b] = [0, 1].map((i) => mirrorPath(mirrorDir, repos[i].url));
    writeFileSync(`${a}.lock`, String(process.pid)); // held by a live process (this one)
    const r = await trimGitCache(mirrorDir, 1);
    expect(r.removed).toEqual([b]);
    expect(existsSync(a)).toBe(true);
    expect(existsSync(`${a}.lock`)).toBe(true);
  });

  it('a packager fetch with a budget trims the cache after itself, least recently used first, and the job still gets its tree', async () => {
    const mirrorDir = join(work.path, 'mirrors-fetch');
    await use(mirrorDir, 0);
    await use(mirrorDir, 1);
    await use(mirrorDir, 2);
    const [a, b, c, d] = [0, 1, 2, 3].map((i) => mirrorPath(mirrorDir, repos[i].url));
    const sizes = new Map((await listGitCache(mirrorDir)).map((m) => [m.path, m.bytes]));
    const lines: string[] = [];
    // Budget for about two mirrors: a (the oldest) and then b go; c and the new d stay.
    const budget = sizes.get(c)! * 2 + Math.floor(sizes.get(c)! / 2);
    const tree = await fetchGitTree(repos[3].url, repos[3].commit, { allowFileUrls: true, mirrorDir, cacheMaxBytes: budget }, (l) => lines.push(l));
    expect([...tree.keys()].sort()).toEqual(['a.txt', 'b.txt', 'c.txt']);
    expect([existsSync(a), existsSync(b), existsSync(c), existsSync(d)]).toEqual([false, false, true, true]);
    expect(lines.some((l) => /git cache: removed 2 least recently used mirror\(s\)/.test(l))).toBe(true);
    expect((await listGitCache(mirrorDir)).map((m) => m.path)).toEqual([c, d]);
  });
});
