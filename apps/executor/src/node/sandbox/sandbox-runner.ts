import { chmodSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { chown, mkdir, rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import type { ResourceUsage } from '../../../../../libs/contracts/src';
import { DEFAULT_PATH } from '../../core/command';
import {
  LaunchError,
  type ExitStatus,
  type LaunchRequest,
  type ProcessRunner,
  type RunningProcess,
} from '../../core/process-runner.port';
import { ATTEMPT_MARKER } from '../node-process-runner';
import { hasEnvEntry, killQuietly, listProcesses } from '../proc-scan';
import { ATTEMPT_CGROUP_NAME, sleep, type AttemptCgroup, type CgroupDriver } from './cgroup-driver';
import { unpackBundle } from '../bundle-files';
import { AttemptOutput } from '../attempt-output';
import { resolveProgram } from '../program-path';
import { LauncherError, type LauncherHandle, type LaunchedProcess } from '../launcher/launcher-client';

export interface SandboxRunnerOptions {
  /** Holds one workspace per attempt (created if missing). One per executor. */
  workRoot: string;
  driver: CgroupDriver;
  /** The jobline-launcher that creates the namespaces and starts the jobs. */
  launcher: LauncherHandle;
  /** The unprivileged uid and gid jobs run as (default 10001). Never 0. */
  uid?: number;
  gid?: number;
  /** After the main process exited, how long a silent pipe may stay open before it is cut (default 200 ms). */
  drainMs?: number;
  /** Extra notes for the started report (the driver's own are added). */
  notes?: readonly string[];
}

export const SANDBOX_DEFAULTS = { uid: 10001, gid: 10001, drainMs: 200 } as const;

/** Signal number → its first (canonical) name: SIGABRT rather than SIGIOT. */
const signalNames = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.signals)) if (!signalNames.has(n)) signalNames.set(n, name);

/**
 * Runs each attempt in its own cgroup (v1 or v2, from the driver) and pid, mount, ipc,
 * uts and (unless resources.network) network namespaces, as an unprivileged user in its
 * own workspace, through the jobline-launcher (launcher/jobline-launcher.c does the
 * namespaces, mounts and privilege drop). Everything about an attempt's processes is asked
 * of its cgroup, which a job cannot leave: signals, the final kill, cpu time, peak memory
 * and OOM kills.
 *
 * Inside the job's mount namespace the work root — or, when the job user could not traverse
 * the way to it (a 0700 data folder), the highest folder on that way it cannot traverse —
 * is covered by an empty tmpfs holding only the path to this attempt's workspace, bound
 * back at its own path: the job reaches its workspace under the same absolute path, and
 * sees neither other attempts' workspaces nor what else that folder holds.
 */
export class SandboxRunner implements ProcessRunner {
  readonly kind: 'cgroup-v1' | 'cgroup-v2';
  readonly note?: string;
  private readonly root: string;
  private readonly uid: number;
  private readonly gid: number;
  private readonly drainMs: number;
  private readonly mask: string;
  private readonly active = new Set<string>();

  constructor(private readonly o: SandboxRunnerOptions) {
    this.kind = o.driver.kind;
    this.root = resolve(o.workRoot);
    this.uid = o.uid ?? SANDBOX_DEFAULTS.uid;
    this.gid = o.gid ?? SANDBOX_DEFAULTS.gid;
    if (this.uid === 0 || this.gid === 0) throw new Error('the sandbox never runs jobs as uid or gid 0');
    this.drainMs = o.drainMs ?? SANDBOX_DEFAULTS.drainMs;
    const notes = [...o.driver.notes, ...(o.notes ?? [])];
    if (notes.length > 0) this.note = notes.join('; ');
    mkdirSync(this.root, { recursive: true });
    // Workspaces are the job user's; the root only needs to be traversable, not listable.
    chmodSync(this.root, 0o711);
    this.mask = maskFor(this.root, this.uid, this.gid);
  }

