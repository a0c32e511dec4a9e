import type { WebSocket } from 'ws';
import { JoblineError, UnavailableError, type JobView, type WsServerFrame } from '../../../../libs/contracts/src';
import type { ApiContext } from '../api.context';
import type { Caller } from '../api-tokens';
import type { JobsService } from '../jobs.service';
import { encodeLogFrame, endFrame, errorFrame, statusFrame } from './ws-frames';

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

export const WS_GATEWAY_DEFAULTS: Required<WsGatewayOptions> = { highWaterBytes: 1 << 20, stallMs: 30_000, maxBufferedBytes: 8 << 20, maxFollows: 100 };

const OPEN = 1;

/**
 * One client connection: its follows (each reads the log through the api's LogReader at the
 * pace of this socket) and its watch. Log frames wait while the socket holds more than
 * highWaterBytes, so a slow client costs at most that plus one frame; status frames are
 * never held, and a client that lets them pile up past maxBufferedBytes is dropped.
 */
export class WsSession {
  private readonly follows = new Map<string, AbortController>();
  private unwatch: (() => void) | null = null;
  private readonly closed: Promise<'closed'>;

  constructor(
    private readonly ws: WebSocket,
    private readonly caller: Caller,
    private readonly ctx: ApiContext,
    private readonly jobs: JobsService,
    private readonly opts: Required<WsGatewayOptions>,
  ) {
    this.closed = new Promise((resolve) => ws.once('close', () => resolve('closed')));
    ws.on('error', () => ws.terminate());
  }

  dispose(): void {
    for (const stop of this.follows.values()) stop.abort();
    this.follows.clear();
    this.unwatch?.();
    this.unwatch = null;
  }

  follow(rawId: string, attempt: number, from: number): void {
    let job: JobView;
    try {
      job = this.jobs.visible(this.caller, rawId);
    } catch (err) {
      return this.sendError(err, rawId);
    }
    // Following a job again restarts its follow from the new position.
    this.follows.get(job.id)?.abort();
    this.follows.delete(job.id);
    if (this.follows.size >= this.opts.maxFollows) {
      return this.sendError(new JoblineError('resource_exhausted', `at most ${this.opts.maxFollows} follows per connection`), job.id);
    }
    const stop = new AbortController();
    this.follows.set(job.id, stop);
    void this.runFollow(job.id, attempt, from, stop.signal)
      .catch((err: unknown) => {
        if (!stop.signal.aborted) this.sendError(err, job.id);
      })
      .finally(() => {
        if (this.follows.get(job.id) === stop) this.follows.delete(job.id);
      });
  }

  unfollow(rawId: string): void {
    const id = rawId.toLowerCase();
    const stop = this.follows.get(id);
    if (!stop) return this.sendError(new JoblineError('not_found', `job ${rawId} is not followed on this connection`), rawId);
    stop.abort();
    this.follows.delete(id);
  }

  watch(): void {
    if (this.unwatch) return;
    this.unwatch = this.ctx.projection.onAnyChange((view, change) => {
      if (!this.caller.admin && view.owner !== this.caller.owner) return;
      this.sendNow(statusFrame(view, change));
    });
  }

  invalid(message: string): void {
    this.sendError(new JoblineError('invalid_argument', message));
  }

  private async runFollow(jobId: string, attempt: number, from: number, signal: AbortSignal): Promise<void> {
    const read = this.ctx.logs.job(jobId, { fromAttempt: attempt, offset: from, follow: true, signal });
    try {
      for (;;) {
        const r = await read.next();
        if (signal.aborted) return;
        if (r.done) {
          if (!r.value) throw new UnavailableError(`the log of job ${jobId} is no longer read here (the api is stopping); follow again from the last offset`);
          return await this.sendHeld(Buffer.from(JSON.stringify(endFrame(r.value))));
        }
        await this.sendHeld(encodeLogFrame(jobId, r.value));
      }
    } finally {
      // Ends the read (and releases its share of the job's tail) whichever way this follow stopped.
      await read.return(null);
    }
  }

  /** Sends a frame and, while the socket holds more than the high-water mark, waits until it has taken it. */
  private async sendHeld(frame: Buffer): Promise<void> {
    if (this.ws.readyState !== OPEN) throw new Error('connection closed');
    const written = new Promise<'written'>((resolve) => this.ws.send(frame, { binary: false }, () => resolve('written')));
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

  /** For frames that are not held back (status, errors): past the hard limit the client is dropped. */
  private sendNow(frame: WsServerFrame): void {
    if (this.ws.readyState !== OPEN) return;
    if (this.ws.bufferedAmount > this.opts.maxBufferedBytes) return this.drop(`more than ${this.opts.maxBufferedBytes} bytes waiting for the client`);
    this.ws.send(JSON.stringify(frame));
  }

  private drop(why: string): void {
    // The error frame goes out only if the socket can still take it; the close is certain.
    if (this.ws.readyState === OPEN) {
      this.ws.send(JSON.stringify(errorFrame(new JoblineError('resource_exhausted', `slow client dropped: ${why}; reconnect and follow from the last offset received`))));
    }
    this.ws.close(1008, 'slow client');
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }

  private sendError(err: unknown, jobId?: string): void {
    this.sendNow(errorFrame(err, jobId));
  }
}
