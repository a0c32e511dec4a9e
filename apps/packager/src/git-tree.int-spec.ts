import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { JobSpecSchema } from '../../../libs/contracts/src';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { packFolder, PackagingError } from './bundle-builder';
import { pathInside } from './data-fetch';
import { fetchGitCommit, fetchGitTree } from './git-source';
import { sourcePathProblem } from './git-tree';

/** Runs git in dir with a clean environment; returns stdout trimmed. */
function gitIn(dir: string, args: string[], input?: string): string {
  const env = { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', HOME: dir, GIT_AUTHOR_DATE: '2020-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2020-01-01T00:00:00Z' };
  return execFileSync('git', ['-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args], { cwd: dir, env, input, stdio: ['pipe', 'pipe', 'pipe'] }).toString().trim();
}

/** A repository with what a checkout treats specially: modes, links in and out of the tree, long and odd names, attributes, a submodule. */
function awkwardRepo(dir: string): string {
  gitIn(dir, ['init', '-q', '-b', 'main']);
  mkdirSync(join(dir, 'src/deep/er'), { recursive: true });
  writeFileSync(join(dir, 'src/deep/er/b.txt'), 'bee\nsecond line\n');
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, 'tool.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(dir, 'tool.sh'), 0o755);
  writeFileSync(join(dir, 'naïve file ü.txt'), 'unicode\n');
  const long = `${'l'.repeat(60)}/${'m'.repeat(60)}/${'n'.repeat(80)}.txt`;
  mkdirSync(join(dir, long, '..'), { recursive: true });
  writeFileSync(join(dir, long), 'a long path\n');
  symlinkSync('src/deep/er/b.txt', join(dir, 'inside'));
  symlinkSync('../../../etc/passwd', join(dir, 'outside'));
  symlinkSync('/etc/hostname', join(dir, 'absolute'));
  writeFileSync(join(dir, 'crlf.txt'), 'one\ntwo\n');
  writeFileSync(join(dir, 'ignored.txt'), 'kept by a checkout\n');
  writeFileSync(join(dir, 'subst.txt'), '$Format:%H$\n');
  writeFileSync(join(dir, 'ident.txt'), '$Id$\n');
  writeFileSync(join(dir, '.gitattributes'), 'crlf.txt text eol=crlf\nignored.txt export-ignore\nsubst.txt export-subst\nident.txt ident\n');
  gitIn(dir, ['add', '.']);
  // A submodule entry (gitlink): a checkout leaves an empty folder.
  gitIn(dir, ['update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},sub`]);
  gitIn(dir, ['commit', '-q', '-m', 'awkward']);
  return gitIn(dir, ['rev-parse', 'HEAD']);
}

describe('reading a commit without a checkout', () => {
  let repo: TempDir;
  let work: TempDir;
  let commit: string;
  let n = 0;
  const fresh = () => {
    const d = join(work.path, `d-${n++}`);
    mkdirSync(d);
    return d;
  };
  const spec = (url: string, c: string) => JobSpecSchema.parse({ command: ['ls'], env: { A: '1' }, source: { git: { url, commit: c } } });

  beforeAll(() => {
    repo = tempDir('tree-repo');
    work = tempDir('tree-work');
    commit = awkwardRepo(repo.path);
  });
  afterAll(() => {
    repo.remove();
    work.remove();
  });

  it('gives byte for byte the bundle of a checkout, files added beside the source included', async () => {
    const url = `file://${repo.path}`;
    const meta = { git: { url, commit }, data: [{ path: 'data/x.bin', url: 'https://example.com/x', sha256: 'a'.repeat(64) }] };
    const checkedOut = fresh();
    await fetchGitCommit(url, commit, checkedOut, { allowFileUrls: true });
    const beside = fresh();
    for (const root of [checkedOut, beside]) {
      mkdirSync(join(root, 'data'), { recursive: true });
      mkdirSync(join(root, 'src/deep'), { recursive: true });
      writeFileSync(join(root, 'data/x.bin'), Buffer.from([0, 1, 2, 255]));
      writeFileSync(join(root, 'src/deep/added.bin'), 'added into a source folder\n');
    }
    const old = await packFolder(checkedOut, spec(url, commit), meta);
    for (const mirrorDir of [undefined, join(work.path, 'mirrors')]) {
      const tree = await fetchGitTree(url, commit, { allowFileUrls: true, mirrorDir });
      const dir = fresh();
      mkdirSync(join(dir, 'data'));
      mkdirSync(join(dir, 'src/deep'), { recursive: true });
      writeFileSync(join(dir, 'data/x.bin'), Buffer.from([0, 1, 2, 255]));
      writeFileSync(join(dir, 'src/deep/added.bin'), 'added into a source folder\n');
      const built = await packFolder(dir, spec(url, commit), meta, {}, tree);
      expect(built.manifest).toEqual(old.manifest);
      expect(built.bytes.equals(old.bytes)).toBe(true);
      expect(built.sha256).toBe(old.sha256);
    }
    // What the comparison covered: the checkout kept the attributes' effects and every odd entry.
    const paths = old.manifest.files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['ignored.txt', 'subst.txt', 'outside', 'absolute', 'naïve file ü.txt', '.gitattributes']));
    expect(old.manifest.files.find((f) => f.path === 'crlf.txt')?.size).toBe(10);
    expect(readdirSync(join(checkedOut, 'sub'))).toEqual([]);
  });

  it('fails clearly for a commit the URL does not have', async () => {
    const err = await fetchGitTree(`file://${repo.path}`, 'd'.repeat(40), { allowFileUrls: true }).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    expect(err.message).toContain('d'.repeat(40));
  });

  it('refuses hostile URLs and short hashes before running git', async () => {
    await expect(fetchGitTree('ext::sh -c touch% /tmp/pwned', commit, { allowFileUrls: true })).rejects.toThrow(/remote helper|whitespace/);
    await expect(fetchGitTree(`file://${repo.path}`, commit)).rejects.toThrow(/file:\/\/ git URLs are not allowed/);
    await expect(fetchGitTree(`file://${repo.path}`, commit.slice(0, 12), { allowFileUrls: true })).rejects.toThrow(/full hash/);
  });

  it.each(['.git', '.GIT', '.git.', 'git~1'])('refuses a commit whose tree names %j, as a checkout does', async (name) => {
    const hostile = tempDir('tree-hostile');
    gitIn(hostile.path, ['init', '-q', '-b', 'main']);
    const blob = gitIn(hostile.path, ['hash-object', '-w', '--stdin'], '[core]\n\tfsmonitor = touch /tmp/pwned\n');
    const inner = gitIn(hostile.path, ['mktree'], `100644 blob ${blob}\tconfig\n`);
    const top = gitIn(hostile.path, ['mktree'], `040000 tree ${inner}\t${name}\n`);
    const c = gitIn(hostile.path, ['commit-tree', top, '-m', 'hostile']);
    const err = await fetchGitTree(`file://${hostile.path}`, c, { allowFileUrls: true }).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    // git archive refuses these paths itself, as checkout does; sourcePathProblem is the second line.
    expect(err.message).toMatch(/names \.git|invalid path/);
    hostile.remove();
  });

  it('refuses a source with its own .jobline entry', async () => {
    const r = tempDir('tree-jobline');
    mkdirSync(join(r.path, '.jobline'));
    writeFileSync(join(r.path, '.jobline/run.sh'), 'evil\n');
    gitIn(r.path, ['init', '-q', '-b', 'main']);
    gitIn(r.path, ['add', '.']);
    gitIn(r.path, ['commit', '-q', '-m', 'x']);
    const c = gitIn(r.path, ['rev-parse', 'HEAD']);
    const tree = await fetchGitTree(`file://${r.path}`, c, { allowFileUrls: true });
    await expect(packFolder(fresh(), spec(`file://${r.path}`, c), {}, {}, tree)).rejects.toThrow(/reserves/);
    r.remove();
  });

  it('checks data paths against the source held in memory as against a checkout', async () => {
    const tree = await fetchGitTree(`file://${repo.path}`, commit, { allowFileUrls: true });
    const root = fresh();
    await expect(pathInside(root, 'inside/x', tree)).rejects.toThrow(/goes through a symlink of the source \(inside\)/);
    await expect(pathInside(root, 'outside', tree)).rejects.toThrow(/goes through a symlink of the source/);
    await expect(pathInside(root, 'src/deep/er/b.txt', tree)).rejects.toThrow(/already exists in the source/);
    await expect(pathInside(root, 'tool.sh/x', tree)).rejects.toThrow(/goes through a file of the source/);
    await expect(pathInside(root, '../x', tree)).rejects.toThrow(/leaves the bundle/);
    expect(await pathInside(root, 'src/deep/new.bin', tree)).toBe(join(root, 'src/deep/new.bin'));
  });

  it.each([
    ['a/../b', /'\.\.'/],
    ['./a', /'\.'/],
    ['a//b', /empty/],
    ['x/.Git /config', /\.git/],
    ['a\\b', /backslash/],
  ])('sourcePathProblem refuses %j', (p, why) => {
    expect(sourcePathProblem(p)).toMatch(why);
  });

  it('sourcePathProblem accepts ordinary names', () => {
    for (const p of ['a', '.gitignore', '.github/workflows/ci.yml', 'x/.gitattributes', 'naïve ü']) expect(sourcePathProblem(p)).toBeNull();
  });
});
