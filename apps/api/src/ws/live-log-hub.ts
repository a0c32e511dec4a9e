import { STREAMS } from '../../../../libs/contracts/src';
import { readLogChunks, type SequencedLogChunk } from '../../../../libs/messaging/src/logs';
import type { ApiContext } from '../api.context';
import { createLogFeed, jobOver, liveLogChunks, readJobLog, type JobLogOptions, type JobLogPiece } from './job-log';

export interface LiveLogHubOptions {
  /** A follower whose share of the live tail holds more than this many bytes reads on its own from there (default 256 KiB). */
  maxQueuedBytes?: number;
}

type Ctx = Pick<ApiContext, 'js' | 'jsm' | 'projection'>;

/**
 * One live reader per followed job, shared by all of its followers in this api instance:
 * 1,000 followers of a job cost one JetStream consumer on its live tail, not 1,000. Each
 * follower still catches up on its own (from its attempt and offset), then takes the
 * shared tail from where its catch-up ended, matched by stream sequence (no gap, no
 * duplicate). A follower that falls behind the tail by more than maxQueuedBytes leaves it
 * and reads on its own from its last chunk, at its own pace; the shared reader never
 * waits for anyone.
 */
export class LiveLogHub {
  private readonly tails = new Map<string, Promise<SharedTail>>();
  private readonly maxQueuedBytes: number;

  constructor(
    private readonly ctx: Ctx,
    options: LiveLogHubOptions = {},
  ) {
    this.maxQueuedBytes = options.maxQueuedBytes ?? 256 * 1024;
  }

  /** Like readJobLog(…, {follow: true}): the job's output from (fromAttempt, offset), live until it ends. */
  async *follow(jobId: string, opts: Omit<JobLogOptions, 'follow'> = {}): AsyncGenerator<JobLogPiece> {
    const { signal } = opts;
    if (jobOver(this.ctx.projection.get(jobId))) {
      yield* readJobLog(this.ctx, jobId, { ...opts, follow: true });
      return;
    }
    // Taken before the catch-up starts: whatever the catch-up does not see, the tail delivers.
    const tap = (await this.tail(jobId)).attach(this.maxQueuedBytes);
    const feed = createLogFeed(opts.fromAttempt ?? 1, opts.offset ?? 0);
    let lastSeq = 0;
    let ended: TapEnd;
    try {
      for await (const c of readLogChunks(this.ctx.js, jobId, { signal })) {
        lastSeq = c.seq;
        yield* feed.push(c);
      }
      for (;;) {
        const next = await tap.next(signal);
        if (!('chunk' in next)) {
          ended = next.end;
          break;
        }
        if (next.chunk.seq <= lastSeq) continue;
        lastSeq = next.chunk.seq;
        yield* feed.push(next.chunk);
      }
    } finally {
      tap.detach();
    }
    if (signal?.aborted || ended === 'aborted') return;
    if (ended === 'behind') {
      // Too slow for the shared tail: on its own from here, held back by its own socket.
      for await (const c of liveLogChunks(this.ctx, jobId, lastSeq + 1, signal)) {
        lastSeq = c.seq;
        yield* feed.push(c);
      }
      if (signal?.aborted) return;
    }
    // The job is over: everything it wrote is stored; read what the live tail had not delivered.
    for await (const c of readLogChunks(this.ctx.js, jobId, { startSeq: lastSeq + 1, signal })) yield* feed.push(c);
    if (signal?.aborted) return;
    yield* feed.finish();
  }

  /** Stops every shared reader (their followers finish on their own readers). */
  close(): void {
    for (const t of this.tails.values()) void t.then((tail) => tail.stop('behind'));
    this.tails.clear();
  }

  private tail(jobId: string): Promise<SharedTail> {
    let t = this.tails.get(jobId);
    if (!t) {
      t = (async () => {
        // Chunks stored after this sequence reach the tail; earlier ones are every follower's catch-up.
        const info = await this.ctx.jsm.streams.info(STREAMS.logs);
        const tail = new SharedTail(this.ctx, jobId, info.state.last_seq + 1, () => {
          if (this.tails.get(jobId) === t) this.tails.delete(jobId);
        });
        return tail;
      })();
      this.tails.set(jobId, t);
      t.catch(() => this.tails.delete(jobId));
    }
    return t;
  }
}

/** Why a tap's chunks stopped: the job is over, the follower fell behind, or its follow was aborted. */
type TapEnd = 'over' | 'behind' | 'aborted';

/** The live chunks of one job, read once, pushed into every attached tap. */
class SharedTail {
  private readonly taps = new Set<Tap>();
  private readonly stopReading = new AbortController();
  private done: TapEnd | null = null;

  constructor(
    ctx: Ctx,
    jobId: string,
    startSeq: number,
    private readonly onDone: () => void,
  ) {
    void (async () => {
      try {
        for await (const c of liveLogChunks(ctx, jobId, startSeq, this.stopReading.signal)) for (const tap of this.taps) tap.push(c);
        this.stop(this.stopReading.signal.aborted ? 'behind' : 'over');
      } catch {
        // The tail failed: each follower carries on with a reader of its own.
        this.stop('behind');
      }
    })();
  }

  attach(maxQueuedBytes: number): Tap {
    const tap = new Tap(maxQueuedBytes, () => {
      this.taps.delete(tap);
      // Nobody left: no consumer stays open for a job nobody follows here.
      if (this.taps.size === 0 && this.done === null) this.stop('behind');
    });
    if (this.done !== null) tap.end(this.done);
    else this.taps.add(tap);
    return tap;
  }

  stop(why: TapEnd): void {
    if (this.done !== null) return;
    this.done = why;
    this.onDone();
    this.stopReading.abort();
    for (const tap of this.taps) tap.end(why);
    this.taps.clear();
  }
}

/** One follower's share of a SharedTail: a bounded queue (the chunks themselves are shared, not copied). */
class Tap {
  private readonly queue: SequencedLogChunk[] = [];
  private bytes = 0;
  private ended: TapEnd | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly maxBytes: number,
    readonly detach: () => void,
  ) {}

  push(c: SequencedLogChunk): void {
    if (this.ended !== null) return;
    if (this.bytes + c.data.byteLength > this.maxBytes && this.queue.length > 0) {
      this.detach();
      return this.end('behind');
    }
    this.queue.push(c);
    this.bytes += c.data.byteLength;
    this.wake?.();
  }

  end(why: TapEnd): void {
    this.ended ??= why;
    this.wake?.();
  }

  /** The next chunk; once the queue is empty, why the tap ended (queued chunks come first). */
  async next(signal?: AbortSignal): Promise<{ chunk: SequencedLogChunk } | { end: TapEnd }> {
    for (;;) {
      if (signal?.aborted) return { end: 'aborted' };
      const chunk = this.queue.shift();
      if (chunk) {
        this.bytes -= chunk.data.byteLength;
        return { chunk };
      }
      if (this.ended !== null) return { end: this.ended };
      await new Promise<void>((resolve) => {
        const done = () => {
          this.wake = null;
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.wake = done;
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
}
