import fc from 'fast-check';
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { PackagingError } from './bundle-builder';
import { unpackArchive } from './archive';
import { tarOf, zipOf } from './testing/archives';

/*
 * Property-based fuzzing of the archive reader (fast-check): generated hostile archives —
 * zip-slip in every spelling ('..', '.\\..', 'a/../..', backslashes, drive letters, absolute
 * paths into a watched folder), symlink chains and links through links, files inside links or
 * files, duplicate names, device entries, huge names, deep trees, many entries, corrupted
 * bytes — in both formats. Whatever the input: nothing is ever written outside the
 * workspace, a refusal is a PackagingError with a message that names the problem (and leaves
 * the workspace empty), and what is accepted stays inside the tree (every link resolves
 * inside it).
 * Runs are bounded (numRuns) so this stays a fast unit test; a failure prints the seed and
 * the shrunk counterexample to replay.
 */

const RUNS = Number(process.env.JOBLINE_FUZZ_RUNS ?? 150);

describe('archive reader under generated hostile input', () => {
  let dir: TempDir;
  let n = 0;
  beforeAll(() => (dir = tempDir('archive-fuzz-')));
  afterAll(() => dir.remove());

  /** A fresh base/ with an empty workspace/ and a watched outside/ beside it. */
  const fresh = () => {
    const base = join(dir.path, `case-${n++}`);
    mkdirSync(join(base, 'workspace'), { recursive: true });
    mkdirSync(join(base, 'outside'));
    return { base, root: join(base, 'workspace'), outside: join(base, 'outside') };
  };

  /** Stands for the watched outside/ folder's absolute path; replaced in each run (shrinking re-runs with new folders). */
  const OUT = '@OUTSIDE@';
  const segment = (outside: string) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom('a', 'b', 'src', 'x.txt', '.hidden', '...', '..a', 'a..') },
      { weight: 3, arbitrary: fc.constantFrom('..', '.', '', '\\..', '..\\..', '.\\..\\', 'C:', 'c:\\', '%2e%2e') },
      { weight: 1, arbitrary: fc.constant(outside.replace(/^\//, '/')) },
      { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 8 }) },
      { weight: 1, arbitrary: fc.constantFrom('n'.repeat(256), 'é'.repeat(130)) },
    );
  const path = (outside: string) => fc.array(segment(outside), { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/'));
  const linkTarget = (outside: string) =>
    fc.oneof(path(outside), fc.constantFrom('/', '/etc', outside, '../..', '..', 'a/../..', 'l1', 'l2/..', './', `${outside}/x`));

  type Spec = { kind: 'file' | 'dir' | 'link' | 'device' | 'hardlink'; name: string; target?: string; data?: string };
  const entry = (outside: string) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('file' as const), name: path(outside), data: fc.string({ maxLength: 40 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('dir' as const), name: path(outside) }) },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('link' as const), name: fc.oneof(path(outside), fc.constantFrom('l1', 'l2', 'a/l1')), target: linkTarget(outside) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('device' as const, 'hardlink' as const), name: path(outside), target: path(outside) }) },
    );

  const asTar = (entries: Spec[]) =>
    tarOf(
      entries.map((e) =>
        e.kind === 'file'
          ? { name: e.name, data: e.data }
          : e.kind === 'dir'
            ? { name: `${e.name}/`, type: '5' }
            : e.kind === 'link'
              ? { name: e.name, type: '2', link: e.target }
              : e.kind === 'device'
                ? { name: e.name, type: '3' }
                : { name: e.name, type: '1', link: e.target },
      ),
    );
  const asZip = (entries: Spec[]) =>
    zipOf(
      entries.map((e) =>
        e.kind === 'file'
          ? { name: e.name, data: e.data }
          : e.kind === 'dir'
            ? { name: `${e.name}/`, mode: 0o040755 }
            : e.kind === 'link'
              ? { name: e.name, data: e.target, mode: 0o120777 }
              : { name: e.name, data: '', mode: e.kind === 'device' ? 0o020644 : 0o010644 },
      ),
    );

  /** Every path under `root`, without following links. */
  const walk = (root: string, at = root): string[] =>
    readdirSync(at).flatMap((name) => {
      const p = join(at, name);
      return lstatSync(p).isDirectory() ? [p, ...walk(root, p)] : [p];
    });

  const inside = (root: string, p: string) => p === root || p.startsWith(root + sep);

  /** The property every outcome must have. */
  async function check(bytes: Buffer, where: ReturnType<typeof fresh>): Promise<void> {
    const outcome = await unpackArchive(bytes, where.root).then(
      () => null,
      (e: unknown) => e,
    );
    // Nothing outside: the base holds exactly the two folders, the watched one is still empty.
    expect(readdirSync(where.base).sort()).toEqual(['outside', 'workspace']);
    expect(readdirSync(where.outside)).toEqual([]);
    if (outcome !== null) {
      expect(outcome).toBeInstanceOf(PackagingError);
      const message = (outcome as Error).message;
      expect(message).toMatch(/^(archive|the archive)\b/);
      expect(message.length).toBeLessThan(1000);
      expect(readdirSync(where.root)).toEqual([]);
      return;
    }
    const root = realpathSync(where.root);
    for (const p of walk(where.root)) {
      expect(inside(where.root, resolve(p))).toBe(true);
      const st = lstatSync(p);
      expect(st.isFile() || st.isDirectory() || st.isSymbolicLink()).toBe(true);
      if (st.isSymbolicLink()) {
        // Lexically and, when it points at something, really: inside the tree.
        expect(inside(where.root, resolve(dirname(p), readlinkSync(p)))).toBe(true);
        if (existsSync(p)) expect(inside(root, realpathSync(p))).toBe(true);
      }
    }
  }

  for (const [format, build] of [
    ['tar.gz', asTar],
    ['zip', asZip],
  ] as const) {
    it(`${format}: hostile entry lists never write outside the workspace, and refusals are clear`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.context(),
          fc.array(entry(OUT), { minLength: 1, maxLength: 12 }),
          async (ctx, generated) => {
            ctx.log(JSON.stringify(generated));
            const where = fresh();
            const entries = JSON.parse(JSON.stringify(generated).replaceAll(OUT, where.outside)) as Spec[];
            try {
              await check(build(entries), where);
            } finally {
              rmSync(where.base, { recursive: true, force: true });
            }
          },
        ),
        { numRuns: RUNS },
      );
    });

    it(`${format}: corrupted bytes are refused as invalid archives, never thrown raw`, async () => {
      const good = build([
        { kind: 'dir', name: 'src' },
        { kind: 'file', name: 'src/a.txt', data: 'hello '.repeat(50) },
        { kind: 'link', name: 'l', target: 'src/a.txt' },
      ]);
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat({ max: good.length }), async (flips, cut) => {
          const bytes = Buffer.from(good.subarray(0, Math.max(2, cut)));
          for (const [at, value] of flips) if (at >= 2 && at < bytes.length) bytes[at] = value;
          const where = fresh();
          try {
            await check(bytes, where);
          } finally {
            rmSync(where.base, { recursive: true, force: true });
          }
        }),
        { numRuns: RUNS },
      );
    });
  }

  it('deep trees, many entries and huge names are refused by their limits, before anything is written', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 33, max: 200 }), fc.integer({ min: 21, max: 60 }), async (depth, count) => {
        const deep = fresh();
        await check(asTar([{ kind: 'file', name: Array.from({ length: depth }, () => 'd').join('/'), data: 'x' }]), deep);
        await expect(unpackArchive(asZip([{ kind: 'file', name: Array.from({ length: depth }, () => 'd').join('/'), data: 'x' }]), fresh().root)).rejects.toThrow(
          /deeper than 32 levels/,
        );
        const many = fresh();
        const entries: Spec[] = Array.from({ length: count }, (_, i) => ({ kind: 'file', name: `f${i}`, data: '' }));
        await expect(unpackArchive(asZip(entries), many.root, { maxEntries: 20 })).rejects.toThrow(/more than 20 entries/);
        await expect(unpackArchive(asTar(entries), many.root, { maxEntries: 20 })).rejects.toThrow(/more than 20 entries/);
        expect(readdirSync(many.root)).toEqual([]);
      }),
      { numRuns: 20 },
    );
  });
});
