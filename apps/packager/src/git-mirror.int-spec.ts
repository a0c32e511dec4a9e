import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobSpecSchema } from '../../../libs/contracts/src';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { packFolder, PackagingError } from './bundle-builder';
import { fetchGitCommit, mirrorPath } from './git-source';
import { threeCommitRepo } from './testing/git-repo';

describe('git source with a per-URL mirror', () => {
  let repo: TempDir;
  let other: TempDir;
  let work: TempDir;
  let commits: string[];
  let n = 0;
  const fresh = () => {
    const d = join(work.path, `dest-${n++}`);
    mkdirSync(d);
    return d;
  };

  beforeAll(() => {
    repo = tempDir('mirror-repo');
    other = tempDir('mirror-other');
    work = tempDir('mirror-work');
    commits = threeCommitRepo(repo.path);
    // Another repository, none of whose commits is one of `repo`'s.
    const env = { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', HOME: other.path };
    writeFileSync(join(other.path, 'other.txt'), 'other\n');
    for (const args of [['init', '-q', '-b', 'main'], ['add', '.'], ['-c', 'user.email=o@example.com', '-c', 'user.name=o', 'commit', '-q', '-m', 'other']]) execFileSync('git', args, { cwd: other.path, env });
  });
  afterAll(() => {
    repo.remove();
    other.remove();
    work.remove();
  });

  it('fetches once, then checks out later commits of the same URL from the mirror alone', async () => {
    const mirrorDir = join(work.path, 'mirrors-a');
    const o = { allowFileUrls: true, mirrorDir };
    const url = `file://${repo.path}`;
    const log: string[] = [];
    const first = fresh();
    await fetchGitCommit(url, commits[2], first, o, (l) => log.push(l));
    expect(readdirSync(first).sort()).toEqual(['a.txt', 'b.txt', 'c.txt']);
    expect(readFileSync(join(first, 'a.txt'), 'utf8')).toBe('one, changed\n');
    expect(existsSync(mirrorPath(mirrorDir, url))).toBe(true);
    expect(log.some((l) => l.includes('fetching'))).toBe(true);

    log.length = 0;
    const again = fresh();
    await fetchGitCommit(url, commits[2], again, o, (l) => log.push(l));
    expect(log.some((l) => l.includes('fetching'))).toBe(false);
    expect(log.some((l) => l.includes('already in the mirror'))).toBe(true);
    expect(readdirSync(again).sort()).toEqual(['a.txt', 'b.txt', 'c.txt']);

    // An older commit the shallow mirror does not have yet: fetched, and exactly that commit's tree.
    const older = fresh();
    await fetchGitCommit(url, commits[0], older, o);
    expect(readdirSync(older)).toEqual(['a.txt']);
    expect(readFileSync(join(older, 'a.txt'), 'utf8')).toBe('one\n');
  });

  it('gives the same bundle bytes as a fetch without a mirror', async () => {
    const url = `file://${repo.path}`;
    const spec = JobSpecSchema.parse({ command: 'true', source: { git: { url, commit: commits[1] } } });
    const plain = fresh();
    const mirrored = fresh();
    await fetchGitCommit(url, commits[1], plain, { allowFileUrls: true });
    await fetchGitCommit(url, commits[1], mirrored, { allowFileUrls: true, mirrorDir: join(work.path, 'mirrors-b') });
    const a = await packFolder(plain, spec, { git: { url, commit: commits[1] } });
    const b = await packFolder(mirrored, spec, { git: { url, commit: commits[1] } });
    expect(b.bytes.equals(a.bytes)).toBe(true);
  });

  it('keeps each URL in its own mirror: a failing URL leaves the others as they were', async () => {
    const mirrorDir = join(work.path, 'mirrors-c');
    const o = { allowFileUrls: true, mirrorDir };
    const good = `file://${repo.path}`;
    await fetchGitCommit(good, commits[2], fresh(), o);
    const refsBefore = execFileSync('git', ['--git-dir', mirrorPath(mirrorDir, good), 'count-objects', '-v']).toString();

    // A commit of another repository, asked of a URL that does not have it; then a URL that does not exist.
    const err = await fetchGitCommit(`file://${other.path}`, commits[2], fresh(), o).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    await expect(fetchGitCommit(`file://${work.path}/nothing-here`, commits[2], fresh(), o)).rejects.toThrow(PackagingError);
    expect(mirrorPath(mirrorDir, `file://${other.path}`)).not.toBe(mirrorPath(mirrorDir, good));

    expect(execFileSync('git', ['--git-dir', mirrorPath(mirrorDir, good), 'count-objects', '-v']).toString()).toBe(refsBefore);
    const dest = fresh();
    await fetchGitCommit(good, commits[2], dest, o);
    expect(readdirSync(dest).sort()).toEqual(['a.txt', 'b.txt', 'c.txt']);
  });

  it('fails clearly for a commit the mirrored repository does not have, and leaves no .git', async () => {
    const dest = fresh();
    const err = await fetchGitCommit(`file://${repo.path}`, 'e'.repeat(40), dest, { allowFileUrls: true, mirrorDir: join(work.path, 'mirrors-d') }).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    expect(err.message).toContain('e'.repeat(40));
  });

  it('serves concurrent jobs on the same URL, one at a time, each with exactly its commit', async () => {
    const o = { allowFileUrls: true, mirrorDir: join(work.path, 'mirrors-e') };
    const dests = commits.map(() => fresh());
    await Promise.all(commits.map((c, i) => fetchGitCommit(`file://${repo.path}`, c, dests[i], o)));
    expect(dests.map((d) => readdirSync(d).sort())).toEqual([['a.txt'], ['a.txt', 'b.txt'], ['a.txt', 'b.txt', 'c.txt']]);
    expect(readdirSync(o.mirrorDir).filter((f) => f.endsWith('.lock'))).toEqual([]);
  });

  it('refuses a hostile URL before creating any mirror', async () => {
    const mirrorDir = join(work.path, 'mirrors-f');
    await expect(fetchGitCommit('ext::sh -c touch% /tmp/pwned', commits[0], fresh(), { allowFileUrls: true, mirrorDir })).rejects.toThrow(PackagingError);
    expect(existsSync(mirrorDir)).toBe(false);
  });

  it('picks up new commits of the URL with a later fetch into the same mirror', async () => {
    const o = { allowFileUrls: true, mirrorDir: join(work.path, 'mirrors-g') };
    const scratch = tempDir('mirror-grow');
    const c = threeCommitRepo(scratch.path);
    await fetchGitCommit(`file://${scratch.path}`, c[2], fresh(), o);
    writeFileSync(join(scratch.path, 'd.txt'), 'four\n');
    const env = { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', HOME: scratch.path };
    execFileSync('git', ['add', '.'], { cwd: scratch.path, env });
    execFileSync('git', ['commit', '-q', '-m', 'four'], { cwd: scratch.path, env });
    const fourth = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: scratch.path, env }).toString().trim();
    const dest = fresh();
    await fetchGitCommit(`file://${scratch.path}`, fourth, dest, o);
    expect(readdirSync(dest).sort()).toEqual(['a.txt', 'b.txt', 'c.txt', 'd.txt']);
    scratch.remove();
  });
});
