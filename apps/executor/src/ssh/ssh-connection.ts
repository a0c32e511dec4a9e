import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2';
import type { ExecutorLogger } from '../core/executor';
import type { SshHost } from './ssh-inventory';

/** The host presented a key other than the pinned one (or none was pinned): nothing is sent to it. */
export class HostKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostKeyError';
  }
}

export interface SshConnectionOptions {
  host: SshHost;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** The ssh-agent socket for `agent: true` (main reads SSH_AUTH_SOCK). */
  agentSocket?: string;
  logger: ExecutorLogger;
  /** Runs on every fresh connection before it is handed out (e.g. killing what a dropped connection left running). */
  onConnect?: (run: (command: string) => Promise<RemoteResult>) => Promise<void>;
  /** Told when a live connection drops. */
  onDrop?: () => void;
}

/** 'SHA256:<base64 without padding>' of a raw public key blob, as OpenSSH prints it. */
export function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

export interface RemoteResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;

/**
 * One SSH connection to one inventory host, reused by every attempt: kept alive, and
 * re-established with back-off after a drop. Connecting refuses a host key other than the
 * pinned one before authenticating, so no credential and no command reaches such a host.
 */
export class SshConnection {
  private client: Client | null = null;
  private connecting: Promise<Client> | null = null;
  private closed = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private backoffMs = RECONNECT_MIN_MS;
  /** Why the last attempt to connect failed; null while connected. */
  lastError: Error | null = null;

  constructor(private readonly o: SshConnectionOptions) {}

  get name(): string {
    return this.o.host.name;
  }

  get connected(): boolean {
    return this.client !== null;
  }

  /** A ready connection: the live one, or a new one (one attempt, connectTimeoutMs). */
  get(): Promise<Client> {
    if (this.closed) return Promise.reject(new Error(`connection to ${this.name} is closed`));
    if (this.client) return Promise.resolve(this.client);
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** Connects now and keeps reconnecting after failures or drops, until close(). */
  start(): void {
    this.get().catch(() => this.scheduleReconnect());
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.client?.end();
    this.client = null;
  }

  /** Opens an exec channel on the live connection. */
  async exec(command: string, on?: Client): Promise<ClientChannel> {
    const client = on ?? (await this.get());
    return new Promise((resolve, reject) => {
      try {
        client.exec(command, (err, channel) => (err ? reject(err) : resolve(channel)));
      } catch (err) {
        reject(err as Error);
      }
    });
  }

  /** Runs one of the executor's own short commands and collects its output, within commandTimeoutMs. */
  async run(command: string, on?: Client): Promise<RemoteResult> {
    const channel = await this.exec(command, on);
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let code: number | null = null;
      let signal: string | null = null;
      const timer = setTimeout(() => {
        channel.close();
        reject(new Error(`remote command on ${this.name} timed out after ${this.o.commandTimeoutMs} ms`));
      }, this.o.commandTimeoutMs);
      channel.on('data', (d: Buffer) => out.push(d));
      channel.stderr.on('data', (d: Buffer) => err.push(d));
      channel.on('exit', (c: number | null, s?: string) => {
        code = c;
        signal = s ? `SIG${s}` : null;
      });
      channel.on('close', () => {
        clearTimeout(timer);
        resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      });
    });
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed || this.client) return;
      this.get().catch(() => this.scheduleReconnect());
    }, delay);
  }

  private async open(): Promise<Client> {
    const h = this.o.host;
    let refused: HostKeyError | null = null;
    const config: ConnectConfig = {
      host: h.address,
      port: h.port,
      username: h.user,
      readyTimeout: this.o.connectTimeoutMs,
      keepaliveInterval: this.o.keepaliveIntervalMs,
      keepaliveCountMax: this.o.keepaliveCountMax,
      hostVerifier: (key: Buffer) => {
        if (h.insecureAcceptAnyHostKey) return true;
        const seen = fingerprintOf(key);
        if (seen === h.hostKey) return true;
        refused = new HostKeyError(
          `host key mismatch for SSH host ${h.name} (${h.address}:${h.port}): it presented ${seen}, the inventory pins ${h.hostKey}; refusing to connect`,
        );
        return false;
      },
    };
    if (h.privateKeyFile) {
      try {
        config.privateKey = readFileSync(h.privateKeyFile);
      } catch (err) {
        throw this.failed(new Error(`cannot read private key ${h.privateKeyFile} for SSH host ${h.name}: ${(err as Error).message}`));
      }
    }
    if (h.agent) {
      const sock = h.agent === true ? this.o.agentSocket : h.agent;
      if (!sock && !h.privateKeyFile) throw this.failed(new Error(`SSH host ${h.name} uses the agent, but SSH_AUTH_SOCK is not set`));
      if (sock) config.agent = sock;
    }
    const client = new Client();
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('ready', () => resolve());
        client.once('error', (err) => reject(refused ?? err));
        client.once('close', () => reject(refused ?? new Error('connection closed during the handshake')));
        client.connect(config);
      });
    } catch (err) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      client.end();
      const e = err instanceof HostKeyError ? err : new Error(`cannot connect to SSH host ${h.name} (${h.address}:${h.port}): ${(err as Error).message}`);
      throw this.failed(e);
    }
    client.removeAllListeners();
    // Small request/answer exchanges: Nagle + delayed ACKs would add ~40 ms to each.
    client.setNoDelay(true);
    client.on('error', (err) => this.o.logger.warn({ host: h.name, err: err.message }, 'SSH connection error'));
    client.on('close', () => {
      if (this.client !== client) return;
      this.client = null;
      if (this.closed) return;
      this.o.logger.warn({ host: h.name }, 'SSH connection dropped; reconnecting');
      this.o.onDrop?.();
      this.scheduleReconnect();
    });
    if (this.closed) {
      client.end();
      throw new Error(`connection to ${h.name} is closed`);
    }
    // Handed out only after onConnect (cleanup of a dropped connection's leftovers) has run.
    try {
      await this.o.onConnect?.((command) => this.run(command, client));
    } catch (err) {
      client.end();
      throw this.failed(new Error(`preparing SSH host ${h.name} failed: ${(err as Error).message}`));
    }
    this.client = client;
    this.lastError = null;
    this.backoffMs = RECONNECT_MIN_MS;
    this.o.logger.info({ host: h.name, address: `${h.address}:${h.port}` }, 'SSH connection ready');
    return client;
  }

  private failed(err: Error): Error {
    this.lastError = err;
    return err;
  }
}
