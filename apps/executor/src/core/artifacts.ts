/**
 * `outputs` globs and the seam through which an attempt's outputs are collected after its
 * run. Runtime-neutral: the collection itself (files, tar) lives in each runtime's folder.
 */

/** What the collector is asked to gather once the attempt's processes are gone. */
export interface ArtifactRequest {
  jobId: string;
  attempt: number;
  /** The runner's attemptId (it names the workspace). */
  attemptId: string;
  /** The spec's `outputs`, already checked with {@link outputGlobProblem}. */
  outputs: string[];
}

export interface ArtifactResult {
  /** Paths stored, relative to the workspace, in archive order. */
  files: string[];
  bytes: number;
  /** Things a user should know (skipped links, the size cap...): written to the job's stderr log. */
  notes: string[];
}

/** Collects and stores an attempt's outputs (one implementation per runtime). */
export interface ArtifactCollector {
  collect(req: ArtifactRequest): Promise<ArtifactResult>;
}

/** Why an `outputs` glob is refused, or null: it must be relative and stay inside the workspace. */
export function outputGlobProblem(glob: string): string | null {
  if (glob.length === 0) return 'an outputs glob is empty';
  if (glob.includes('\0')) return `outputs glob ${JSON.stringify(glob)} contains NUL`;
  if (glob.startsWith('/')) return `outputs glob ${JSON.stringify(glob)} is absolute; name paths relative to the workspace`;
  if (glob.includes('\\')) return `outputs glob ${JSON.stringify(glob)} contains a backslash`;
  if (glob.split('/').some((s) => s === '..')) return `outputs glob ${JSON.stringify(glob)} contains '..'`;
  return null;
}

/**
 * A glob as a regular expression over '/'-separated relative paths: `*` any run of
 * characters but '/', `?` one character but '/', a whole `**` segment zero or more
 * segments; everything else literal. Leading './' and repeated '/' are ignored; a name
 * starting with '.' is matched like any other.
 */
export function globToRegExp(glob: string): RegExp {
  const problem = outputGlobProblem(glob);
  if (problem) throw new Error(problem);
  const segments = glob.split('/').filter((s) => s !== '' && s !== '.');
  let re = '';
  segments.forEach((seg, i) => {
    const last = i === segments.length - 1;
    if (seg === '**') {
      re += last ? '.*' : '(?:[^/]+/)*';
      return;
    }
    for (const ch of seg) re += ch === '*' ? '[^/]*' : ch === '?' ? '[^/]' : ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    if (!last) re += '/';
  });
  return new RegExp(`^${re}$`);
}

/** A matcher for several globs: true when any matches the relative path. */
export function outputsMatcher(globs: string[]): (path: string) => boolean {
  const res = globs.map(globToRegExp);
  return (path) => res.some((r) => r.test(path));
}
