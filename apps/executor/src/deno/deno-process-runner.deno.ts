import type { ResourceUsage } from '../../../../libs/contracts/src';
import {
  LaunchError,
  type ExitStatus,
  type LaunchRequest,
  type ProcessRunner,
  type RunningProcess,
} from '../core/process-runner.port';
import { ATTEMPT_ID, ATTEMPT_MARKER, RUNNING_FILE, decodeRunningRecords, encodeRunningRecords, isAttemptEntry, type RunningRecord } from '../core/running-record';
import { groupAlive, listProcesses, processAlive, sendSignal, withEnvEntry } from './proc-scan.deno';

export { ATTEMPT_MARKER };

export interface DenoProcessRunnerOptions {
  /** Holds one workspace per attempt plus running.json (created if missing). One per executor. */
  workRoot: string;
  /**
   * After the main process exited, how long its pipes may stay open and silent before they
   * are cut (default 200 ms): a process that escaped the group must not keep the attempt alive.
   */
  drainMs?: number;
}


/**
 * The Deno twin of the Node runner: attempts run as plain child processes, each in its own
 * session and process group (Deno.Command `detached`, i.e. setsid) and its own workspace;
 * no limits, no namespaces (kind 'none'). Stop and clean-up act on the process group, and
 * then on any process that left it but still carries the attempt's marker.
 * running.json has the Node runner's format, so either runtime cleans up after the other.
 *
 * Usage is not measured (`usage: null`, stats() null): Deno reports no rusage of a child
 * and grants /proc only with --allow-all.
 */
export class DenoProcessRunner implements ProcessRunner {
  readonly kind = 'none' as const;
  readonly note = 'no sandbox: no cgroup limits or namespaces; the attempt runs in its own process group';
  private readonly root: string;
  private readonly drainMs: number;
  private readonly records = new Map<string, RunningRecord>();

