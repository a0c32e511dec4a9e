import { spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { rm, rmdir } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join, resolve, sep } from 'node:path';
import type { ResourceUsage } from '../../../../libs/contracts/src';
import {
  LaunchError,
  type ExitStatus,
  type LaunchRequest,
  type ProcessRunner,
  type RunningProcess,
} from '../core/process-runner.port';
import { hasEnvEntry, killQuietly, listProcesses, readStat, sampleUsage } from './proc-scan';
import { unpackBundle } from './bundle-files';
import { AttemptOutput } from './attempt-output';
import { LauncherError, type LaunchedProcess, type LauncherHandle } from './launcher/launcher-client';
import { resolveProgram } from './program-path';
import { DEFAULT_PATH } from '../core/command';
import { ATTEMPT_ID, ATTEMPT_MARKER, RUNNING_FILE, decodeRunningRecords, encodeRunningRecords, isAttemptEntry, type RunningRecord } from '../core/running-record';

export { ATTEMPT_MARKER };

export interface NodeProcessRunnerOptions {
  /** Holds one workspace per attempt plus running.json (created if missing). One per executor. */
  workRoot: string;
  /**
   * After the main process exited, how long its pipes may stay open and silent before they
   * are cut (default 200 ms): a process that escaped the group must not keep the attempt alive.
   */
  drainMs?: number;
  /** Why there is no sandbox, for the started report (default: a generic "no sandbox" note). */
  note?: string;
  /**
   * Starts the attempts (default: none, child_process.spawn). Through the launcher a job's
   * processes die with the executor: it is the executor's child with a parent-death signal
   * and the subreaper of every job, and kills them all when the executor goes.
   */
  launcher?: LauncherHandle;
}

/** What a runner without cgroups cannot enforce: an attempt asking for any of it is refused, never run without it. */
export function limitsWithoutSandbox(resources: LaunchRequest['resources']): string[] {
  const r = resources ?? {};
  const asked = (['cpu', 'memoryMb', 'pids', 'ioReadBps', 'ioWriteBps'] as const).filter((k) => r[k] !== undefined).map((k) => `resources.${k}`);
  if (r.network === false) asked.push('resources.network: false');
  return asked;
}


/**
 * Runs attempts as plain child processes, each in its own process group and workspace:
 * no limits, no namespaces (kind 'none'); an attempt asking for limits is refused. Stop and
 * clean-up act on the process group and on the JOBLINE_ATTEMPT marker of its processes.
 * Through the launcher, nothing of a job outlives a killed executor (the launcher is every
 * job's subreaper and kills them all when the executor dies).
 *
 * Usage: Node cannot report a child's rusage and /proc of an exited process is gone, so
 * exit statuses carry `usage: null`; stats() samples /proc/<pid> of the main process while it runs.
 */
export class NodeProcessRunner implements ProcessRunner {
  readonly kind = 'none' as const;
  readonly note: string;
  private readonly root: string;
  private readonly drainMs: number;
  private readonly records = new Map<string, RunningRecord>();
  private dirty = false;
  private writing: Promise<void> | null = null;
  /** running.json, kept open and rewritten in place; how many bytes it holds. */
  private recordFd: number | null = null;
  private recordBytes = 0;

  constructor(private readonly o: NodeProcessRunnerOptions) {
    this.root = resolve(o.workRoot);
    this.drainMs = o.drainMs ?? 200;
    this.note = o.note ?? 'no sandbox: no cgroup limits or namespaces; the attempt runs in its own process group';
    mkdirSync(this.root, { recursive: true });
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    if (!ATTEMPT_ID.test(req.attemptId)) throw new LaunchError(`invalid attempt id ${JSON.stringify(req.attemptId)}`);
    if (req.argv.length === 0) throw new LaunchError('empty command');
    const refused = limitsWithoutSandbox(req.resources);
    if (refused.length > 0) throw new LaunchError(`this executor has no sandbox and cannot enforce ${refused.join(', ')}: refusing to run the job without the limits it asks for`, 125);
    const workspace = join(this.root, req.attemptId);
    const cwd = resolve(workspace, req.cwd ?? '.');
    if (cwd !== workspace && !cwd.startsWith(workspace + sep)) throw new LaunchError(`workdir ${req.cwd} leaves the workspace`);
    try {
      mkdirSync(cwd, { recursive: true });
    } catch (err) {
      rmSync(workspace, { recursive: true, force: true });
      throw new LaunchError(`cannot create workdir ${req.cwd}: ${(err as Error).message}`, 127, { cause: err });
    }
    if (req.bundleFile) {
      try {
        await unpackBundle(req.bundleFile, workspace);
      } catch (err) {
        rmSync(workspace, { recursive: true, force: true });
        throw err;
      }
    }

    const env = { HOME: workspace, ...req.env, [ATTEMPT_MARKER]: req.attemptId };
    let launched: LaunchedProcess;
    try {
      launched = this.o.launcher ? await this.viaLauncher(this.o.launcher, req.argv, env, cwd) : await spawned(req.argv, env, cwd);
    } catch (err) {
      rmSync(workspace, { recursive: true, force: true });
      if (err instanceof LaunchError) throw err;
      throw new LaunchError(`cannot run ${JSON.stringify(req.argv[0])}: ${(err as Error).message}`, 127, { cause: err });
    }
    const attempt = new NodeAttempt(launched, req.attemptId, this.drainMs, () => this.release(req.attemptId, workspace));
    this.records.set(req.attemptId, { pgid: launched.pid, startedAt: new Date().toISOString() });
    this.persist();
    return attempt;
  }

