import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { PackagingError } from './bundle-builder';
import { trimGitCache, withMirrorLock } from './git-cache';
import { readGitTree, type SourceTree } from './git-tree';
import { hostAllowed } from '../../../libs/net/src';

export interface GitSourceOptions {
  /** Allow file:// URLs (default false: a job could otherwise read any repository on the packager's host). */
  allowFileUrls?: boolean;
  /** Hosts a git URL may name; '*.example.com' matches subdomains. Undefined: any host. */
  allowedHosts?: string[];
  /** Time allowed for each git command (default 300 s). */
  timeoutMs?: number;
  /** The packager's own PATH, for finding git and ssh. */
  path?: string;
  /**
   * Folder of per-URL bare mirrors (one per sha256 of the URL, each with its own lock):
   * a later job on the same repository fetches only what the mirror lacks, and checks out
   * from it without copying objects. Undefined: every job fetches into its own folder.
   */
  mirrorDir?: string;
  /**
   * Byte budget of mirrorDir: after each use, the least recently used mirrors are removed
   * until the cache fits (the one just used is kept). Undefined: no budget.
   */
  cacheMaxBytes?: number;
}

/** `ext::sh -c ...`, `fd::3`, any `<transport>::<address>`: a remote helper, never a plain URL. */
const HELPER_TRANSPORT = /^[A-Za-z0-9][A-Za-z0-9+.-]*::/;
// eslint-disable-next-line no-control-regex
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f]/;
const SCP_LIKE = /^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+):(?!\/\/)(.+)$/;

/** The host allowlist check lives in libs/net with the address guard. */
export { hostAllowed };

/**
 * Checks a git URL before git ever sees it; returns why it is refused, or null.
 * Allowed: https://, ssh://, scp-like user@host:path, and file:// when configured.
 */
export function gitUrlProblem(url: string, o: GitSourceOptions = {}): string | null {
  if (url.startsWith('-')) return `git URL ${JSON.stringify(url)} starts with '-', which git could read as an option`;
  if (WHITESPACE_OR_CONTROL.test(url)) return 'git URL contains whitespace or control characters';
  if (HELPER_TRANSPORT.test(url)) return `git URL ${JSON.stringify(url.slice(0, 40))} names a remote helper transport ('<transport>::'), which could run commands`;
  const scp = SCP_LIKE.exec(url);
  if (scp && !url.includes('://')) {
    if (scp[2].startsWith('-')) return 'git URL host starts with \'-\'';
    return hostAllowed(scp[2], o.allowedHosts) ? null : `git host ${scp[2]} is not in the allowed hosts`;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `git URL ${JSON.stringify(url)} is not a URL (use https://, ssh:// or user@host:path)`;
  }
  const scheme = parsed.protocol.replace(/:$/, '');
  if (scheme === 'file') {
    if (!o.allowFileUrls) return 'file:// git URLs are not allowed by this packager (allowFileUrls)';
    if (parsed.host) return 'file:// git URLs must not name a host';
    return null;
  }
  if (scheme !== 'https' && scheme !== 'ssh') return `git URL scheme ${scheme}: is not allowed (https, ssh${o.allowFileUrls ? ', file' : ''})`;
  if (!parsed.hostname) return 'git URL has no host';
  if (parsed.hostname.startsWith('-')) return "git URL host starts with '-'";
  if (!hostAllowed(parsed.hostname, o.allowedHosts)) return `git host ${parsed.hostname} is not in the allowed hosts`;
  return null;
}

/**
 * Fetches exactly `commit` of `url` into `dest` (an empty folder) and removes .git.
 * Tries a shallow fetch of that one commit first, then a full fetch when the server refuses it.
 */
