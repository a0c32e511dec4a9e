import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { isUtf8 } from 'node:buffer';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import { JoblineError, isTerminal, type JobView } from '../../../../libs/contracts/src';
import type { ApiContext } from '../api.context';
import type { Caller, TokenRegistry } from '../api-tokens';
import type { JobsService } from '../jobs.service';
import type { JobChange } from '../projections/jobs.projection';
import type { JobLogPiece } from './job-log';
import { LiveLogHub } from './live-log-hub';
import { callerFromRequest } from '../http/request-caller';

export const WS_PATH = '/v1/ws';

export interface WsGatewayOptions {
  /** A follow stops reading the log while more than this many bytes wait in the socket (default 1 MiB). */
  highWaterBytes?: number;
  /** A client that takes nothing for this long while a follow waits is dropped (default 30,000 ms). */
  stallMs?: number;
  /** Status frames of a watch are not held back: past this many waiting bytes the client is dropped (default 8 MiB). */
  maxBufferedBytes?: number;
  /** Follows open at once on one connection (default 100). */
  maxFollows?: number;
}

const JobIdField = z.string().min(1).max(200);
const ClientFrameSchema = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('follow'),
    jobId: JobIdField,
    /** Byte offset within `attempt` (default 0). */
    from: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Attempt to start in (default 1); later attempts follow from their start. */
    attempt: z.number().int().min(1).max(1_000_000).optional(),
  }),
  z.object({ op: z.literal('unfollow'), jobId: JobIdField }),
  z.object({ op: z.literal('watch') }),
]);
type ClientFrame = z.infer<typeof ClientFrameSchema>;

/** Error codes of `{type: "error"}` frames, named like gRPC status codes. */
export type WsErrorCode = 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'PERMISSION_DENIED' | 'RESOURCE_EXHAUSTED' | 'UNAVAILABLE' | 'INTERNAL';

/**
 * The WebSocket gateway on the api's HTTP(S) server (path /v1/ws). The caller is
 * authenticated once, at the upgrade, by the same rules as REST: a verified client
 * certificate (HTTPS mode), or a bearer token (Authorization header, or `?token=` where a
 * browser cannot set headers). Every follow reads the log at
 * its own pace and is held back while its socket is full, so a slow follower costs at most
 * `highWaterBytes` plus one batch of chunks.
 */
export class WsGateway {
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<WsConnection>();
  private server: Server | HttpsServer | null = null;
  private readonly opts: Required<WsGatewayOptions>;
  private readonly hub: LiveLogHub;

  constructor(
    private readonly ctx: ApiContext,
    private readonly tokens: TokenRegistry,
    private readonly jobs: JobsService,
    options: WsGatewayOptions = {},
  ) {
    this.opts = {
      highWaterBytes: options.highWaterBytes ?? 1 << 20,
      stallMs: options.stallMs ?? 30_000,
      maxBufferedBytes: options.maxBufferedBytes ?? 8 << 20,
      maxFollows: options.maxFollows ?? 100,
    };
    this.hub = new LiveLogHub(ctx);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024, perMessageDeflate: false });
  }

  attach(server: Server | HttpsServer): void {
    this.server = server;
    server.on('upgrade', this.onUpgrade);
  }

  /** Cuts every connection (a follower resumes elsewhere from its last offset). */
  close(): void {
    this.server?.off('upgrade', this.onUpgrade);
    for (const c of this.connections) c.terminate();
    this.hub.close();
    this.wss.close();
  }

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== WS_PATH) return reject(socket, 404, 'Not Found', `no WebSocket endpoint at ${url.pathname}; use ${WS_PATH}`);
    let caller: Caller;
    try {
      caller = callerFromRequest(req, this.tokens, url.searchParams.get('token'));
    } catch (err) {
      return reject(socket, 401, 'Unauthorized', err instanceof JoblineError ? err.message : 'not authenticated');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const conn = new WsConnection(ws, caller, this.ctx, this.jobs, this.hub, this.opts);
      this.connections.add(conn);
      ws.once('close', () => {
        this.connections.delete(conn);
        conn.dispose();
      });
    });
  };
}

