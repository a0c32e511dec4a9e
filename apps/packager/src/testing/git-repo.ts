import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A repository with three commits: a.txt; then b.txt; then c.txt and a.txt changed. */
export function threeCommitRepo(dir: string): string[] {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, env: { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', HOME: dir } }).toString().trim();
  git('init', '-q', '-b', 'main');
  git('config', 'user.email', 't@example.com');
  git('config', 'user.name', 't');
  const commits: string[] = [];
  writeFileSync(join(dir, 'a.txt'), 'one\n');
  git('add', '.');
  git('commit', '-q', '-m', 'one');
  commits.push(git('rev-parse', 'HEAD'));
  writeFileSync(join(dir, 'b.txt'), 'two\n');
  git('add', '.');
  git('commit', '-q', '-m', 'two');
  commits.push(git('rev-parse', 'HEAD'));
  writeFileSync(join(dir, 'c.txt'), 'three\n');
  writeFileSync(join(dir, 'a.txt'), 'one, changed\n');
  git('add', '.');
  git('commit', '-q', '-m', 'three');
  commits.push(git('rev-parse', 'HEAD'));
  return commits;
}
