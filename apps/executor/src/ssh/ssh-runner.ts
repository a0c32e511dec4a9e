import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { pipeline } from 'node:stream/promises';
import type { ClientChannel } from 'ssh2';
import type { ExecutorLogger } from '../core/executor';
import { shellQuote } from '../../../../libs/contracts/src/shell-script';
import { LaunchError, type ExitStatus, type LaunchRequest, type ProcessRunner, type RunningProcess } from '../core/process-runner.port';
import { ChunkQueue } from './chunk-queue';
import { HostKeyError, SshConnection, type RemoteResult } from './ssh-connection';
import type { SshHost, SshInventory } from './ssh-inventory';

export interface SshRunnerOptions {
  host: SshHost;
  settings: Pick<SshInventory, 'connectTimeoutMs' | 'commandTimeoutMs' | 'keepaliveIntervalMs' | 'keepaliveCountMax' | 'keepWorkspaces'>;
  agentSocket?: string;
  logger: ExecutorLogger;
}

const HEADER = 'JOBLINE-ATTEMPT ';
/** The launch script's own failure (no workspace, bad workdir), before the command ran. */
const LAUNCH_FAILED = 125;
const HEADER_MAX = 4096;

/**
 * Runs attempts on one inventory host over a shared SSH connection. Each attempt gets a
 * workspace made with mktemp under <remoteRoot>/<host name>; the command is the session's
 * process (OpenSSH runs every exec request in a new session, so its pid is its process
 * group id), recorded in <attempt>.pid next to the workspace so that a later connection can
 * kill what a dropped one left behind.
 */
export class SshRunner implements ProcessRunner {
  readonly kind = 'ssh' as const;
  readonly note = 'remote host over SSH: no resource limits';
  readonly conn: SshConnection;
  readonly dir: string;
  /** Attempts whose connection dropped: released once a new connection has killed their processes. */
  private reconnectWaiters: (() => void)[] = [];

  constructor(private readonly o: SshRunnerOptions) {
    this.dir = `${o.host.remoteRoot.replace(/\/+$/, '')}/${o.host.name}`;
    this.conn = new SshConnection({
      host: o.host,
      ...o.settings,
      agentSocket: o.agentSocket,
      logger: o.logger,
      onConnect: (run) => this.cleanup(run),
    });
  }

  /** Connects in the background and keeps the connection up until close(). */
  start(): void {
    this.conn.start();
  }

  close(): void {
    this.conn.close();
    for (const w of this.reconnectWaiters.splice(0)) w();
  }

  /**
   * Whether the executor should heartbeat and take work: connected, or refused for a host-key
   * mismatch (attempts then fail at once with that error instead of waiting in the queue).
   */
  available(): boolean {
    return this.conn.connected || this.conn.lastError instanceof HostKeyError;
  }

  /** For heartbeats (sent only while available()): 'connected', or 'host-key-mismatch' with the error. */
  hostState(): { state: string; note?: string } {
    const err = this.conn.lastError;
    if (this.conn.connected || !err) return { state: 'connected' };
    return { state: err instanceof HostKeyError ? 'host-key-mismatch' : 'unreachable', note: err.message.slice(0, 1000) };
  }

  async cleanupLeftovers(): Promise<void> {
    // Every fresh connection runs cleanup() before it is used.
  }

  async launch(req: LaunchRequest): Promise<RunningProcess> {
    try {
      await this.conn.get();
    } catch (err) {
      throw new LaunchError((err as Error).message, 255, { cause: err });
    }
    const bundle = req.bundleFile ? { hex: await fileSha256(req.bundleFile), size: (await stat(req.bundleFile)).size } : null;
    const channel = await this.conn.exec(this.launchScript(req, bundle)).catch((err: Error) => {
      throw new LaunchError(`cannot start the command on SSH host ${this.o.host.name}: ${err.message}`, 255, { cause: err });
    });
    // The launch script's stdin carries the bundle (or nothing), then stays open for the attempt's
    // life: its end (this process died, the connection dropped) is what kills the remote group.
    // The command itself gets /dev/null. Upload, check, unpack and start share the one exec request.
    if (req.bundleFile) {
      pipeline(createReadStream(req.bundleFile), channel, { end: false }).catch((err: Error) => {
        this.o.logger.warn({ host: this.o.host.name, err: err.message }, 'uploading the bundle failed');
        channel.close();
      });
    }
    return new Promise<RunningProcess>((resolve, reject) => {
      const stdout = new ChunkQueue();
      const stderr = new ChunkQueue();
      stderr.attach(channel.stderr);
      let header: Buffer | null = Buffer.alloc(0);
      let started: SshProcess | null = null;
      let exit: ExitStatus | null = null;
      channel.on('exit', (code: number | null, signalName?: string) => {
        exit = toExitStatus(code, signalName);
        started?.exited(exit);
      });
      channel.on('data', (d: Buffer) => {
        if (header === null) return stdout.push(d);
        header = Buffer.concat([header, d]);
        const nl = header.indexOf(10);
        if (nl < 0) {
          if (header.length > HEADER_MAX) channel.close();
          return;
        }
        const m = /^JOBLINE-ATTEMPT (\d+) (\/\S+)$/.exec(header.subarray(0, nl).toString('utf8'));
        const rest = header.subarray(nl + 1);
        header = null;
        if (!m) {
          channel.close();
          reject(new LaunchError(`SSH host ${this.o.host.name} answered the launch with something unexpected`, 255));
          return;
        }
        stdout.push(rest);
        started = new SshProcess(this, this.o, channel, Number(m[1]), m[2], stdout, stderr);
        if (exit) started.exited(exit);
        resolve(started);
      });
      channel.on('close', () => {
        stdout.end();
        if (started) {
          started.closed();
          return;
        }
        const why = stderrText(stderr) || (exit ? `exit code ${exit.exitCode}` : 'the connection dropped');
        reject(new LaunchError(`cannot start the attempt on SSH host ${this.o.host.name}: ${why}`, exit?.exitCode === LAUNCH_FAILED ? 126 : 255));
      });
    });
  }

