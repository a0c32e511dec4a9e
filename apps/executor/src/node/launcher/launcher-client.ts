import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { constants as fsConstants, openSync, closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

/**
 * The executor's side of jobline-launcher (jobline-launcher.c describes the protocol): one
 * small long-lived child process that starts every attempt, so the executor neither forks
 * its own heap per attempt (which blocks its event loop for about a millisecond) nor runs a
 * chain of helper programs. The launcher dies with the executor and takes its jobs along.
 */

export interface SandboxLaunch {
  mode: 'sandbox';
  uid: number;
  gid: number;
  /** A network namespace with only loopback (brought up). */
  isolateNetwork: boolean;
  /** Covered by an empty tmpfs in the job's mount namespace (the workspace is bound back): what the job must not see or cannot traverse. */
  mask: string;
  workspace: string;
  cwd: string;
  /** Absolute path of the program; argv[0] is what the job sees. */
  program: string;
  /** The attempt's cgroup, made by the launcher before the clone: these directories, in order, then these writes (file, value) in order. */
  cgroupDirs?: readonly string[];
  cgroupWrites?: readonly (readonly [string, string])[];
  /** cgroup.procs files the init joins before anything of the job runs. */
  procsFiles: readonly string[];
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
}

export interface PlainLaunch {
  mode: 'plain';
  cwd: string;
  program: string;
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
}

export interface LaunchedProcess {
  /** The host pid: the namespace's init for a sandbox, the job itself (a session and group leader) when plain. */
  pid: number;
  stdout: Readable;
  stderr: Readable;
  /** The main process ended: its exit code, or the signal that killed it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The launcher refused or failed to start an attempt; nothing runs. */
export class LauncherError extends Error {
  override name = 'LauncherError';
}

interface Pending {
  started: (p: { pid: number; out: number; err: number }) => void;
  failed: (e: Error) => void;
  exited?: (e: { code: number | null; signal: NodeJS.Signals | null }) => void;
}

const signalName = new Map<number, NodeJS.Signals>();
for (const [name, n] of Object.entries(osConstants.signals)) if (!signalName.has(n)) signalName.set(n, name as NodeJS.Signals);

/**
 * The namespaces, mounts and privilege drop of a sandbox, tried once without a job (the
 * executor's start-up check): null when they work, else why not.
 */
export function probeSandbox(binary: string, uid: number, gid: number): string | null {
  const r = spawnSync(binary, ['--probe', String(uid), String(gid)], { encoding: 'utf8', timeout: 10_000 });
  if (r.status === 0) return null;
  return (r.stderr || r.error?.message || '').trim() || `the probe ended with ${r.signal ?? `code ${r.status}`}`;
}

export class Launcher {
  private seq = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly removals = new Map<string, { resolve: (why: string | null) => void; reject: (e: Error) => void }>();
  private buffered = '';
  private stderrTail = '';
  private dead: Error | null = null;
  private readonly closed: Promise<void>;

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, Readable>,
    readonly pid: number,
  ) {
    this.closed = new Promise((resolve) => child.once('close', () => resolve()));
    child.once('exit', (code, signal) => this.die(new LauncherError(`the launcher exited (${signal ?? `code ${code}`})${this.stderrTail ? `: ${this.stderrTail.trim()}` : ''}`)));
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (chunk: string) => this.onData(chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => (this.stderrTail = (this.stderrTail + s).slice(-2000)));
    child.stdin.on('error', () => undefined);
    this.idle();
  }

  /** Starts a launcher; resolves once it is ready. */
  static start(binary: string): Promise<Launcher> {
    const child = spawn(binary, [String(process.pid)], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    return new Promise((resolve, reject) => {
      let out = '';
      const onData = (chunk: Buffer) => {
        out += chunk.toString('latin1');
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        child.stdout.off('data', onData);
        child.off('exit', onExit);
        const m = /^R (\d+) /.exec(out.slice(0, nl));
        if (!m) {
          child.kill('SIGKILL');
          reject(new LauncherError(`unexpected launcher greeting ${JSON.stringify(out.slice(0, nl))}`));
          return;
        }
        const launcher = new Launcher(child, Number(m[1]));
        const rest = out.slice(nl + 1);
        if (rest) launcher.onData(rest);
        resolve(launcher);
      };
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      const onExit = (code: number | null, signal: string | null) => reject(new LauncherError(`the launcher (${binary}) exited at start (${signal ?? `code ${code}`}) ${err.trim()}`));
      child.once('error', (e) => reject(new LauncherError(`cannot start the launcher ${binary}: ${e.message}`)));
      child.once('exit', onExit);
      child.stdout.on('data', onData);
    });
  }

  get alive(): boolean {
    return this.dead === null;
  }

  /** Starts one attempt. Rejects with a LauncherError when nothing could be started. */
  async run(req: SandboxLaunch | PlainLaunch): Promise<LaunchedProcess> {
    const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
    const head =
      req.mode === 'sandbox'
        ? [
            'sandbox', String(req.uid), String(req.gid), req.isolateNetwork ? '1' : '0', req.mask, req.workspace, req.cwd, req.program,
            String(req.cgroupDirs?.length ?? 0), ...(req.cgroupDirs ?? []),
            String(req.cgroupWrites?.length ?? 0), ...(req.cgroupWrites ?? []).flat(),
            String(req.procsFiles.length), ...req.procsFiles,
          ]
        : ['plain', req.cwd, req.program];
    return this.start(['run', head, String(req.argv.length), ...req.argv, String(env.length), ...env]);
  }

  /**
   * Removes an ended attempt's cgroup directories (and its workspace, when empty) through the
   * launcher's remover process, never in the launcher's loop, so a slow rmdir (cgroup locks, the
   * file system's journal) holds up no start; from Node it would be a thread-pool round trip
   * each: null when they are gone, else why not.
   */
  removeDirs(dirs: readonly string[]): Promise<string | null> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = String(++this.seq);
    const fields = ['rmdir', seq, ...dirs];
    for (const f of fields) if (f.includes('\0')) return Promise.reject(new LauncherError('a NUL byte in a path'));
    return new Promise((resolve, reject) => {
      this.removals.set(seq, { resolve, reject });
      this.busy();
      this.write(Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8'));
    });
  }

  /** Closes the launcher: it kills whatever of its attempts still runs and exits. */
  async close(): Promise<void> {
    if (this.dead) return this.closed;
    this.child.stdin.end();
    await this.closed;
  }

  private async start(parts: [string, string[], ...string[]]): Promise<LaunchedProcess> {
    if (this.dead) throw this.dead;
    const seq = String(++this.seq);
    const [verb, head, ...rest] = parts;
    const fields = [verb, seq, ...head, ...rest];
    for (const f of fields) if (f.includes('\0')) throw new LauncherError('a NUL byte in an argument or variable');
    const body = Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
    let started!: (p: { pid: number; out: number; err: number }) => void;
    let failed!: (e: Error) => void;
    const ready = new Promise<{ pid: number; out: number; err: number }>((ok, fail) => {
      started = ok;
      failed = fail;
    });
    let exitedResolve!: (e: { code: number | null; signal: NodeJS.Signals | null }) => void;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => (exitedResolve = r));
    this.pending.set(seq, { started, failed, exited: exitedResolve });
    this.busy();
    this.write(body);
    let fds: { pid: number; out: number; err: number };
    try {
      fds = await ready;
    } catch (err) {
      this.pending.delete(seq);
      this.idle();
      throw err;
    }
    // Our own read ends first, then the launcher may close its: the fd numbers cannot be reused before the ack.
    try {
      const stdout = this.adopt(fds.out);
      const stderr = this.adopt(fds.err);
      return { pid: fds.pid, stdout, stderr, exited };
    } finally {
      this.ack(seq);
    }
  }

  /** Our own read end of one of the launcher's pipes (a pipe stays a pipe: /dev/stdout works in the job). */
  private adopt(fd: number): Readable {
    const own = openSync(`/proc/${this.pid}/fd/${fd}`, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      return new Socket({ fd: own, readable: true, writable: false });
    } catch (err) {
      closeSync(own);
      throw err;
    }
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    const [kind, seq, ...rest] = line.split(' ');
    if (kind === 'D') {
      const r = this.removals.get(seq);
      if (!r) return;
      this.removals.delete(seq);
      this.idle();
      r.resolve(rest[0] === '0' ? null : rest.slice(1).join(' '));
      return;
    }
    const p = this.pending.get(seq);
    if (!p) return;
    if (kind === 'S') {
      const [pid, out, err] = rest.map(Number);
      p.started({ pid, out, err });
    } else if (kind === 'X') {
      const code = Number(rest[0]);
      const sig = Number(rest[1]);
      this.pending.delete(seq);
      this.idle();
      p.exited?.(code >= 0 ? { code, signal: null } : { code: null, signal: signalName.get(sig) ?? 'SIGKILL' });
    } else if (kind === 'E') {
      p.failed(new LauncherError(rest.join(' ')));
    }
  }

  private ack(seq: string): void {
    if (this.dead) return;
    this.write(Buffer.from(`ack\0${seq}\0`));
  }

  /** One frame: its length in 8 hex digits, then the body. */
  private write(body: Buffer): void {
    this.child.stdin.write(Buffer.concat([Buffer.from(body.length.toString(16).padStart(8, '0')), body]));
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const [seq, p] of this.pending) {
      p.failed(err);
      // Its sandboxes died with it (their inits' parent-death signal); report the attempts as killed.
      p.exited?.({ code: null, signal: 'SIGKILL' });
      this.pending.delete(seq);
    }
    for (const [seq, r] of this.removals) {
      r.reject(err);
      this.removals.delete(seq);
    }
  }

  /** Keeps the event loop alive only while attempts are outstanding: an idle launcher never holds a process open. */
  private busy(): void {
    this.child.ref();
    (this.child.stdout as Socket).ref?.();
  }

  private idle(): void {
    if (this.pending.size > 0 || this.removals.size > 0) return;
    this.child.unref();
    (this.child.stdout as Socket).unref?.();
    (this.child.stderr as Socket).unref?.();
    (this.child.stdin as unknown as Socket).unref?.();
  }
}

/** One launcher per runner, started on first use and again after it died. */
export class LauncherHandle {
  private current: Promise<Launcher> | null = null;

  constructor(readonly binary: string) {}

  async get(): Promise<Launcher> {
    for (;;) {
      const cur = (this.current ??= Launcher.start(this.binary));
      let launcher: Launcher;
      try {
        launcher = await cur;
      } catch (err) {
        // It could not start: the next call tries again.
        if (this.current === cur) this.current = null;
        throw err;
      }
      if (launcher.alive) return launcher;
      if (this.current === cur) this.current = null;
    }
  }

  /** Stops the launcher (and so anything it still runs). */
  async close(): Promise<void> {
    const cur = this.current;
    this.current = null;
    if (cur) await (await cur.catch(() => null))?.close();
  }

}
