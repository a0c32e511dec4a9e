import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { PackagingError } from './bundle-builder';
import { fetchGitCommit, gitUrlProblem } from './git-source';
import { threeCommitRepo } from './testing/git-repo';

describe('git source', () => {
  let repo: TempDir;
  let work: TempDir;
  let commits: string[];

  beforeAll(() => {
    repo = tempDir('git-repo');
    work = tempDir('git-work');
    commits = threeCommitRepo(repo.path);
  });
  afterAll(() => {
    repo.remove();
    work.remove();
  });

  it('checks out exactly the first commit: its files only, and no .git', async () => {
    const dest = join(work.path, 'first');
    mkdirSync(dest);
    await fetchGitCommit(`file://${repo.path}`, commits[0], dest, { allowFileUrls: true });
    expect(readdirSync(dest).sort()).toEqual(['a.txt']);
  });

  it('checks out the last commit with all three files', async () => {
    const dest = join(work.path, 'last');
    mkdirSync(dest);
    await fetchGitCommit(`file://${repo.path}`, commits[2], dest, { allowFileUrls: true });
    expect(readdirSync(dest).sort()).toEqual(['a.txt', 'b.txt', 'c.txt']);
  });

  it('fails clearly for a commit the repository does not have', async () => {
    const dest = join(work.path, 'missing');
    mkdirSync(dest);
    const err = await fetchGitCommit(`file://${repo.path}`, 'f'.repeat(40), dest, { allowFileUrls: true }).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    expect(err.message).toContain('f'.repeat(40));
  });

  it('refuses file:// unless configured', async () => {
    const dest = join(work.path, 'nofile');
    mkdirSync(dest);
    await expect(fetchGitCommit(`file://${repo.path}`, commits[0], dest)).rejects.toThrow(/file:\/\/ git URLs are not allowed/);
    expect(readdirSync(dest)).toEqual([]);
  });

  it.each([
    ['--upload-pack=touch /tmp/x', /starts with '-'/],
    ['-oProxyCommand=id', /starts with '-'/],
    ['ext::sh -c touch% /tmp/pwned', /whitespace|remote helper/],
    ['ext::sh', /remote helper/],
    ['fd::3', /remote helper/],
    ['https://example.com/a b', /whitespace/],
    ['https://example.com/a\nb', /whitespace or control/],
    ['http://example.com/repo.git', /scheme http: is not allowed/],
    ['git://example.com/repo.git', /scheme git: is not allowed/],
    ['https://evil.example.org/repo.git', /not in the allowed hosts/],
    ['git@evil.example.org:repo.git', /not in the allowed hosts/],
    ['ssh://-oProxyCommand=id/x', /host starts with '-'|not a URL|not in the allowed/],
  ])('refuses %j', (url, reason) => {
    expect(gitUrlProblem(url, { allowedHosts: ['github.com', '*.example.com'] })).toMatch(reason);
  });

  it('accepts https, ssh and scp-like URLs on allowed hosts', () => {
    const o = { allowedHosts: ['github.com', '*.example.com'] };
    expect(gitUrlProblem('https://github.com/a/b.git', o)).toBeNull();
    expect(gitUrlProblem('ssh://git@code.example.com:2222/a/b.git', o)).toBeNull();
    expect(gitUrlProblem('git@github.com:a/b.git', o)).toBeNull();
  });

  it('refuses a hostile URL before running git: nothing is created', async () => {
    const dest = join(work.path, 'hostile');
    mkdirSync(dest);
    await expect(fetchGitCommit('ext::sh -c touch% /tmp/pwned', commits[0], dest, { allowFileUrls: true })).rejects.toThrow(PackagingError);
    expect(readdirSync(dest)).toEqual([]);
  });
});
