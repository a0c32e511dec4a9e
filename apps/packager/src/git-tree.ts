import { spawn } from 'node:child_process';
import { Parser, type ReadEntry } from 'tar';
import { PackagingError } from './bundle-builder';

/** One entry of a commit's tree, in memory: what a checkout would have written, without writing it. */
export interface SourceEntry {
  /** Relative path, '/'-separated, no trailing slash. */
  path: string;
  kind: 'dir' | 'file' | 'symlink';
  /** Files: true when git records them executable (100755). */
  executable?: boolean;
  data?: Buffer;
  target?: string;
}

/** A commit's tree by path. */
export type SourceTree = Map<string, SourceEntry>;

/**
 * A path as a checkout would accept it: relative, no '', '.', '..' or NUL, and no '.git'
 * component in any spelling git itself refuses (case, trailing dots or spaces, 8.3 name).
 */
export function sourcePathProblem(path: string): string | null {
  if (path.includes('\0') || path.includes('\\')) return `source path ${JSON.stringify(path)} contains NUL or a backslash`;
  for (const part of path.split('/')) {
    if (part === '' || part === '.' || part === '..') return `source path ${JSON.stringify(path)} has an empty, '.' or '..' component`;
    const p = part.toLowerCase().replace(/[. ]+$/, '');
    if (p === '.git' || p === 'git~1') return `source path ${JSON.stringify(path)} names .git`;
  }
  return null;
}

/**
 * Reads `commit`'s tree from the repository at gitDir with `git archive --format=tar`,
 * streamed into tar's parser: nothing is written to disk. The repository's own
 * info/attributes must turn export-ignore and export-subst off (the mirror's does), so the
 * content is what a checkout writes.
 */
export function readGitTree(gitDir: string, commit: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<SourceTree> {
  const tree: SourceTree = new Map();
  return new Promise((resolve, reject) => {
    let failed: Error | null = null;
    const fail = (e: unknown) => {
      failed ??= e instanceof Error ? e : new Error(String(e));
    };
    const add = (e: SourceEntry) => {
      const problem = sourcePathProblem(e.path);
      if (problem) throw new PackagingError(problem);
      if (tree.has(e.path)) throw new PackagingError(`source path ${JSON.stringify(e.path)} appears twice in the commit`);
      tree.set(e.path, e);
    };
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (failed) return entry.resume();
        try {
          const path = entry.path.replace(/\/+$/, '');
          switch (entry.type) {
            case 'Directory':
              add({ path, kind: 'dir' });
              return entry.resume();
            case 'SymbolicLink':
              add({ path, kind: 'symlink', target: entry.linkpath ?? '' });
              return entry.resume();
            case 'File':
            case 'OldFile': {
              const chunks: Buffer[] = [];
              entry.on('data', (c: Buffer) => chunks.push(c));
              entry.on('end', () => {
                try {
                  add({ path, kind: 'file', executable: ((entry.mode ?? 0) & 0o111) !== 0, data: Buffer.concat(chunks) });
                } catch (e) {
                  fail(e);
                }
              });
              return;
            }
            default:
              throw new PackagingError(`git archive gave an entry ${path} of type ${entry.type}`);
          }
        } catch (e) {
          fail(e);
          entry.resume();
        }
      },
    });
    parser.on('warn', (_code: string, message: string) => fail(new PackagingError(`git archive output is not a valid tar: ${message}`)));
    parser.on('error', (e: Error) => fail(new PackagingError(`git archive output is not a valid tar: ${e.message}`)));
    const child = spawn('git', ['archive', '--format=tar', commit], { cwd: gitDir, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    child.stdout.pipe(parser);
    let parsed = false;
    let exit: number | null | undefined;
    const settle = () => {
      if (!parsed || exit === undefined) return;
      if (exit !== 0) return reject(new PackagingError(`git archive of ${commit} failed: ${Buffer.concat(stderr).toString().trim().split('\n')[0] || `exit ${exit}`}`));
      return failed ? reject(failed) : resolve(tree);
    };
    parser.on('end', () => {
      parsed = true;
      settle();
    });
    child.on('error', (e) => reject(new PackagingError(`git archive could not run: ${e.message}`)));
    child.on('close', (code) => {
      exit = code;
      settle();
    });
  });
}
