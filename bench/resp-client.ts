/**
 * A minimal Redis client (RESP2 over one TCP connection, pipelined, replies in order) with
 * the surface of Bun's built-in RedisClient (`send`, `connected`, `onconnect`/`onclose`,
 * `close`, `duplicate`), which BullMQ 6 adapts natively. The BullMQ reference uses it only
 * when neither `ioredis` nor `redis` (BullMQ's optional peers) is installed; the result
 * names the client it used.
 */
import { connect, type Socket } from 'node:net';

type Reply = string | number | null | Error | Reply[];

interface Pending {
  resolve: (value: Reply) => void;
  reject: (error: Error) => void;
}

const CRLF = Buffer.from('\r\n');

export interface RespClientOptions {
  host: string;
  port: number;
}

export class RespClient {
  connected = false;
  onconnect: (() => void) | null = null;
  onclose: ((error?: Error) => void) | null = null;
  onerror: ((error: Error) => void) | null = null;
  private socket: Socket | null = null;
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private closedByUs = false;

  constructor(private readonly options: RespClientOptions) {}

  connect(): Promise<void> {
    if (this.connected) return Promise.resolve();
    this.closedByUs = false;
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.options.host, port: this.options.port, noDelay: true });
      this.socket = socket;
      socket.once('connect', () => {
        this.connected = true;
        socket.off('error', reject);
        socket.on('error', (err) => this.onerror?.(err));
        this.onconnect?.();
        resolve();
      });
      socket.once('error', reject);
      socket.on('data', (chunk: Buffer) => this.receive(chunk));
      socket.once('close', () => {
        const wasConnected = this.connected;
        this.connected = false;
        this.socket = null;
        const error = new Error('Connection closed');
        for (const p of this.pending.splice(0)) p.reject(error);
        if (wasConnected) this.onclose?.(this.closedByUs ? undefined : error);
      });
    });
  }

  /** Sends one command; replies come back in the order commands were sent. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- BullMQ's adapter types replies as any
  send(command: string, args: readonly unknown[]): Promise<any> {
    const socket = this.socket;
    if (!socket || !this.connected) return Promise.reject(new Error('Connection closed'));
    // The server closes the connection after QUIT: that close is ours, not a failure.
    if (command.toUpperCase() === 'QUIT') this.closedByUs = true;
    const parts: Buffer[] = [Buffer.from(`*${args.length + 1}\r\n`)];
    for (const a of [command, ...args]) {
      const b = Buffer.isBuffer(a) ? a : Buffer.from(a === null || a === undefined ? '' : String(a));
      parts.push(Buffer.from(`$${b.length}\r\n`), b, CRLF);
    }
    socket.write(Buffer.concat(parts));
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  get(key: string): Promise<string | null> {
    return this.send('GET', [key]) as Promise<string | null>;
  }

  smembers(key: string): Promise<string[]> {
    return this.send('SMEMBERS', [key]) as Promise<string[]>;
  }

  incr(key: string): Promise<number> {
    return this.send('INCR', [key]) as Promise<number>;
  }

  close(): void {
    this.closedByUs = true;
    this.socket?.end();
  }

  /** BullMQ recognises a client instance by connect, disconnect and duplicate. */
  disconnect(): void {
    this.close();
  }

  async duplicate(): Promise<RespClient> {
    return new RespClient(this.options);
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    let offset = 0;
    for (;;) {
      const parsed = parseReply(this.buffer, offset);
      if (!parsed) break;
      offset = parsed.next;
      const p = this.pending.shift();
      if (!p) continue;
      if (parsed.value instanceof Error) p.reject(parsed.value);
      else p.resolve(parsed.value);
    }
    this.buffer = offset === this.buffer.length ? Buffer.alloc(0) : this.buffer.subarray(offset);
  }
}

/** One complete RESP2 reply at `offset`, or null if the buffer does not hold all of it yet. */
function parseReply(buf: Buffer, offset: number): { value: Reply; next: number } | null {
  const eol = buf.indexOf(CRLF, offset);
  if (eol < 0) return null;
  const line = buf.toString('utf8', offset + 1, eol);
  const next = eol + 2;
  switch (buf[offset]) {
    case 0x2b: // +
      return { value: line, next };
    case 0x2d: // -
      return { value: new Error(line), next };
    case 0x3a: // :
      return { value: Number(line), next };
    case 0x24: {
      // $
      const len = Number(line);
      if (len < 0) return { value: null, next };
      if (buf.length < next + len + 2) return null;
      return { value: buf.toString('utf8', next, next + len), next: next + len + 2 };
    }
    case 0x2a: {
      // *
      const count = Number(line);
      if (count < 0) return { value: null, next };
      const items: Reply[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at);
        if (!item) return null;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`unexpected RESP type byte 0x${buf[offset].toString(16)}`);
  }
}
