import { lstat, readdir, realpath, stat, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { tarGzDeterministic } from '../../../../libs/messaging/src/deterministic-tar';
import picomatch from 'picomatch/posix';
import { outputGlobProblem, type ArtifactCollector, type ArtifactResult } from '../core/artifacts';

/**
 * The matcher of several `outputs` globs (picomatch, over '/'-separated paths relative to the
 * workspace): true when any matches. `*` and `?` stay within a folder, a `**` segment spans
 * any number of folders, `{a,b}` braces, `[abc]`/`[a-z]`/`[[:digit:]]` classes and extglobs
 * `@(a|b)` work; names starting with '.' are matched like any other (`dot`); a leading './'
 * and repeated '/' are ignored. Throws on a glob outputGlobProblem refuses.
 */
export function outputsMatcher(globs: string[]): (path: string) => boolean {
  const matchers = globs.map((glob) => {
    const problem = outputGlobProblem(glob);
    if (problem) throw new Error(problem);
    const normalized = glob.split('/').filter((s) => s !== '' && s !== '.').join('/');
    if (normalized === '') throw new Error(`outputs glob ${JSON.stringify(glob)} names no file`);
    return picomatch(normalized, { dot: true });
  });
  return (path) => matchers.some((m) => m(path));
}

/** Where collected artifacts are stored (the JetStream object store: ArtifactStore). */
export interface ArtifactSink {
  /** `step`: a staged job's step's own outputs. */
  put(jobId: string, attempt: number, bytes: Uint8Array, step?: number): Promise<void>;
}

export interface WorkspaceArtifactOptions {
  /** The runner's root: each attempt's workspace is <root>/<attemptId>. */
  root: string;
  sink: ArtifactSink;
  /** Largest total size of an attempt's outputs, in bytes (default 256 MiB); above it nothing is stored and the log says why. */
  maxBytes?: number;
  /** Most files per attempt (default 10,000). */
  maxFiles?: number;
}

export const ARTIFACT_DEFAULTS = { maxBytes: 256 * 1024 ** 2, maxFiles: 10_000 } as const;

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/**
 * Collects the files of a finished attempt's workspace that match its `outputs` globs into a
 * deterministic tar.gz (sorted, fixed mtimes, uid/gid 0, 0644/0755), stored as `<jobId>/<attempt>`.
 * Only regular files are stored; a symlink is stored as the file it points to when that file is
 * inside the workspace, and skipped otherwise. Folders are walked without following links.
 */
export function workspaceArtifactCollector(options: WorkspaceArtifactOptions): ArtifactCollector {
  const maxBytes = options.maxBytes ?? ARTIFACT_DEFAULTS.maxBytes;
  const maxFiles = options.maxFiles ?? ARTIFACT_DEFAULTS.maxFiles;
  return {
    async collect(req): Promise<ArtifactResult> {
      const workspace = join(options.root, req.attemptId);
      const notes: string[] = [];
      const root = await realpath(workspace).catch(() => null);
      if (!root) return { files: [], bytes: 0, notes: [`outputs not collected: the workspace is gone`] };
      const matches = outputsMatcher(req.outputs);
      const files: string[] = [];
      let bytes = 0;
      let over: string | null = null;
      const visit = async (rel: string): Promise<void> => {
        const names = (await readdir(rel ? join(root, rel) : root)).sort(byteOrder);
        for (const name of names) {
          if (over) return;
          const p = rel ? `${rel}/${name}` : name;
          const abs = join(root, p);
          const st = await lstat(abs);
          if (st.isDirectory()) {
            await visit(p);
            continue;
          }
          if (!matches(p)) continue;
          let size = st.size;
          if (st.isSymbolicLink()) {
            const target = await realpath(abs).catch(() => null);
            if (!target || !target.startsWith(root + sep)) {
              notes.push(`output ${p} skipped: a symlink that leaves the workspace (or points nowhere)`);
              continue;
            }
            const t = await stat(target);
            if (!t.isFile()) {
              notes.push(`output ${p} skipped: a symlink to something that is not a regular file`);
              continue;
            }
            size = t.size;
          } else if (!st.isFile()) {
            notes.push(`output ${p} skipped: not a regular file`);
            continue;
          }
          bytes += size;
          files.push(p);
          if (bytes > maxBytes) over = `outputs not stored: they exceed the ${maxBytes}-byte artifacts limit`;
          else if (files.length > maxFiles) over = `outputs not stored: more than ${maxFiles} files`;
        }
      };
      await visit('');
      if (over) return { files: [], bytes: 0, notes: [...notes, over] };
      if (files.length === 0) return { files, bytes, notes: [...notes, `no file matched outputs ${JSON.stringify(req.outputs)}`] };
      files.sort(byteOrder);
      // The attempt's processes are gone (or, for a step's outputs, stopped), so nothing can swap a checked path for a link before tar reads it.
      const tgz = await tarGzDeterministic(root, files, { follow: true, normalizeFileModes: true });
      await options.sink.put(req.jobId, req.attempt, tgz, req.step);
      return { files, bytes, notes };
    },
    // The job reaches its workspace at the same absolute path, sandboxed or not.
    gateFolder: (attemptId) => join(options.root, attemptId),
    async openGate(attemptId, name) {
      if (!/^\.jobline-step-[0-9a-f]{32}\.[0-9]{1,4}$/.test(name)) throw new Error(`not a gate file name: ${JSON.stringify(name)}`);
      // wx: never through a link the job put there.
      await writeFile(join(options.root, attemptId, name), '', { flag: 'wx', mode: 0o644 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    },
  };
}