  /** Resolves once a connection made after a drop has killed the dropped attempts' processes, or the runner closes. */
  afterReconnect(): Promise<void> {
    if (this.conn.connected) return Promise.resolve();
    return new Promise((resolve) => this.reconnectWaiters.push(resolve));
  }

  run(command: string): Promise<RemoteResult> {
    return this.conn.run(command);
  }

  private launchScript(req: LaunchRequest, bundle: { hex: string; size: number } | null): string {
    const a = req.attemptId;
    if (!/^[A-Za-z0-9_.-]+$/.test(a)) throw new LaunchError(`invalid attempt id ${a}`, 255);
    const env = { ...req.env, JOBLINE_ATTEMPT: a };
    const assignments = Object.entries(env).map(([k, v]) => shellQuote(`${k}=${v}`));
    const home = 'HOME' in req.env ? '' : 'HOME="$ws" ';
    const keep = this.o.settings.keepWorkspaces !== 'never';
    // A launch that fails before the command starts removes what it made (the workspace too, unless kept for debugging).
    const fail = `fail() { echo "$1" >&2; rm -rf ${keep ? '' : '"$ws" '}"$ws.tar.gz" "$d/${a}.pid"; exit ${LAUNCH_FAILED}; }`;
    const lines = [
      `d=${shellQuote(this.dir)}`,
      `mkdir -p "$d" && chmod 700 "$d" && ws=$(mktemp -d "$d/${a}.XXXXXX") && cd "$ws" || exit ${LAUNCH_FAILED}`,
      fail,
      `echo $$ > "$d/${a}.pid" || fail "cannot record the attempt's pid"`,
    ];
    if (bundle) {
      // Like the local runner: the bundle (its exact size, sent on stdin) is checked and unpacked into the workspace root first.
      lines.push(
        `head -c ${bundle.size} > "$ws.tar.gz" || fail "cannot write the bundle on the host"`,
        `h=$(sha256sum < "$ws.tar.gz" | cut -c1-64) || fail "cannot checksum the bundle on the host (sha256sum)"`,
        `[ "$h" = ${bundle.hex} ] || fail "the bundle arrived corrupted: sha256 $h, expected ${bundle.hex}"`,
        `tar -xzf "$ws.tar.gz" -C "$ws" --no-same-owner --delay-directory-restore || fail "cannot unpack the bundle"`,
        'rm -f "$ws.tar.gz"',
      );
    }
    // The watchdog: in the attempt's group, deaf to the signals a stop sends, it reads the channel
    // until its end and then kills the whole group. sshd ends it when the session goes (the executor
    // was killed, its connection dropped) and after the command exited (then it takes what was left).
    lines.push(
      'exec 3<&0',
      `( trap '' HUP INT QUIT TERM USR1 USR2; while read -r _ <&3; do :; done; kill -KILL -- -$$ ) </dev/null >/dev/null 2>&1 &`,
    );
    if (req.cwd) lines.push(`mkdir -p ${shellQuote(req.cwd)} && cd ${shellQuote(req.cwd)} || fail "cannot create workdir "${shellQuote(req.cwd)}`);
    return [
      ...lines,
      `printf '${HEADER}%s %s\\n' "$$" "$ws"`,
      `exec env -i ${home}${assignments.join(' ')} ${req.argv.map(shellQuote).join(' ')} </dev/null 3<&-`,
    ].join('\n');
  }

  /** Kills the process group of every attempt recorded in this executor's folder and removes their files. */
  private async cleanup(run: (command: string) => Promise<RemoteResult>): Promise<void> {
    const keep = this.o.settings.keepWorkspaces !== 'never';
    const script = [
      `d=${shellQuote(this.dir)}`,
      '[ -d "$d" ] || exit 0',
      'for f in "$d"/*.pid; do',
      '  [ -f "$f" ] || continue',
      '  p=$(cat "$f")',
      '  case "$p" in ""|*[!0-9]*) ;; *) kill -KILL -- "-$p" 2>/dev/null; echo "killed $p";; esac',
      `  rm -f "$f"${keep ? '' : '; rm -rf "${f%.pid}".*'}`,
      'done',
      'exit 0',
    ].join('\n');
    const r = await run(script);
    if (r.code !== 0) throw new Error(`cleanup failed (exit ${r.code}): ${r.stderr.trim()}`);
    const killed = r.stdout.split('\n').filter(Boolean).length;
    if (killed > 0) this.o.logger.warn({ host: this.o.host.name, groups: killed }, 'killed the processes of attempts a dropped connection left on the host');
    for (const w of this.reconnectWaiters.splice(0)) queueMicrotask(w);
  }
}