export async function fetchGitCommit(url: string, commit: string, dest: string, o: GitSourceOptions = {}, progress?: (line: string) => void): Promise<void> {
  const problem = gitUrlProblem(url, o);
  if (problem) throw new PackagingError(problem);
  if (!/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(commit)) throw new PackagingError('commit must be a full hash (40 or 64 lowercase hex digits)');
  if (o.mirrorDir) {
    const mirror = mirrorPath(o.mirrorDir, url);
    try {
      await withMirrorLock(mirror, async () => {
        await fetchInto(await openMirror(mirror, url, o), url, commit, progress);
        await checkoutFromMirror(gitAt(dest, o, dest), mirror, url, commit);
      });
    } finally {
      await keepWithinBudget(o, mirror, progress);
    }
  } else {
    const git = gitAt(dest, o, dest);
    await initRepo(git, url, false);
    await fetchInto(git, url, commit, progress);
    await checkout(git, url, commit);
  }
  await rm(join(dest, '.git'), { recursive: true, force: true });
}

/**
 * Reads exactly `commit` of `url` as an in-memory tree, never checked out: fetched into the
 * URL's mirror (or a throwaway bare repository when no mirrorDir is set), verified to be that
 * commit, then streamed out of git as a tar. Same content as fetchGitCommit writes to disk.
 */
export async function fetchGitTree(url: string, commit: string, o: GitSourceOptions = {}, progress?: (line: string) => void): Promise<SourceTree> {
  const problem = gitUrlProblem(url, o);
  if (problem) throw new PackagingError(problem);
  if (!/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(commit)) throw new PackagingError('commit must be a full hash (40 or 64 lowercase hex digits)');
  const scratch = o.mirrorDir ? null : await mkdtemp(join(tmpdir(), 'jobline-git-'));
  const mirrorDir = o.mirrorDir ?? scratch!;
  const mo = { ...o, mirrorDir };
  const mirror = mirrorPath(mirrorDir, url);
  try {
    return await withMirrorLock(mirror, async () => {
      const git = await openMirror(mirror, url, mo);
      await fetchInto(git, url, commit, progress);
      const resolved = (await git.raw(['rev-parse', '--verify', '--end-of-options', `${commit}^{commit}`]).catch(() => '')).trim();
      if (resolved !== commit) throw new PackagingError(`commit ${commit} is not in ${url}`);
      // Highest-precedence attributes: the commit's own .gitattributes cannot drop files or rewrite them for the archive.
      await mkdir(join(mirror, 'info'), { recursive: true });
      await writeFile(join(mirror, 'info/attributes'), '* -export-ignore -export-subst\n');
      return await readGitTree(mirror, commit, { ...gitEnv(mo, mirrorDir), GIT_DIR: mirror }, o.timeoutMs ?? 300_000);
    });
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
    else await keepWithinBudget(o, mirror, progress);
  }
}

/** Trims the git cache to its budget after a use; a failure to trim never fails the job (the next use tries again). */
async function keepWithinBudget(o: GitSourceOptions, used: string, progress?: (line: string) => void): Promise<void> {
  if (!o.mirrorDir || o.cacheMaxBytes === undefined) return;
  try {
    const r = await trimGitCache(o.mirrorDir, o.cacheMaxBytes, used);
    if (r.removed.length) progress?.(`git cache: removed ${r.removed.length} least recently used mirror(s), ${r.bytes} bytes left (budget ${o.cacheMaxBytes})`);
  } catch (err) {
    progress?.(`git cache: not trimmed: ${(err as Error).message}`);
  }
}

/** The bare mirror of `url` under `mirrorDir`: named by the URL's sha256, so no URL can name (or reach) another's mirror. */
export function mirrorPath(mirrorDir: string, url: string): string {
  return join(mirrorDir, `${createHash('sha256').update(url).digest('hex')}.git`);
}

/** git at baseDir; bare: baseDir itself is the repository (GIT_DIR), never one git might find above it. */
function gitAt(baseDir: string, o: GitSourceOptions, home: string, bare = false): SimpleGit {
  return simpleGit({ baseDir, timeout: { block: o.timeoutMs ?? 300_000 }, unsafe: { allowUnsafeSshCommand: true }, allowEnvironment: ['GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_ALLOW_PROTOCOL', 'GIT_SSH_COMMAND', 'GIT_DIR'] }).env({ ...gitEnv(o, home), ...(bare ? { GIT_DIR: baseDir } : {}) });
}

function gitEnv(o: GitSourceOptions, home: string): Record<string, string> {
  return {
    PATH: o.path ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    // Also binds submodules and redirects: no transport but these.
    GIT_ALLOW_PROTOCOL: o.allowFileUrls ? 'https:ssh:file' : 'https:ssh',
    // Our own constant, never the job's: no password prompt can hang packaging.
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
  };
}

