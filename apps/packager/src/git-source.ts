import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { PackagingError } from './bundle-builder';

export interface GitSourceOptions {
  /** Allow file:// URLs (default false: a job could otherwise read any repository on the packager's host). */
  allowFileUrls?: boolean;
  /** Hosts a git URL may name; '*.example.com' matches subdomains. Undefined: any host. */
  allowedHosts?: string[];
  /** Time allowed for each git command (default 300 s). */
  timeoutMs?: number;
  /** The packager's own PATH, for finding git and ssh. */
  path?: string;
}

/** `ext::sh -c ...`, `fd::3`, any `<transport>::<address>`: a remote helper, never a plain URL. */
const HELPER_TRANSPORT = /^[A-Za-z0-9][A-Za-z0-9+.-]*::/;
// eslint-disable-next-line no-control-regex
const WHITESPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f]/;
const SCP_LIKE = /^(?:([A-Za-z0-9._-]+)@)?([A-Za-z0-9.-]+):(?!\/\/)(.+)$/;

/** True when host matches the allowlist (undefined: everything). */
export function hostAllowed(host: string, allowed: string[] | undefined): boolean {
  if (!allowed) return true;
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return allowed.some((a) => {
    const p = a.toLowerCase();
    return p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p;
  });
}

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
  const git: SimpleGit = simpleGit({ baseDir: dest, timeout: { block: o.timeoutMs ?? 300_000 }, unsafe: { allowUnsafeSshCommand: true }, allowEnvironment: ['GIT_TERMINAL_PROMPT', 'GIT_CONFIG_NOSYSTEM', 'GIT_ALLOW_PROTOCOL', 'GIT_SSH_COMMAND'] }).env({
    PATH: o.path ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: dest,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    // Also binds submodules and redirects: no transport but these.
    GIT_ALLOW_PROTOCOL: o.allowFileUrls ? 'https:ssh:file' : 'https:ssh',
    // Our own constant, never the job's: no password prompt can hang packaging.
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
  });
  const explain = (what: string, err: unknown) => new PackagingError(`git ${what} failed for ${url}: ${firstLine(err)}`, { cause: err });
  await git.init().catch((e) => Promise.reject(explain('init', e)));
  await git.addRemote('origin', url).catch((e) => Promise.reject(explain('remote add', e)));
  progress?.(`git: fetching ${commit} from ${url}`);
  try {
    await git.raw(['fetch', '--quiet', '--no-tags', '--depth', '1', 'origin', commit]);
  } catch (shallowErr) {
    progress?.(`git: the server refused a fetch of one commit (${firstLine(shallowErr)}); fetching everything`);
    try {
      await git.raw(['fetch', '--quiet', '--no-tags', 'origin', '+refs/*:refs/remotes/origin/*']);
    } catch (err) {
      throw explain('fetch', err);
    }
  }
  try {
    await git.raw(['cat-file', '-e', `${commit}^{commit}`]);
  } catch {
    throw new PackagingError(`commit ${commit} is not in ${url}`);
  }
  await git.raw(['-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--detach', commit]).catch((e) => Promise.reject(explain('checkout', e)));
  const head = (await git.revparse(['HEAD'])).trim();
  if (head !== commit) throw new PackagingError(`after checkout HEAD is ${head}, not ${commit}`);
  await rm(join(dest, '.git'), { recursive: true, force: true });
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n').map((l) => l.trim()).find((l) => l.length > 0)?.slice(0, 300) ?? 'unknown error';
}
