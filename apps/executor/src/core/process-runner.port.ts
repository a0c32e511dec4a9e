import type { JobSpec, ResourceUsage, SandboxKind } from '../../../../libs/contracts/src';

/**
 * The sandbox seam: one implementation per platform (no cgroup, cgroup v1, cgroup v2,
 * ssh...), each in its own file behind this interface. Runtime-neutral: no Node or Deno
 * types appear here, so the executor core stays portable.
 */
export interface ProcessRunner {
  readonly kind: SandboxKind;
  /** Why the sandbox is weaker than asked, e.g. "no cgroup delegation: running without limits". Goes into the started report. */
  readonly note?: string;
  /** Creates the attempt's workspace and starts its process. Rejects with a {@link LaunchError} when the program cannot run at all. */
  launch(req: LaunchRequest): Promise<RunningProcess>;
  /** Kills what a previous crashed instance left running and removes its stale workspaces. */
  cleanupLeftovers?(): Promise<void>;
  /** The state of what the runner reaches (an SSH host), sent in heartbeats and shown by GET /v1/executors. */
  hostState?(): { state: string; note?: string };
}

export interface LaunchRequest {
  /** Unique per attempt on this host; names the workspace and marks every process of the attempt. */
  attemptId: string;
  /** argv[0] is looked up in env.PATH. */
  argv: string[];
  /**
   * The complete environment. The runner adds HOME=<workspace> unless it is set here, and
   * always sets JOBLINE_ATTEMPT=<attemptId> (the marker that identifies the attempt's processes).
   */
  env: Record<string, string>;
  /** Working directory relative to the workspace the runner creates (created if missing); default the workspace itself. */
  cwd?: string;
  resources?: JobSpec['resources'];
  /** A verified bundle (tar.gz) on this host, unpacked into the workspace before the process starts. */
  bundleFile?: string;
}

export interface RunningProcess {
  readonly pid: number;
  /** Ends once the process has exited and its pipes are drained (or given up on). */
  readonly stdout: AsyncIterable<Uint8Array>;
  readonly stderr: AsyncIterable<Uint8Array>;
  /**
   * Resolves once the attempt's main process has exited and nothing of the attempt is left
   * running; never hangs on a background child that keeps the pipes open.
   */
  wait(): Promise<ExitStatus>;
  /** Sends a signal (e.g. 'SIGTERM') to every process of the attempt. */
  signal(sig: string): void;
  /** SIGTERM to the whole tree, up to graceMs for it to exit, then SIGKILL to everything left. Idempotent. */
  shutdown(graceMs: number): Promise<void>;
  /** A live sample, null when the runner cannot measure. */
  stats(): Promise<ResourceUsage | null>;
  /** Releases the workspace and the runner's bookkeeping; called once, after wait(). */
  dispose(): Promise<void>;
}

export interface ExitStatus {
  /** 128 + signal number when the process was killed by a signal. */
  exitCode: number;
  signal: string | null;
  oomKilled: boolean;
  usage: ResourceUsage | null;
}

/** The program could not be started (not found, not executable, bad workdir...). */
export class LaunchError extends Error {
  constructor(
    message: string,
    /** The exit code a shell would give: 127 not found, 126 not executable. */
    readonly exitCode = 127,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LaunchError';
  }
}