function reject(socket: Duplex, status: number, reason: string, message: string): void {
  const body = JSON.stringify({ type: 'about:blank', title: reason, status, detail: message });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/** One client: its follows and its watch. */
class WsConnection {
  private readonly follows = new Map<string, AbortController>();
  private unwatch: (() => void) | null = null;
  private readonly closed: Promise<void>;

  constructor(
    private readonly ws: WebSocket,
    private readonly caller: Caller,
    private readonly ctx: ApiContext,
    private readonly jobs: JobsService,
    private readonly hub: LiveLogHub,
    private readonly opts: Required<WsGatewayOptions>,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()));
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
  }

  terminate(): void {
    this.ws.terminate();
  }

  dispose(): void {
    for (const stop of this.follows.values()) stop.abort();
    this.follows.clear();
    this.unwatch?.();
    this.unwatch = null;
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    let frame: ClientFrame;
    try {
      if (isBinary) throw new JoblineError('invalid_argument', 'frames are JSON text, not binary');
      let json: unknown;
      try {
        json = JSON.parse(rawText(data));
      } catch {
        throw new JoblineError('invalid_argument', 'the frame is not valid JSON');
      }
      const parsed = ClientFrameSchema.safeParse(json);
      if (!parsed.success) {
        const op = (json as { op?: unknown } | null)?.op;
        const known = op === 'follow' || op === 'unfollow' || op === 'watch';
        throw new JoblineError(
          'invalid_argument',
          known
            ? `invalid ${String(op)} frame: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(frame)'}: ${i.message}`).join('; ')}`
            : `unknown op ${JSON.stringify(op ?? null)}: expected "follow", "unfollow" or "watch"`,
        );
      }
      frame = parsed.data;
    } catch (err) {
      this.sendError(err);
      return;
    }
    switch (frame.op) {
      case 'follow':
        return this.follow(frame.jobId, frame.attempt ?? 1, frame.from ?? 0);
      case 'unfollow':
        return this.unfollow(frame.jobId);
      case 'watch':
        return this.watch();
    }
  }

  private follow(rawId: string, attempt: number, from: number): void {
    let job: JobView;
    try {
      job = this.jobs.visible(this.caller, rawId);
    } catch (err) {
      return this.sendError(err, rawId);
    }
    // Following a job again restarts its follow from the new position.
    this.follows.get(job.id)?.abort();
    if (!this.follows.has(job.id) && this.follows.size >= this.opts.maxFollows) {
      return this.sendNow({ type: 'error', code: 'RESOURCE_EXHAUSTED', message: `at most ${this.opts.maxFollows} follows per connection`, jobId: job.id });
    }
    const stop = new AbortController();
    this.follows.set(job.id, stop);
    void this.runFollow(job.id, attempt, from, stop)
      .catch((err: unknown) => {
        if (!stop.signal.aborted) this.sendError(new JoblineError('unavailable', `reading the log of job ${job.id} failed: ${err instanceof Error ? err.message : String(err)}`), job.id);
      })
      .finally(() => {
        if (this.follows.get(job.id) === stop) this.follows.delete(job.id);
      });
  }

  private async runFollow(jobId: string, attempt: number, from: number, stop: AbortController): Promise<void> {
    for await (const piece of this.hub.follow(jobId, { fromAttempt: attempt, offset: from, signal: stop.signal })) {
      if (stop.signal.aborted) return;
      await this.sendHeld(logFrame(jobId, piece));
    }
    if (stop.signal.aborted) return;
    const job = this.ctx.projection.get(jobId);
    if (!job || !isTerminal(job.status)) return;
    await this.sendHeld({ type: 'end', jobId, status: job.status, exitCode: job.exitCode });
  }

  private unfollow(rawId: string): void {
    const id = rawId.toLowerCase();
    const stop = this.follows.get(id);
    if (!stop) return this.sendError(new JoblineError('not_found', `job ${rawId} is not followed on this connection`), rawId);
    stop.abort();
    this.follows.delete(id);
  }

  private watch(): void {
    if (this.unwatch) return;
    this.unwatch = this.ctx.projection.onAnyChange((view, change) => {
      if (!this.caller.admin && view.owner !== this.caller.owner) return;
      this.sendNow(statusFrame(view, change));
    });
  }

  /** Sends a frame and, while the socket holds more than the high-water mark, waits until it has taken it. */
  private async sendHeld(frame: object): Promise<void> {
    if (this.ws.readyState !== WebSocket.OPEN) throw new Error('connection closed');
    const written = new Promise<void>((resolve) => this.ws.send(JSON.stringify(frame), () => resolve()));
    if (this.ws.bufferedAmount <= this.opts.highWaterBytes) return;
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), this.opts.stallMs)));
    try {
      const r = await Promise.race([written, this.closed, stalled]);
      if (r === 'stalled') this.drop(`the client took no data for ${this.opts.stallMs} ms`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** For frames that are not held back (status): past the hard limit the client is dropped. */
  private sendNow(frame: object): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.ws.bufferedAmount > this.opts.maxBufferedBytes) return this.drop(`more than ${this.opts.maxBufferedBytes} bytes waiting for the client`);
    this.ws.send(JSON.stringify(frame));
  }

  private drop(why: string): void {
    // The error frame goes out only if the socket can still take it; the close is certain.
    this.sendNowUnchecked({ type: 'error', code: 'RESOURCE_EXHAUSTED', message: `slow client dropped: ${why}; reconnect and follow from the last offset received` });
    this.ws.close(1008, 'slow client');
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private sendNowUnchecked(frame: object): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  private sendError(err: unknown, jobId?: string): void {
    const { code, message } = toErrorFrame(err);
    this.sendNow({ type: 'error', code, message, ...(jobId !== undefined ? { jobId } : {}) });
  }
}

function rawText(data: RawData): string {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
  return buf.toString('utf8');
}

/** Log data as UTF-8 text when it is valid UTF-8, else base64 (binary-safe). */
export function logFrame(jobId: string, p: JobLogPiece): Record<string, unknown> {
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const text = isUtf8(buf);
  return {
    type: 'log',
    jobId,
    attempt: p.attempt,
    stream: p.stream,
    offset: p.offset,
    data: text ? buf.toString('utf8') : buf.toString('base64'),
    ...(text ? {} : { encoding: 'base64' }),
  };
}

function statusFrame(view: JobView, change: JobChange): Record<string, unknown> {
  return {
    type: 'status',
    jobId: view.id,
    owner: view.owner,
    status: view.status,
    at: change.occurredAt,
    attempt: view.attempt,
    event: change.type,
    position: change.position,
    ...(view.exitCode !== null ? { exitCode: view.exitCode } : {}),
    ...(view.signal !== null ? { signal: view.signal } : {}),
    ...(view.reason !== null ? { reason: view.reason } : {}),
  };
}

const ERROR_CODES: Record<string, WsErrorCode> = {
  invalid_argument: 'INVALID_ARGUMENT',
  not_found: 'NOT_FOUND',
  permission_denied: 'PERMISSION_DENIED',
  unavailable: 'UNAVAILABLE',
};

function toErrorFrame(err: unknown): { code: WsErrorCode; message: string } {
  if (err instanceof JoblineError) return { code: ERROR_CODES[err.code] ?? 'INTERNAL', message: err.message };
  return { code: 'INTERNAL', message: 'internal error' };
}
