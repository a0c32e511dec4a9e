import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
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
import { isExecutableFile, readText } from './host';
import { unpackBundle } from '../bundle-files';
import { AttemptOutput } from '../attempt-output';

/** Absolute paths of the host programs the sandbox is built from (util-linux, iproute2, coreutils). */
export interface SandboxTools {
  sh: string;
  unshare: string;
  setpriv: string;
  mount: string;
  env: string;
  /** iproute2's ip, to bring loopback up in a job's own network namespace; without it loopback stays down. */
  ip: string | null;
}

export interface SandboxRunnerOptions {
  /** Holds one workspace per attempt (created if missing). One per executor. */
  workRoot: string;
  driver: CgroupDriver;
  tools: SandboxTools;
  /** The unprivileged uid and gid jobs run as (default 10001). */
  uid?: number;
  gid?: number;
  /** After the main process exited, how long a silent pipe may stay open before it is cut (default 200 ms). */
  drainMs?: number;
  /** Extra notes for the started report (the driver's own are added). */
  notes?: readonly string[];
}

export const SANDBOX_DEFAULTS = { uid: 10001, gid: 10001, drainMs: 200 } as const;

/** Trusted PATH for the root-run part (unshare, the init); the job's PATH applies only after privileges are dropped. */
const HOST_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const FSTAB = '.jobline-fstab';
/** Mounted afresh inside every sandbox (see the fstab written by the constructor). */
const PRIVATE_MOUNTS = ['/tmp', '/dev/shm'];

/**
 * The init, pid 1 of the attempt's pid namespace, run by root inside the new namespaces:
 * joins the attempt's cgroups (writing 0 to cgroup.procs moves the writer), mounts a
 * private /tmp and /dev/shm, brings loopback up when the job has its own network, then
 * runs the job under setpriv (unprivileged uid/gid, no groups, no capabilities, no new
 * privileges) with `env -i` and the job's environment only, and exits with its status.
 *
 * The job is a child, not pid 1 itself: the kernel drops signals without a handler sent to
 * a namespace's init, so a job as pid 1 would ignore SIGTERM. The init never execs its
 * last command (`; exit $?`), reaps orphans while it waits, and when it exits the kernel
 * kills whatever is left in the namespace.
 */
const INIT_PRELUDE = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit 125; shift; n=$((n-1)); done',
  'fstab=$1 mnt=$2 ip=$3 setpriv=$4 envbin=$5 uid=$6 gid=$7 ws=$8 cwd=$9 rebind=${10}; shift 10',
  'unset PWD',
  '"$mnt" -a -T "$fstab" || exit 125',
  // A workspace under /tmp is hidden by the private /tmp: bind it back from our cwd (which is the workspace).
  'if [ -n "$rebind" ]; then mkdir -p "$ws" && "$mnt" --no-canonicalize --bind /proc/self/cwd "$ws" || exit 125; fi',
  'cd "$cwd" || exit 125',
  'if [ -n "$ip" ]; then "$ip" link set lo up || exit 125; fi',
].join('\n');

/**
 * The job's variables travel in the init's environment as JL_E<i>=NAME=value (root-only
 * /proc/<pid>/environ, names no loader or libc reads), never in its world-readable
 * command line, and become the job's environment only after privileges are dropped.
 */
function initScript(envCount: number): string {
  const pairs = Array.from({ length: envCount }, (_, i) => `"$JL_E${i}"`).join(' ');
  return [
    INIT_PRELUDE,
    `set -- ${pairs} "$@"`,
    '"$setpriv" --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- "$envbin" -i -- "$@"',
    'exit $?',
  ].join('\n');
}

/** Signal number → its first (canonical) name: SIGABRT rather than SIGIOT. */
const signalNames = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.signals)) if (!signalNames.has(n)) signalNames.set(n, name);

/**
 * Runs each attempt in its own cgroup (v1 or v2, from the driver) and pid, mount, ipc,
 * uts and (unless resources.network) network namespaces, as an unprivileged user in its
 * own workspace. Everything about an attempt's processes is asked of its cgroup, which a
 * job cannot leave: signals, the final kill, cpu time, peak memory and OOM kills.
 */
export class SandboxRunner implements ProcessRunner {
  readonly kind: 'cgroup-v1' | 'cgroup-v2';
  readonly note?: string;
  private readonly root: string;
  private readonly uid: number;
  private readonly gid: number;
  private readonly drainMs: number;
  private readonly active = new Set<string>();

