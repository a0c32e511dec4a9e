import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './free-port';

/** Where nats-server is looked for when NATS_SERVER_BIN is not set. */
export const NATS_SERVER_CANDIDATES = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

export const NATS_INSTALL_HINT =
  'nats-server was not found. Install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu), ' +
  'or download it from the NATS releases, or set NATS_SERVER_BIN to its path, or point Jobline at a running server with --nats / JOBLINE_NATS_URL.';

export function findNatsServer(explicit?: string): string | null {
  if (explicit) return existsSync(explicit) ? explicit : null;
  for (const c of NATS_SERVER_CANDIDATES) if (existsSync(c)) return c;
  const which = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  return which.status === 0 && found ? found : null;
}

export interface NatsServerOptions {
  /** Folder for JetStream's store (created if missing). */
  storeDir: string;
  /** 0 or omitted: a free loopback port. */
  port?: number;
  binary?: string;
  /** Extra command line arguments. */
  args?: string[];
  startTimeoutMs?: number;
  /**
   * Start from this configuration file (`-c`) instead of `-js -sd storeDir`: the file enables
   * JetStream and names its store (e.g. `store_dir: $NATS_STORE_DIR`, set through `env`);
   * the address and port are still overridden to 127.0.0.1 and `port`.
   */
  configFile?: string;
  /** Extra environment variables (a configuration file given in `args` may read `$NAME`s from them). */
  env?: Record<string, string>;
}

export interface RunningNatsServer {
  url: string;
  port: number;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
  stop(): Promise<void>;
  /** SIGKILL at once (for crash tests). */
  kill(): Promise<void>;
}

/**
 * Starts a real nats-server with JetStream on 127.0.0.1, its store in storeDir.
 * Used by tests (on a random port) and by `jobline dev`.
 */
export async function startNatsServer(options: NatsServerOptions): Promise<RunningNatsServer> {
  const bin = findNatsServer(options.binary);
  if (!bin) throw new Error(NATS_INSTALL_HINT);
  mkdirSync(options.storeDir, { recursive: true });
  const port = options.port || (await freePort());
  const child = spawn(
    bin,
    [
      ...(options.configFile ? ['-c', options.configFile] : ['-js', '-sd', options.storeDir]),
      ...['-a', '127.0.0.1', '-p', String(port), '-l', join(options.storeDir, 'nats-server.log'), ...(options.args ?? [])],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: options.env ? { ...process.env, ...options.env } : process.env },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nats-server did not listen on 127.0.0.1:${port} in time: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  return { url: `nats://127.0.0.1:${port}`, port, process: child, stop: () => stopWith('SIGTERM'), kill: () => stopWith('SIGKILL') };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}