  /** What the job's mount namespace covers with a tmpfs (see the class comment). */
  get maskedPath(): string {
    return this.mask;
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    if (!ATTEMPT_CGROUP_NAME.test(req.attemptId)) throw new LaunchError(`invalid attempt id ${JSON.stringify(req.attemptId)}`);
    if (req.argv.length === 0) throw new LaunchError('empty command');
    if (this.active.has(req.attemptId)) throw new LaunchError(`attempt ${req.attemptId} is already running`);
    const refused = this.o.driver.unenforceable(req.resources);
    if (refused.length > 0) throw new LaunchError(`this executor cannot enforce ${refused.join(', ')}: refusing to run the job without the limits it asks for`, 125);
    const workspace = join(this.root, req.attemptId);
    const cwd = resolve(workspace, req.cwd ?? '.');
    if (cwd !== workspace && !cwd.startsWith(workspace + sep)) throw new LaunchError(`workdir ${req.cwd} leaves the workspace`);
    const env: Record<string, string> = { HOME: workspace, ...req.env, [ATTEMPT_MARKER]: req.attemptId };
    let program: string;
    try {
      await this.makeWorkspace(workspace, cwd, req.cwd);
      if (req.bundleFile) await unpackBundle(req.bundleFile, workspace, { uid: this.uid, gid: this.gid });
      program = resolveProgram(req.argv[0], env.PATH ?? DEFAULT_PATH, cwd);
    } catch (err) {
      rmSync(workspace, { recursive: true, force: true });
      throw err;
    }
    // The attempt's init makes the cgroup and writes its limits before it joins them (in parallel
    // with other starts, off the launcher's loop): a tenth of what the same steps cost from here
    // (a thread-pool round trip and a promise for each file).
    const plan = this.o.driver.plan(req.attemptId, req.resources);
    const cgroup: AttemptCgroup = plan.cgroup;

    let launched: LaunchedProcess;
    try {
      const launcher = await this.o.launcher.get();
      launched = await launcher.run({
        mode: 'sandbox',
        uid: this.uid,
        gid: this.gid,
        isolateNetwork: req.resources?.network !== true,
        mask: this.mask,
        workspace,
        cwd,
        program,
        cgroupDirs: plan.dirs,
        cgroupWrites: plan.writes,
        procsFiles: cgroup.procsFiles,
        argv: req.argv,
        env,
      });
    } catch (err) {
      await cgroup.remove().catch(() => undefined);
      rmSync(workspace, { recursive: true, force: true });
      const why = err instanceof LauncherError ? err.message : (err as Error).message;
      throw new LaunchError(`cannot start the sandbox: ${why}`, 125, { cause: err });
    }
    this.active.add(req.attemptId);
    return new SandboxAttempt(launched, cgroup, this.drainMs, () => this.release(req.attemptId, workspace, cgroup, plan.dirs));
  }

  /**
   * After a crash: kills everything in the attempt cgroups a predecessor left under this
   * executor's parent (a job cannot leave its cgroup, so nothing escapes), removes them,
   * kills processes still carrying the marker of a leftover workspace (from an unsandboxed
   * run), and removes the workspaces.
   */
  async cleanupLeftovers(): Promise<void> {
    const ids = new Set<string>();
    for (const name of this.o.driver.list()) if (!this.active.has(name)) ids.add(name);
    for (const name of readdirSync(this.root)) if (ATTEMPT_CGROUP_NAME.test(name) && !this.active.has(name)) ids.add(name);
    if (ids.size === 0) return;
    const listed = new Set(this.o.driver.list());
    for (const id of ids) {
      if (!listed.has(id)) continue;
      const cg = this.o.driver.open(id);
      await cg.killAll();
      await cg.remove();
    }
    const markers = [...ids].map((id) => `${ATTEMPT_MARKER}=${id}`);
    for (const p of listProcesses()) {
      if (p.pid !== process.pid && markers.some((m) => hasEnvEntry(p.pid, m))) killQuietly(p.pid, 'SIGKILL');
    }
    for (const id of ids) rmSync(join(this.root, id), { recursive: true, force: true });
  }

  /** The launcher this runner starts its attempts through (the benchmark reads its CPU time). */
  get launcher(): LauncherHandle {
    return this.o.launcher;
  }

  /** Closes the launcher (it kills whatever of ours still runs); a later launch starts a new one. */
  async close(): Promise<void> {
    await this.o.launcher.close();
  }

  /** Removes this executor's parent cgroups (when retiring an executor id; fails while attempts exist). */
  removeParent(): Promise<void> {
    return this.o.driver.removeParent();
  }

  /** The attempts this runner has running (their cgroup names). */
  get running(): string[] {
    return [...this.active];
  }

