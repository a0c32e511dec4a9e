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
  /**
   * A staged job's step whose own outputs these are (stored as `<jobId>/<attempt>/<step>`),
   * collected while the attempt's processes are stopped (SIGSTOP) and its script waits at its gate.
   */
  step?: number;
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
  /**
   * Staged pipelines: the folder, at the path the attempt's processes see, where its steps script
   * waits for gate files (README "Staged pipelines"); without it, per-step outputs are not collected.
   */
  gateFolder?(attemptId: string): string;
  /** Creates the gate file `name` in the attempt's gate folder: its script goes on. */
  openGate?(attemptId: string, name: string): Promise<void>;
}

/** Why an `outputs` glob is refused, or null: it must be relative and stay inside the workspace. */
export function outputGlobProblem(glob: string): string | null {
  if (glob.length === 0) return 'an outputs glob is empty';
  if (glob.includes('\0')) return `outputs glob ${JSON.stringify(glob)} contains NUL`;
  if (glob.startsWith('/')) return `outputs glob ${JSON.stringify(glob)} is absolute; name paths relative to the workspace`;
  if (glob.includes('\\')) return `outputs glob ${JSON.stringify(glob)} contains a backslash`;
  // '..' as a segment, or as one alternative of a brace ({..,x}/secret would expand to ../secret).
  if (/(^|[/{,])\.\.($|[/},])/.test(glob)) return `outputs glob ${JSON.stringify(glob)} contains '..'`;
  // A leading '!' would mean "everything but", the opposite of naming files to keep.
  if (glob.startsWith('!')) return `outputs glob ${JSON.stringify(glob)} starts with '!': negation is not supported; name the files to keep`;
  return null;
}