  /** Closes the launcher (it kills whatever of ours still runs); a later launch starts a new one. */
  async close(): Promise<void> {
    await this.o.launcher?.close();
    await this.persisted();
    if (this.recordFd !== null) closeSync(this.recordFd);
    this.recordFd = null;
  }

  private async viaLauncher(handle: LauncherHandle, argv: string[], env: Record<string, string>, cwd: string): Promise<LaunchedProcess> {
    const program = resolveProgram(argv[0], env.PATH ?? DEFAULT_PATH, cwd);
    try {
      return await (await handle.get()).run({ mode: 'plain', cwd, program, argv, env });
    } catch (err) {
      if (err instanceof LauncherError) throw new LaunchError(`cannot start ${JSON.stringify(argv[0])}: ${err.message}`, 125, { cause: err });
      throw err;
    }
  }
  /**
   * Kills the process groups a crashed predecessor left (recorded in running.json, each
   * member verified by its JOBLINE_ATTEMPT marker, so a reused pid is never hit) and any
   * process still carrying the marker of a leftover workspace; then removes the workspaces.
   */
  async cleanupLeftovers(): Promise<void> {
    const recorded = this.readRecords();
    const ids = new Set(Object.keys(recorded));
    for (const name of readdirSync(this.root)) if (isAttemptEntry(name)) ids.add(name);
    for (const id of this.records.keys()) ids.delete(id);
    if (ids.size > 0) {
      const victims = new Set<number>();
      const groups = new Set<number>();
      for (const p of listProcesses()) {
        if (p.pid === process.pid) continue;
        for (const id of ids) {
          if (!hasEnvEntry(p.pid, `${ATTEMPT_MARKER}=${id}`)) continue;
          victims.add(p.pid);
          if (recorded[id]?.pgid === p.pgid) groups.add(p.pgid);
        }
      }
      for (const g of groups) killQuietly(-g, 'SIGKILL');
      for (const pid of victims) killQuietly(pid, 'SIGKILL');
      await until(() => [...victims].every((pid) => !processAlive(pid)), 2000);
      for (const id of ids) rmSync(join(this.root, id), { recursive: true, force: true });
    }
    this.persist();
    await this.persisted();
  }

  private release(attemptId: string, workspace: string): Promise<void> {
    this.records.delete(attemptId);
    this.persist();
    return removeWorkspace(workspace);
  }

  private readRecords(): Record<string, RunningRecord> {
    let text: string | null = null;
    try {
      text = readFileSync(join(this.root, RUNNING_FILE), 'utf8');
    } catch {
      // None yet.
    }
    return decodeRunningRecords(text);
  }

  /**
   * Writes running.json once per tick, coalescing the changes of the tick (two synchronous
   * file replacements per attempt were a tenth of the executor's CPU time; the asynchronous
   * replacement after them, open, write, close and rename, four rounds of the thread pool).
   * Now one write at offset 0 of the file kept open: the new text, padded with spaces (JSON
   * allows them) to the old length. Only a successor after an executor's crash reads it: the
   * kernel has then done every write the executor made (a machine crash leaves no process to
   * clean up), and a write cut short by SIGKILL, like a lost last change, leaves a file that
   * does not parse or misses an attempt, which is safe: cleanupLeftovers also finds an
   * attempt by its workspace folder and the JOBLINE_ATTEMPT marker of its processes.
   */
  private persist(): void {
    this.dirty = true;
    this.writing ??= Promise.resolve()
      .then(() => this.flush())
      .finally(() => (this.writing = null));
  }

  private flush(): void {
    while (this.dirty) {
      this.dirty = false;
      try {
        const text = encodeRunningRecords(this.records);
        if (this.recordFd === null) {
          this.recordFd = openSync(join(this.root, RUNNING_FILE), fsConstants.O_WRONLY | fsConstants.O_CREAT);
          // A predecessor's longer text is padded over, never left as a tail.
          this.recordBytes = fstatSync(this.recordFd).size;
        }
        const bytes = Buffer.from(text.length < this.recordBytes ? text.padEnd(this.recordBytes, ' ') : text, 'utf8');
        for (let at = 0; at < bytes.length; ) at += writeSync(this.recordFd, bytes, at, bytes.length - at, at);
        this.recordBytes = bytes.length;
        // Shrunk a lot (the attempts ended): cut the padding, after the text is in place.
        if (bytes.length > 4096 && text.length * 4 < bytes.length) {
          ftruncateSync(this.recordFd, Buffer.byteLength(text));
          this.recordBytes = Buffer.byteLength(text);
        }
      } catch {
        // The folder is being removed (shutdown, tests): nothing left to record.
      }
    }
  }