  private async makeWorkspace(workspace: string, cwd: string, requested: string | undefined): Promise<void> {
    try {
      await mkdir(workspace, { mode: 0o700 });
      await chown(workspace, this.uid, this.gid);
      let dir = workspace;
      for (const part of relative(workspace, cwd).split(sep).filter(Boolean)) {
        dir = join(dir, part);
        await mkdir(dir);
        await chown(dir, this.uid, this.gid);
      }
    } catch (err) {
      await rm(workspace, { recursive: true, force: true });
      throw new LaunchError(`cannot create workdir ${requested ?? '.'}: ${(err as Error).message}`, 127, { cause: err });
    }
  }

  private async release(attemptId: string, workspace: string, cgroup: AttemptCgroup, dirs: readonly string[]): Promise<void> {
    // The launcher's remover removes the (by now empty) cgroup directories, and the workspace when
    // the job left it empty (rmdir removes nothing else); whatever it could not (a cgroup still busy, a
    // workspace with files, no launcher), the driver and a recursive rm here remove.
    let why: string | null = 'not tried';
    try {
      why = await this.o.launcher
        .get()
        .then((l) => l.removeDirs([...dirs, workspace]))
        .catch((err: Error) => err.message);
      if (why !== null) await cgroup.remove();
    } finally {
      this.active.delete(attemptId);
      if (why !== null) await rm(workspace, { recursive: true, force: true });
    }
  }
}

class SandboxAttempt implements RunningProcess {
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
    private readonly cgroup: AttemptCgroup,
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
    // The init (pid 1 of the namespace) has no handlers: only the job's processes act on it.
    this.cgroup.signal(sig as NodeJS.Signals);
  }

  shutdown(graceMs: number): Promise<void> {
    this.stopping ??= this.terminate(graceMs);
    return this.stopping;
  }

  async stats(): Promise<ResourceUsage | null> {
    return this.exited ? null : this.cgroup.usage();
  }

  dispose(): Promise<void> {
    this.disposed ??= this.releaseFn();
    return this.disposed;
  }

  private async terminate(graceMs: number): Promise<void> {
    this.cgroup.signal('SIGTERM');
    await this.until(() => this.cgroup.pids().length === 0, graceMs);
    if (this.cgroup.pids().length === 0) return;
    await this.cgroup.killAll();
  }

  private async until(cond: () => boolean, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (!cond() && performance.now() < deadline) await sleep(Math.min(20, Math.max(1, deadline - performance.now())));
  }

  private async settle(code: number | null, signal: NodeJS.Signals | null): Promise<ExitStatus> {
    this.exited = true;
    // The init's exit ended the pid namespace, so the kernel has killed the rest; the cgroup
    // is asked anyway (during a shutdown, the grace period decides instead).
    if (this.stopping) await this.stopping.catch(() => undefined);
    await this.cgroup.killAll().catch(() => undefined);
    this.output.cutWhenQuiet();
    const decoded = decodeExit(code, signal);
    return {
      ...decoded,
      oomKilled: this.cgroup.oomKilled(decoded.signal === 'SIGKILL'),
      usage: this.cgroup.usage(),
    };
  }
}

/**
 * The highest folder on the way from / to the work root that uid/gid cannot traverse, or
 * the work root itself when the whole way is open: what the job's mount namespace covers
 * with a tmpfs. Never / (that would hide the whole system).
 */
export function maskFor(root: string, uid: number, gid: number): string {
  let highest: string | null = null;
  for (let dir = dirname(root); ; dir = dirname(dir)) {
    if (!traversable(dir, uid, gid)) highest = dir;
    if (dir === dirname(dir)) break;
  }
  if (highest === '/') throw new Error(`uid ${uid} cannot traverse / itself: no sandbox is possible`);
  return highest ?? root;
}

function traversable(dir: string, uid: number, gid: number): boolean {
  const st = statSync(dir);
  const bits = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
  return (st.mode & bits) !== 0;
}

/**
 * The init reports the job's fate as a shell does: 128 + n when a signal killed it (pid 1
 * of a namespace cannot die of its own signal to pass it on). So 128 + n is read as signal
 * n; a job that exits with such a code on purpose is reported as signalled, exactly as a
 * shell or a container runtime would show it. A signal that killed the init itself (the
 * final SIGKILL) comes through the launcher as a real signal.
 */
export function decodeExit(code: number | null, signal: NodeJS.Signals | null): { exitCode: number; signal: string | null } {
  if (signal) return { exitCode: 128 + (osConstants.signals[signal] ?? 0), signal };
  const c = code ?? 0;
  if (c > 128 && c < 128 + 65) {
    const name = signalNames.get(c - 128);
    if (name) return { exitCode: c, signal: name };
  }
  return { exitCode: c, signal: null };
}