  constructor(private readonly o: SandboxRunnerOptions) {
    this.kind = o.driver.kind;
    this.root = resolve(o.workRoot);
    this.uid = o.uid ?? SANDBOX_DEFAULTS.uid;
    this.gid = o.gid ?? SANDBOX_DEFAULTS.gid;
    this.drainMs = o.drainMs ?? SANDBOX_DEFAULTS.drainMs;
    const notes = [...o.driver.notes, ...(o.notes ?? [])];
    if (notes.length > 0) this.note = notes.join('; ');
    mkdirSync(this.root, { recursive: true });
    // Workspaces are the job user's; the root only needs to be traversable, not listable.
    chmodSync(this.root, 0o711);
    const fstab = [`jobline-tmp /tmp tmpfs rw,nosuid,nodev,mode=1777 0 0`];
    if (existsSync('/dev/shm')) fstab.push(`jobline-shm /dev/shm tmpfs rw,nosuid,nodev,mode=1777 0 0`);
    writeFileSync(join(this.root, FSTAB), fstab.join('\n') + '\n', { mode: 0o644 });
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    if (!ATTEMPT_CGROUP_NAME.test(req.attemptId)) throw new LaunchError(`invalid attempt id ${JSON.stringify(req.attemptId)}`);
    if (req.argv.length === 0) throw new LaunchError('empty command');
    if (this.active.has(req.attemptId)) throw new LaunchError(`attempt ${req.attemptId} is already running`);
    const workspace = join(this.root, req.attemptId);
    const cwd = resolve(workspace, req.cwd ?? '.');
    if (cwd !== workspace && !cwd.startsWith(workspace + sep)) throw new LaunchError(`workdir ${req.cwd} leaves the workspace`);
    const env: Record<string, string> = { HOME: workspace, ...req.env, [ATTEMPT_MARKER]: req.attemptId };
    this.makeWorkspace(workspace, cwd, req.cwd);
    if (req.bundleFile) {
      try {
        await unpackBundle(req.bundleFile, workspace, { uid: this.uid, gid: this.gid });
      } catch (err) {
        rmSync(workspace, { recursive: true, force: true });
        throw err;
      }
    }
    let program: string;
    let cgroup: AttemptCgroup;
    try {
      program = resolveProgram(req.argv[0], env.PATH ?? DEFAULT_PATH, cwd);
      cgroup = this.o.driver.create(req.attemptId, req.resources);
    } catch (err) {
      rmSync(workspace, { recursive: true, force: true });
      if (err instanceof LaunchError) throw err;
      throw new LaunchError(`cannot create the attempt's cgroup: ${(err as Error).message}`, 125, { cause: err });
    }

    const t = this.o.tools;
    const network = req.resources?.network === true;
    const pairs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const args = [
      '--pid', '--mount', '--ipc', '--uts', ...(network ? [] : ['--net']), '--fork', '--mount-proc',
      '--', t.sh, '-c', initScript(pairs.length), 'jobline-init',
      String(cgroup.procsFiles.length), ...cgroup.procsFiles,
      join(this.root, FSTAB), t.mount, network ? '' : (t.ip ?? ''), t.setpriv, t.env, String(this.uid), String(this.gid),
      workspace, cwd, PRIVATE_MOUNTS.some((m) => workspace.startsWith(m + '/')) ? '1' : '',
      program, ...req.argv.slice(1),
    ];
    const initEnv: Record<string, string> = { PATH: HOST_PATH };
    pairs.forEach((p, i) => (initEnv[`JL_E${i}`] = p));
    const child = spawn(t.unshare, args, { cwd: workspace, env: initEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.active.add(req.attemptId);
    const attempt = new SandboxAttempt(child, cgroup, this.drainMs, () => this.release(req.attemptId, workspace, cgroup));
    try {
      await new Promise<void>((ok, fail) => {
        child.once('spawn', ok);
        child.once('error', fail);
      });
    } catch (err) {
      this.active.delete(req.attemptId);
      await cgroup.remove().catch(() => undefined);
      rmSync(workspace, { recursive: true, force: true });
      throw new LaunchError(`cannot start the sandbox (${t.unshare}): ${(err as Error).message}`, 125, { cause: err });
    }
    return attempt;
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

  /** Removes this executor's parent cgroups (when retiring an executor id; fails while attempts exist). */
  removeParent(): Promise<void> {
    return this.o.driver.removeParent();
  }

  /** The attempts this runner has running (their cgroup names). */
  get running(): string[] {
    return [...this.active];
  }

  private makeWorkspace(workspace: string, cwd: string, requested: string | undefined): void {
    try {
      mkdirSync(workspace, { mode: 0o700 });
      chownSync(workspace, this.uid, this.gid);
      let dir = workspace;
      for (const part of relative(workspace, cwd).split(sep).filter(Boolean)) {
        dir = join(dir, part);
        mkdirSync(dir);
        chownSync(dir, this.uid, this.gid);
      }
    } catch (err) {
      rmSync(workspace, { recursive: true, force: true });
      throw new LaunchError(`cannot create workdir ${requested ?? '.'}: ${(err as Error).message}`, 127, { cause: err });
    }
  }

  private async release(attemptId: string, workspace: string, cgroup: AttemptCgroup): Promise<void> {
    try {
      await cgroup.remove();
    } finally {
      this.active.delete(attemptId);
      await rm(workspace, { recursive: true, force: true });
    }
  }
}

/**
 * argv[0] as an absolute path, looked up as the shell would (PATH, or relative to the
 * working directory when it holds a slash), so a missing program is a launch error like
 * the unsandboxed runner's, not a message from deep inside the sandbox.
 */
function resolveProgram(name: string, path: string, cwd: string): string {
  let found: string | null = null;
  if (name.includes('/')) {
    const abs = isAbsolute(name) ? name : resolve(cwd, name);
    if (existsSync(abs)) {
      if (!isExecutableFile(abs)) throw new LaunchError(`cannot run ${JSON.stringify(name)}: permission denied`, 126);
      found = abs;
    }
  } else {
    for (const dir of path.split(':')) {
      if (!dir || !isAbsolute(dir)) continue;
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) {
        found = candidate;
        break;
      }
    }
  }
  if (!found) throw new LaunchError(`cannot run ${JSON.stringify(name)}: program not found`, 127);
  // env(1) would take a path with '=' for a variable assignment.
  if (found.includes('=')) throw new LaunchError(`cannot run ${JSON.stringify(name)}: a program path must not contain '='`, 126);
  return found;
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
  /** shutdown() had to SIGKILL what the grace period left. */
  private forced = false;

  constructor(
    private readonly child: ChildProcess,
    private readonly cgroup: AttemptCgroup,
    drainMs: number,
    private readonly releaseFn: () => Promise<void>,
  ) {
    this.pid = child.pid ?? -1;
    this.output = new AttemptOutput(child, drainMs);
    this.stdout = this.output.stdout;
    this.stderr = this.output.stderr;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.once('exit', (code, signal) => done({ code, signal })),
    );
    this.status = exit.then((e) => this.settle(e.code, e.signal));
    child.on('error', () => undefined);
  }

  wait(): Promise<ExitStatus> {
    return this.status;
  }

  signal(sig: string): void {
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
    this.forced = true;
    // The job's processes first, so the init reports 137 itself: unshare (util-linux 2.38)
    // cannot pass on its child's SIGKILL and would exit 1 with a complaint on stderr.
    for (const pid of this.cgroup.pids()) if (!isNamespaceInit(pid)) killQuietly(pid, 'SIGKILL');
    await this.until(() => this.cgroup.pids().length === 0, 500);
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
    // The init itself SIGKILLed (it raced the kill of its job): unshare exits 1 instead of passing the signal on.
    const decoded = this.forced && !signal && code === 1 ? decodeExit(null, 'SIGKILL') : decodeExit(code, signal);
    return {
      ...decoded,
      oomKilled: this.cgroup.oomKilled(decoded.signal === 'SIGKILL'),
      usage: this.cgroup.usage(),
    };
  }
}

/** Is this host pid the init (pid 1) of its own pid namespace? */
function isNamespaceInit(pid: number): boolean {
  const m = /^NSpid:\s+(.*)$/m.exec(readText(`/proc/${pid}/status`) ?? '');
  return m !== null && m[1].trim().split(/\s+/).pop() === '1';
}

/**
 * The init reports the job's fate as a shell does: 128 + n when a signal killed it (pid 1
 * of a namespace cannot die of its own signal to pass it on). So 128 + n is read as signal
 * n; a job that exits with such a code on purpose is reported as signalled, exactly as a
 * shell or a container runtime would show it. A signal that killed the init itself (the
 * final SIGKILL) comes through unshare as a real signal.
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