  /** Resolves once running.json holds every change made so far. */
  async persisted(): Promise<void> {
    while (this.writing) await this.writing;
  }
}

class NodeAttempt implements RunningProcess {
  readonly pid: number;
  readonly stdout: AsyncIterable<Uint8Array>;
  readonly stderr: AsyncIterable<Uint8Array>;
  private readonly output: AttemptOutput;
  private readonly status: Promise<ExitStatus>;
  private stopping: Promise<void> | undefined;
  private exited = false;
  private disposed: Promise<void> | undefined;

  constructor(
    launched: LaunchedProcess,
    private readonly attemptId: string,
    drainMs: number,
    private readonly releaseFn: () => Promise<void>,
  ) {
    this.pid = launched.pid;
    this.output = new AttemptOutput(launched, drainMs);
    this.stdout = this.output.stdout;
    this.stderr = this.output.stderr;
    this.status = launched.exited.then((e) => this.settle(e.code, e.signal));
  }

  wait(): Promise<ExitStatus> {
    return this.status;
  }

  signal(sig: string): void {
    killQuietly(-this.pid, sig as NodeJS.Signals);
  }

  shutdown(graceMs: number): Promise<void> {
    this.stopping ??= this.terminate(graceMs);
    return this.stopping;
  }

  async stats(): Promise<ResourceUsage | null> {
    return this.exited ? null : sampleUsage(this.pid);
  }

  dispose(): Promise<void> {
    this.disposed ??= this.releaseFn();
    return this.disposed;
  }

  private async terminate(graceMs: number): Promise<void> {
    killQuietly(-this.pid, 'SIGTERM');
    await until(() => !groupAlive(this.pid), graceMs);
    killQuietly(-this.pid, 'SIGKILL');
    // Processes that left the group (setsid) still carry the marker in their environment.
    const marker = `${ATTEMPT_MARKER}=${this.attemptId}`;
    for (const p of listProcesses()) {
      if (p.pid !== process.pid && p.pgid !== this.pid && hasEnvEntry(p.pid, marker)) killQuietly(p.pid, 'SIGKILL');
    }
    await until(() => !groupAlive(this.pid), 2000);
  }

  private async settle(code: number | null, signal: NodeJS.Signals | null): Promise<ExitStatus> {
    this.exited = true;
    // The attempt is over once its main process is: what it left behind in its group goes too
    // (during a shutdown, the grace period decides instead).
    if (this.stopping) await this.stopping;
    else killQuietly(-this.pid, 'SIGKILL');
    this.output.cutWhenQuiet();
    const signo = signal ? (osConstants.signals[signal] ?? 0) : 0;
    return { exitCode: signal ? 128 + signo : (code ?? 0), signal, oomKilled: false, usage: null };
  }
}

/**
 * Does any process of the group still run? Zombies do not count: orphans are reaped by
 * init, which on some hosts takes seconds, and a zombie holds nothing but its pid.
 */
function groupAlive(pgid: number): boolean {
  if (!exists(-pgid)) return false;
  return listProcesses().some((p) => p.pgid === pgid && p.state !== 'Z');
}

function processAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== null && stat.state !== 'Z';
}

/** kill(target, 0): the cheap first test (zombies included). */
function exists(target: number): boolean {
  try {
    process.kill(target, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes an attempt's workspace. Most leave it empty: one rmdir. Anything else (files left,
 * or not a folder any more) goes through rm's recursive removal, which never follows a link;
 * rm alone is two lstats and its recursive machinery before the same rmdir, a fifth of the
 * executor's file work per tiny attempt.
 */
export async function removeWorkspace(workspace: string): Promise<void> {
  try {
    await rmdir(workspace);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    await rm(workspace, { recursive: true, force: true });
  }
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** Without a launcher: a child of the executor in its own session and process group. */
async function spawned(argv: string[], env: Record<string, string>, cwd: string): Promise<LaunchedProcess> {
  const child = spawn(argv[0], argv.slice(1), { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  // Listeners go on before the first await so an instant exit is not missed.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  try {
    await new Promise<void>((ok, fail) => {
      child.once('spawn', ok);
      child.once('error', fail);
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'program not found' : e.code === 'EACCES' ? 'permission denied' : e.message;
    throw new LaunchError(`cannot run ${JSON.stringify(argv[0])}: ${why}`, 127, { cause: err });
  }
  // A later 'error' (none is expected after 'spawn') must not crash the executor.
  child.on('error', () => undefined);
  return { pid: child.pid!, stdout: child.stdout, stderr: child.stderr, exited };
}