class SshProcess implements RunningProcess {
  private status: ExitStatus | null = null;
  private channelClosed = false;
  private lost = false;
  private settle: { resolve: (s: ExitStatus) => void; reject: (e: Error) => void } | null = null;
  private readonly done: Promise<ExitStatus>;
  private exitWaiters: (() => void)[] = [];
  private shutdownPromise: Promise<void> | null = null;
  private abandoned = false;
  private readonly pidFile: string;

  constructor(
    private readonly runner: SshRunner,
    private readonly o: SshRunnerOptions,
    private readonly channel: ClientChannel,
    readonly pid: number,
    private readonly workspace: string,
    readonly stdout: AsyncIterable<Uint8Array>,
    readonly stderr: AsyncIterable<Uint8Array>,
  ) {
    this.pidFile = `${workspace.replace(/\.[^./]+$/, '')}.pid`;
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Handled by wait(); never an unhandled rejection if wait() is not called yet.
    this.done.catch(() => undefined);
  }

  /** The remote main process exited: kill what it left in its group, then report. */
  exited(s: ExitStatus): void {
    if (this.status) return;
    this.status = s;
    for (const w of this.exitWaiters.splice(0)) w();
    void this.runner
      .run(`kill -KILL -- -${this.pid} 2>/dev/null; rm -f ${shellQuote(this.pidFile)}; exit 0`)
      .catch((err) => this.o.logger.warn({ host: this.o.host.name, err: (err as Error).message }, 'killing what an attempt left failed'))
      .finally(() => this.settle?.resolve(s));
  }

  /** The channel closed; without an exit status the connection dropped under the attempt. */
  closed(): void {
    this.channelClosed = true;
    if (this.status) return;
    this.lost = true;
    for (const w of this.exitWaiters.splice(0)) w();
    const fail = () =>
      this.settle?.reject(new Error(`the connection to SSH host ${this.o.host.name} dropped during the attempt; its processes are killed on reconnect`));
    // Held until the host is back and the attempt's processes are killed, so the attempt is not reported while they may still run.
    setImmediate(() => void this.runner.afterReconnect().then(fail));
  }

  wait(): Promise<ExitStatus> {
    return this.done;
  }

  signal(sig: string): void {
    if (this.status || this.lost) return;
    const name = sig.replace(/^SIG/, '');
    if (!/^[A-Z0-9]+$/.test(name)) return;
    void this.runner.run(`kill -${name} -- -${this.pid} 2>/dev/null; exit 0`).catch(() => undefined);
  }

  shutdown(graceMs: number): Promise<void> {
    this.shutdownPromise ??= this.doShutdown(graceMs);
    return this.shutdownPromise;
  }

  private async doShutdown(graceMs: number): Promise<void> {
    if (this.lost) {
      // Unreachable host: do not keep the executor waiting; the next connection kills the group.
      if (!this.abandoned) {
        this.abandoned = true;
        this.settle?.reject(new Error(`SSH host ${this.o.host.name} unreachable; the attempt's processes are killed on reconnect`));
      }
      return;
    }
    if (this.status) return;
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    await this.runner.run(`kill -TERM -- -${this.pid} 2>/dev/null; exit 0`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    if (this.status || this.lost) return;
    await this.runner.run(`kill -KILL -- -${this.pid} 2>/dev/null; exit 0`);
  }

  async stats(): Promise<null> {
    return null;
  }

  async dispose(): Promise<void> {
    if (!this.channelClosed) this.channel.close();
    if (this.lost) return;
    const keep = this.o.settings.keepWorkspaces;
    const failed = (this.status?.exitCode ?? 1) !== 0;
    if (keep === 'always' || (keep === 'failed' && failed)) return;
    await this.runner.run(`rm -rf ${shellQuote(this.workspace)} ${shellQuote(this.pidFile)}; exit 0`);
  }
}

function toExitStatus(code: number | null, signalName?: string): ExitStatus {
  if (code !== null && code !== undefined) return { exitCode: code, signal: null, oomKilled: false, usage: null };
  const signal = `SIG${(signalName ?? 'KILL').replace(/^SIG/, '')}`;
  const num = (constants.signals as Record<string, number>)[signal] ?? 9;
  return { exitCode: 128 + num, signal, oomKilled: false, usage: null };
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    await pipeline(createReadStream(file), hash);
  } catch (err) {
    throw new LaunchError(`cannot read the bundle ${file}: ${(err as Error).message}`, 127, { cause: err });
  }
  return hash.digest('hex');
}

function stderrText(q: ChunkQueue): string {
  return Buffer.concat(q.pending()).toString('utf8').trim().slice(0, 500);
}