const explain = (url: string, what: string, err: unknown) => new PackagingError(`git ${what} failed for ${url}: ${firstLine(err)}`, { cause: err });

async function hasCommit(git: SimpleGit, commit: string): Promise<boolean> {
  return git.raw(['cat-file', '-e', `${commit}^{commit}`]).then(
    () => true,
    () => false,
  );
}

/** A new repository at git's base folder with `url` as its origin; a bare one never runs gc. */
async function initRepo(git: SimpleGit, url: string, bare: boolean): Promise<void> {
  await git.init(bare).catch((e) => Promise.reject(explain(url, 'init', e)));
  // No gc in a mirror: objects a concurrent checkout reads through alternates are never pruned under it.
  if (bare) await git.raw(['config', 'gc.auto', '0']).catch((e) => Promise.reject(explain(url, 'config', e)));
  await git.addRemote('origin', url).catch((e) => Promise.reject(explain(url, 'remote add', e)));
}

/** The mirror of `url`, created (in a temporary folder, renamed into place) when there is none yet. */
async function openMirror(mirror: string, url: string, o: GitSourceOptions): Promise<SimpleGit> {
  if (!(await stat(join(mirror, 'HEAD')).catch(() => null))) {
    const tmp = `${mirror}.new-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await initRepo(gitAt(tmp, o, o.mirrorDir!, true), url, true);
    await rm(mirror, { recursive: true, force: true });
    await rename(tmp, mirror);
  }
  return gitAt(mirror, o, o.mirrorDir!, true);
}

/**
 * Fetches `commit` into an initialized repository: a shallow fetch of that one commit
 * first, everything when the server refuses it. Nothing when the repository has it already.
 */
async function fetchInto(git: SimpleGit, url: string, commit: string, progress: ((line: string) => void) | undefined): Promise<void> {
  if (await hasCommit(git, commit)) {
    progress?.(`git: ${commit} is already in the mirror of ${url}`);
    return;
  }
  progress?.(`git: fetching ${commit} from ${url}`);
  try {
    await git.raw(['fetch', '--quiet', '--no-tags', '--depth', '1', 'origin', commit]);
  } catch (shallowErr) {
    progress?.(`git: the server refused a fetch of one commit (${firstLine(shallowErr)}); fetching everything`);
    try {
      await git.raw(['fetch', '--quiet', '--no-tags', 'origin', '+refs/*:refs/remotes/origin/*']);
    } catch (err) {
      throw explain(url, 'fetch', err);
    }
  }
  if (!(await hasCommit(git, commit))) throw new PackagingError(`commit ${commit} is not in ${url}`);
}

async function checkout(git: SimpleGit, url: string, commit: string): Promise<void> {
  await git.raw(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', commit]).catch((e) => Promise.reject(explain(url, 'checkout', e)));
  const head = (await git.revparse(['HEAD'])).trim();
  if (head !== commit) throw new PackagingError(`after checkout HEAD is ${head}, not ${commit}`);
}

/** A throwaway repository in dest that borrows the mirror's objects (alternates), checked out at exactly `commit`. */
async function checkoutFromMirror(git: SimpleGit, mirror: string, url: string, commit: string): Promise<void> {
  await git.init().catch((e) => Promise.reject(explain(url, 'init', e)));
  const gitDir = (await git.raw(['rev-parse', '--absolute-git-dir'])).trim();
  await writeFile(join(gitDir, 'objects/info/alternates'), `${join(mirror, 'objects')}\n`);
  // A shallow mirror's commit names parents it does not have; the shallow list tells git so.
  const shallow = await readFile(join(mirror, 'shallow')).catch(() => null);
  if (shallow) await writeFile(join(gitDir, 'shallow'), shallow);
  if (!(await hasCommit(git, commit))) throw new PackagingError(`commit ${commit} is not in ${url}`);
  await checkout(git, url, commit);
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').map((l) => l.trim()).find((l) => l.length > 0)?.slice(0, 300) ?? 'unknown error';
}