  constructor(options: DenoProcessRunnerOptions) {
    Deno.mkdirSync(options.workRoot, { recursive: true });
    // Absolute and canonical: it becomes HOME of every attempt. realPath needs read access to the root only.
    this.root = Deno.realPathSync(options.workRoot);
    this.drainMs = options.drainMs ?? 200;
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    if (!ATTEMPT_ID.test(req.attemptId)) throw new LaunchError(`invalid attempt id ${JSON.stringify(req.attemptId)}`);
    if (req.argv.length === 0) throw new LaunchError('empty command');
    if (req.bundleFile) throw new LaunchError('bundles are not supported by the Deno executor yet');
    const workspace = `${this.root}/${req.attemptId}`;
    const cwd = resolveInside(workspace, req.cwd);
    if (cwd === null) throw new LaunchError(`workdir ${req.cwd} leaves the workspace`);
    try {
      Deno.mkdirSync(cwd, { recursive: true });
    } catch (err) {
      removeQuietly(workspace);
      throw new LaunchError(`cannot create workdir ${req.cwd}: ${(err as Error).message}`, 127, { cause: err });
    }

    const env = { HOME: workspace, ...req.env, [ATTEMPT_MARKER]: req.attemptId };
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(req.argv[0], {
        args: req.argv.slice(1),
        cwd,
        env,
        clearEnv: true,
        stdin: 'null',
        stdout: 'piped',
        stderr: 'piped',
        // setsid() in the child: its own session and process group, so a signal to -pid reaches the whole tree.
        detached: true,
      }).spawn();
    } catch (err) {
      removeQuietly(workspace);
      throw new LaunchError(`cannot run ${JSON.stringify(req.argv[0])}: ${spawnProblem(err)}`, 127, { cause: err });
    }
    const attempt = new DenoAttempt(child, req.attemptId, this.drainMs, () => this.release(req.attemptId, workspace));
    this.records.set(req.attemptId, { pgid: child.pid, startedAt: new Date().toISOString() });
    this.persist();
    return attempt;
  }

  /**
   * Kills the process groups a crashed predecessor left (recorded in running.json, each
   * member verified by its JOBLINE_ATTEMPT marker, so a reused pid is never hit) and any
   * process still carrying the marker of a leftover workspace; then removes the workspaces.
   */
  async cleanupLeftovers(): Promise<void> {
    const recorded = this.readRecords();
    const ids = new Set(Object.keys(recorded));
    for (const entry of Deno.readDirSync(this.root)) if (isAttemptEntry(entry.name)) ids.add(entry.name);
    for (const id of this.records.keys()) ids.delete(id);
    if (ids.size > 0) {
      const table = (await listProcesses()) ?? [];
      const candidates = table.filter((p) => p.pid !== Deno.pid && p.state !== 'Z');
      const victims = new Set<number>();
      const groups = new Set<number>();
      for (const id of ids) {
        const marked = new Set(await withEnvEntry(candidates.map((p) => p.pid), `${ATTEMPT_MARKER}=${id}`));
        for (const p of candidates) {
          if (!marked.has(p.pid)) continue;
          victims.add(p.pid);
          if (recorded[id]?.pgid === p.pgid) groups.add(p.pgid);
        }
      }
      for (const g of groups) sendSignal(-g, 'SIGKILL');
      for (const pid of victims) sendSignal(pid, 'SIGKILL');
      await until(async () => (await Promise.all([...victims].map(processAlive))).every((alive) => !alive), 2000);
      for (const id of ids) removeQuietly(`${this.root}/${id}`);
    }
    this.persist();
  }

  private async release(attemptId: string, workspace: string): Promise<void> {
    this.records.delete(attemptId);
    this.persist();
    try {
      await Deno.remove(workspace, { recursive: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  private readRecords(): Record<string, RunningRecord> {
    let text: string | null = null;
    try {
      text = Deno.readTextFileSync(`${this.root}/${RUNNING_FILE}`);
    } catch {
      // None yet.
    }
    return decodeRunningRecords(text);
  }

  /** Written on every launch and exit, atomically, so a crash leaves a usable file. */
  private persist(): void {
    const file = `${this.root}/${RUNNING_FILE}`;
    const tmp = `${file}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, encodeRunningRecords(this.records));
    Deno.renameSync(tmp, file);
  }
}

class DenoAttempt implements RunningProcess {
  readonly pid: number;
  readonly stdout: AsyncIterable<Uint8Array>;
  readonly stderr: AsyncIterable<Uint8Array>;
  private readonly pipes: Pipe[];
  private readonly status: Promise<ExitStatus>;
  private stopping: Promise<void> | undefined;
  private disposed: Promise<void> | undefined;

  constructor(
    child: Deno.ChildProcess,
    private readonly attemptId: string,
    private readonly drainMs: number,
    private readonly releaseFn: () => Promise<void>,
  ) {
    this.pid = child.pid;
    const out = new Pipe(child.stdout);
    const err = new Pipe(child.stderr);
    this.pipes = [out, err];
    this.stdout = out.chunks();
    this.stderr = err.chunks();
    this.status = child.status.then((s) => this.settle(s));
  }

  wait(): Promise<ExitStatus> {
    return this.status;
  }

  signal(sig: string): void {
    sendSignal(-this.pid, sig as Deno.Signal);
  }

  shutdown(graceMs: number): Promise<void> {
    this.stopping ??= this.terminate(graceMs);
    return this.stopping;
  }

  async stats(): Promise<ResourceUsage | null> {
    return null;
  }

  dispose(): Promise<void> {
    this.disposed ??= this.releaseFn();
    return this.disposed;
  }

  private async terminate(graceMs: number): Promise<void> {
    sendSignal(-this.pid, 'SIGTERM');
    await until(async () => !(await groupAlive(this.pid)), graceMs);
    sendSignal(-this.pid, 'SIGKILL');
    // Processes that left the group (setsid) still carry the marker in their environment.
    const others = ((await listProcesses()) ?? []).filter((p) => p.pid !== Deno.pid && p.pgid !== this.pid && p.state !== 'Z');
    for (const pid of await withEnvEntry(others.map((p) => p.pid), `${ATTEMPT_MARKER}=${this.attemptId}`)) sendSignal(pid, 'SIGKILL');
    await until(async () => !(await groupAlive(this.pid)), 2000);
  }

  private async settle(s: Deno.CommandStatus): Promise<ExitStatus> {
    // The attempt is over once its main process is: what it left behind in its group goes too
    // (during a shutdown, the grace period decides instead).
    if (this.stopping) await this.stopping;
    else sendSignal(-this.pid, 'SIGKILL');
    for (const p of this.pipes) p.drain(this.drainMs);
    // Deno reports a signalled child as code 128 + signal number, the shell's convention.
    return { exitCode: s.code, signal: s.signal ?? null, oomKilled: false, usage: null };
  }
}

/** One output pipe of an attempt, read chunk by chunk, cut when it stays open and silent after the exit. */
class Pipe {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private ended = false;
  /** When the read now pending started (null: the reader is not waiting on the pipe, e.g. held back by the consumer). */
  private waitingSince: number | null = null;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  async *chunks(): AsyncIterable<Uint8Array> {
    try {
      for (;;) {
        this.waitingSince = performance.now();
        const { value, done } = await this.reader.read();
        this.waitingSince = null;
        if (done) return;
        yield value;
      }
    } catch {
      // A pipe torn down while read: the output ends here.
    } finally {
      this.ended = true;
      this.waitingSince = null;
    }
  }

  /** Cuts the pipe once a read has waited drainMs for data that does not come. */
  drain(drainMs: number): void {
    const check = () => {
      if (this.ended) return;
      const since = this.waitingSince;
      const quietFor = since === null ? 0 : performance.now() - since;
      if (since === null || quietFor < drainMs) {
        setTimeout(check, Math.max(10, drainMs - quietFor));
        return;
      }
      this.reader.cancel().catch(() => undefined);
    };
    setTimeout(check, drainMs);
  }
}

function spawnProblem(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return 'program not found';
  if (err instanceof Deno.errors.PermissionDenied) return 'permission denied';
  if (err instanceof Deno.errors.NotCapable) return `Deno refused: ${(err as Error).message} (the executor needs --allow-run)`;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The absolute path of `rel` inside `base` (an absolute, normalized path), or null when it
 * leads outside. No node:path under Deno: POSIX rules, '.' and '..' folded.
 */
export function resolveInside(base: string, rel: string | undefined): string | null {
  if (rel === undefined || rel === '') return base;
  const parts = rel.startsWith('/') ? [] : base.split('/').filter(Boolean);
  for (const seg of rel.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') parts.pop();
    else parts.push(seg);
  }
  const out = '/' + parts.join('/');
  return out === base || out.startsWith(base + '/') ? out : null;
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch {
    // already gone
  }
}

async function until(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond()) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}
