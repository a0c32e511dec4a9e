import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import {
  DataLossError,
  STREAMS,
  UnavailableError,
  decodeJobEvent,
  decodeLogChunk,
  isTerminal,
  jobStreamName,
  subjects,
  type JobEvent,
  type JobView,
  type LogChunk,
  type StoredJobEvent,
} from '../../contracts/src';
import { evolveJobView } from '../../domain/src/job-view.projection';
import type { EventStore } from '../../event-store/src/event-store.port';
import { LogAssembler, type LogPiece } from './log-assembler';
import { attemptLogEnd, type AttemptLogEnd } from './log-end';

/** What the reader needs of a job's history: its events, and a nudge when they may have grown. */
export interface JobHistorySource {
  /** Calls `listener` whenever the job's history may have changed, until the returned function is called. */
  onChange(jobId: string, listener: () => void): () => void;
  /** The job's stored events in stream order (none for an unknown job). */
  read(jobId: string): Promise<readonly JobEvent[]>;
}

/** A history source reading the event store, nudged by whoever watches it (e.g. a projection's per-job listener). */
export function eventStoreHistory(store: Pick<EventStore, 'readStream'>, onChange: JobHistorySource['onChange']): JobHistorySource {
  return {
    onChange,
    read: async (jobId) => (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r) as StoredJobEvent),
  };
}

export interface LogReaderOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  history: JobHistorySource;
  /** The shared tail of a job reads this many bytes ahead of its fastest follower (default 1 MiB). */
  readAheadBytes?: number;
  /** Recent chunks kept per job for its followers; one that falls further behind reads on its own (default 4 MiB). */
  windowBytes?: number;
  /**
   * Messages asked of JetStream per pull (default 32): what one reader holds at most beyond
   * what it was given is this many chunks (4 MiB with the executor's 128 KiB chunks). Pulls
   * are by count, not bytes: a pull with a byte limit that the next chunk does not fit ends
   * without telling the client, which then waits for missed heartbeats (seconds).
   */
  pullMessages?: number;
  /** Bytes held after a gap in an attempt's offsets (a chunk stored late) before the gap is reported as data loss (default 16 MiB). */
  maxHeldBytes?: number;
  /** Tries of a JetStream request (create a consumer, get a message, stream info) before a read fails with UNAVAILABLE (default 6), spaced by retryDelayMs × try (default 250 ms). */
  retries?: number;
  retryDelayMs?: number;
  /** The history of a followed job is read again this often even without a nudge (default 5,000 ms), so a missed nudge cannot stall a follower. */
  historyRefreshMs?: number;
  /**
   * A follower that has everything its shared tail holds, of an attempt that is over but
   * whose last stored chunk it has not seen, checks the stream on its own after this long
   * (default 2,000 ms): that chunk may have been discarded meanwhile.
   */
  drainCheckMs?: number;
  /**
   * A read of its own that is behind (the stream holds more for it) and gets nothing for this
   * long (default 10,000 ms) is closed and opened again from where it was: a consumer that
   * stopped delivering must not leave its follower waiting for ever.
   */
  ownStallMs?: number;
  /** Told each time a consumer is opened on the logs stream: the shared tail of a job, or one reader's own. */
  onConsumer?: (kind: 'tail' | 'own') => void;
  /** Told when a stalled read of its own was opened again (see ownStallMs); must not throw. */
  onStall?: (jobId: string, afterSeq: number) => void;
}

const DEFAULTS = {
  readAheadBytes: 1 << 20,
  windowBytes: 4 << 20,
  pullMessages: 32,
  maxHeldBytes: 16 << 20,
  retries: 6,
  retryDelayMs: 250,
  historyRefreshMs: 5_000,
  drainCheckMs: 2_000,
  ownStallMs: 10_000,
} as const;

/**
 * A slice of one attempt's output, in log order. A chunk passed whole is the same object
 * for every reader of the job (treat it as read-only; an edge may memoize what it derives
 * from it on it, under a symbol).
 */
export interface AttemptPiece extends LogPiece {
  attempt: number;
}

export interface ReadAttemptOptions {
  attempt: number;
  /** Byte offset within the attempt (default 0); a chunk straddling it is cut. */
  offset?: number;
  /** Stored bytes, then live ones until the attempt's log is complete (default false: what is stored now; DATA_LOSS when that is short of a length the history recorded). */
  follow?: boolean;
  signal?: AbortSignal;
}

/** How a read of one attempt ended. */
export type AttemptReadEnd =
  /** Every byte of the attempt from the offset was delivered (follow), or every byte stored now (no follow). */
  | { reason: 'complete'; bytes: number }
  | { reason: 'purged' }
  | { reason: 'aborted' };

export interface ReadJobOptions {
  /** Attempt to start in (default 1); each later attempt follows from its start. */
  fromAttempt?: number;
  /** Byte offset within fromAttempt (default 0). */
  offset?: number;
  /** Live until the job is over (default false: every attempt's stored bytes, up to the latest attempt). */
  follow?: boolean;
  signal?: AbortSignal;
}

let clock = 0;
/** A logical clock ordering what the reader observed: a request sent after an answer arrived has a larger tick. */
const tick = () => ++clock;

/**
 * The one log reader: every edge (REST `?follow`, the WebSocket gateway, gRPC Logs)
 * translates what it yields into its framing.
 *
 * Given a job, an attempt and an offset it yields the attempt's stored bytes and then its
 * live ones, in offset order, with no gap and no duplicate, and ends when the bytes
 * delivered reach the length the attempt's history recorded (JobCompleted, a confirmed
 * JobCancelled); an attempt that ended without a recorded length (timed out, lost,
 * superseded) ends once the reader has read up to the job's last chunk in the stream as it
 * stood when the reader learned that the attempt was over. Bytes that cannot be delivered
 * are an error, never a silent gap: DataLossError (`data_loss`) when the logs stream's
 * retention discarded them, or when the history counts bytes the stream never stored;
 * UnavailableError when JetStream does not answer after the retries.
 *
 * Per api instance, the followers of one job share one live tail: one ordered consumer
 * from the job's live position, keeping a window of recent chunks. A follower reads the
 * stored part on its own consumer (only when the job had output before it came), joins the
 * tail where its own read meets it (matched by stream sequence), and goes back to reading
 * on its own if it falls out of the window; the tail reads ahead of its fastest follower
 * by at most readAheadBytes, and never waits for the slower ones.
 */
export class LogReader {
  private readonly o: Required<Omit<LogReaderOptions, 'onConsumer' | 'onStall'>> & Pick<LogReaderOptions, 'onConsumer' | 'onStall'>;
  private readonly tails = new Map<string, JobTail>();
  private closed = false;
  /** Bytes yielded to all reads so far. */
  private delivered = 0;
  /** Own reads opened again after a stall (see ownStallMs). */
  private stalls = 0;

  constructor(options: LogReaderOptions) {
    this.o = { ...DEFAULTS, ...stripUndefined(options) } as LogReader['o'];
    for (const k of ['readAheadBytes', 'windowBytes', 'pullMessages', 'maxHeldBytes', 'retryDelayMs', 'historyRefreshMs', 'drainCheckMs', 'ownStallMs'] as const) {
      if (!(this.o[k] > 0)) throw new Error(`LogReader: ${k} must be positive`);
    }
    if (!(this.o.retries >= 1)) throw new Error('LogReader: retries must be at least 1');
  }

  /** Jobs with a shared tail, and the reads attached to them. */
  stats(): { tails: number; followers: number; liveTails: number; windowBytes: number; bytesDelivered: number; stalledReads: number } {
    let followers = 0;
    let liveTails = 0;
    let windowBytes = 0;
    for (const t of this.tails.values()) {
      followers += t.users;
      if (t.live) liveTails++;
      windowBytes += t.live?.bytes ?? 0;
    }
    return { tails: this.tails.size, followers, liveTails, windowBytes, bytesDelivered: this.delivered, stalledReads: this.stalls };
  }

  /** Stops every shared tail; reads still running end (as aborted) at their next step. */
  close(): void {
    this.closed = true;
    for (const t of this.tails.values()) t.stop();
    this.tails.clear();
  }

  /**
   * One attempt's bytes from `offset`: without follow, what is stored now; with follow,
   * stored then live until the attempt's log is complete (see the class comment).
   */
  async *attempt(jobId: string, opts: ReadAttemptOptions): AsyncGenerator<AttemptPiece, AttemptReadEnd> {
    if (!opts.follow) {
      // The history before the stream: a length recorded by then was stored (acknowledged) before it was recorded.
      const recorded = attemptLogEnd(await this.o.history.read(jobId), opts.attempt).recordedBytes;
      return yield* this.snapshot(jobId, opts.attempt, opts.offset ?? 0, recorded, opts.signal);
    }
    const tail = this.acquire(jobId);
    try {
      return yield* this.follow(tail, opts.attempt, opts.offset ?? 0, opts.signal);
    } finally {
      this.release(tail);
    }
  }

  /**
   * A job's output from (fromAttempt, offset), then every later attempt from its start.
   * With follow it ends once the job is over and its last attempt's log is complete, and
   * returns the job as its history then shows it (for an `end` frame); without follow it
   * returns the job as it stood when the read ended. Null: aborted, or the job does not exist.
   */
  async *job(jobId: string, opts: ReadJobOptions = {}): AsyncGenerator<AttemptPiece, JobView | null> {
    const tail = this.acquire(jobId);
    try {
      let attempt = Math.max(1, opts.fromAttempt ?? 1);
      let offset = opts.offset ?? 0;
      await tail.historyReady(opts.signal);
      for (;;) {
        if (opts.signal?.aborted || this.closed) return null;
        const view = tail.view;
        if (!view) return null;
        // Purged: nothing is served, even while the deletion that follows JobPurged is under way.
        if (view.purged) return view;
        if (!opts.follow && attempt > Math.max(1, view.attempt)) return view;
        const end = opts.follow ? yield* this.follow(tail, attempt, offset, opts.signal) : yield* this.snapshot(tail.jobId, attempt, offset, tail.end(attempt).recordedBytes, opts.signal);
        if (end.reason === 'aborted') return null;
        if (end.reason === 'purged') return tail.view;
        // Which attempt comes next, or whether the job is over: its history decides.
        for (;;) {
          const v = tail.view;
          if (!v) return null;
          if (v.attempt > attempt || !opts.follow) break;
          if (isTerminal(v.status)) return v;
          if (!(await tail.changed(opts.signal))) return null;
        }
        attempt++;
        offset = 0;
      }
    } finally {
      this.release(tail);
    }
  }

  private acquire(jobId: string): JobTail {
    if (this.closed) throw new UnavailableError('the log reader is closed');
    let t = this.tails.get(jobId);
    if (!t) {
      t = new JobTail(jobId, this.o);
      this.tails.set(jobId, t);
    }
    t.users++;
    return t;
  }

  private release(t: JobTail): void {
    if (--t.users > 0) return;
    t.stop();
    if (this.tails.get(t.jobId) === t) this.tails.delete(t.jobId);
  }

  /**
   * What the stream holds of the attempt now, from offset. `recorded`: the attempt's length as
   * its history told before the stream was read (null: none recorded yet); fewer bytes than
   * that is data loss, never a short log that looks whole.
   */
  private async *snapshot(jobId: string, attempt: number, offset: number, recorded: number | null, signal?: AbortSignal): AsyncGenerator<AttemptPiece, AttemptReadEnd> {
    const asm = new LogAssembler(offset);
    const gaps = new GapCheck(this.o, attempt);
    const own = await OwnRead.open(this.o, jobId, 1, signal);
    if (!own) return { reason: 'aborted' };
    try {
      let lastSeq = 0;
      while (!own.caughtUp) {
        const r = await own.next(signal);
        if (r === 'aborted') return { reason: 'aborted' };
        if (r instanceof Error) throw new UnavailableError(`reading the log of job ${jobId} failed: ${r.message}`);
        const before = lastSeq;
        lastSeq = r.seq;
        if (!r.chunk || r.chunk.attempt !== attempt) continue;
        const pieces = asm.push(r.chunk);
        await gaps.check(asm, before);
        for (const p of pieces) {
          this.delivered += p.data.byteLength;
          yield asPiece(p, attempt);
        }
      }
      if (recorded !== null && asm.position < recorded) {
        throw new DataLossError(
          `bytes ${asm.position}–${recorded} of attempt ${attempt} of job ${jobId} are not in the logs stream (never stored, or discarded by its retention)`,
          { attempt, from: asm.position, to: recorded },
        );
      }
      // A live attempt may have a chunk stored late after a gap: what is contiguous is what exists now.
      return { reason: 'complete', bytes: asm.position };
    } finally {
      own.close();
    }
  }

  private async *follow(tail: JobTail, attempt: number, offset: number, signal?: AbortSignal): AsyncGenerator<AttemptPiece, AttemptReadEnd> {
    const asm = new LogAssembler(offset);
    const gaps = new GapCheck(this.o, attempt);
    const me: TailFollower = { taken: 0, wake: null, aborted: false };
    const onAbort = () => {
      me.aborted = true;
      me.wake?.('aborted');
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let lastSeq = 0;
    let own: OwnRead | null = null;
    let ownFailures = 0;
    // Set when the tail cannot show that this follower has everything: read on its own until it catches up.
    let forceOwn = false;
    const closeOwn = () => {
      own?.close();
      own = null;
    };
    try {
      if (!(await tail.historyReady(signal))) return { reason: 'aborted' };
      for (;;) {
        if (signal?.aborted || tail.stopped) return { reason: 'aborted' };
        const end = tail.end(attempt);
        if (end.over) {
          if (end.purged) return { reason: 'purged' };
          if (end.recordedBytes !== null && asm.position >= end.recordedBytes) return { reason: 'complete', bytes: asm.position };
          const d = end.drain;
          if (!d) {
            // The drain point is one request away: wait for it, so that any read opened from here proves what it must.
            if (!(await tail.changed(signal))) return { reason: 'aborted' };
            continue;
          }
          const ownRead = own as OwnRead | null;
          if (lastSeq >= d.seq || (ownRead !== null && ownRead.caughtUp && ownRead.requestedAt > d.at)) {
            if (end.recordedBytes !== null && asm.position < end.recordedBytes) {
              throw new DataLossError(
                `bytes ${asm.position}–${end.recordedBytes} of attempt ${attempt} of job ${tail.jobId} are not in the logs stream (never stored, or discarded by its retention)`,
                { attempt, from: asm.position, to: end.recordedBytes },
              );
            }
            if (asm.heldBytes > 0) gaps.fail(asm);
            return { reason: 'complete', bytes: asm.position };
          }
          // Caught up on a read opened before the drain point: only a read opened after it can show the rest is gone.
          if (ownRead !== null && ownRead.caughtUp) closeOwn();
        } else if (!tail.live) {
          // A live attempt: the shared tail must be reading before any read of our own starts, so the two meet without a gap.
          if (!(await tail.startLive(signal))) return { reason: 'aborted' };
          continue;
        }

        let got: Got;
        const live = tail.live;
        if (!forceOwn && live && live.canServe(lastSeq, own)) {
          closeOwn();
          const next = live.nextAfter(lastSeq, me);
          if (next === 'behind') {
            forceOwn = true;
            continue;
          }
          if (next === null) {
            // Everything the tail holds is ours already: wait at its head for more, or for the history to move.
            const woke = await live.waitAtHead(me, end.over ? this.o.drainCheckMs : undefined);
            if (woke === 'aborted') return { reason: 'aborted' };
            if (woke === 'timeout') {
              live.forget(me);
              forceOwn = true;
            }
            continue;
          }
          got = { seq: next.seq, chunk: next };
        } else {
          live?.forget(me);
          if (!own) {
            own = await OwnRead.open(this.o, tail.jobId, lastSeq + 1, signal, live);
            if (!own) return { reason: 'aborted' };
          }
          const r = await raceNext(own, tail, this.o.ownStallMs, signal);
          if (r === 'aborted') return { reason: 'aborted' };
          if (r === 'changed') continue;
          if (r === 'stalled') {
            // Behind, and nothing came: read again from the last chunk taken (nothing is lost or repeated).
            closeOwn();
            this.stalls++;
            this.o.onStall?.(tail.jobId, lastSeq);
            continue;
          }
          if (r instanceof Error) {
            closeOwn();
            if (++ownFailures > this.o.retries) throw new UnavailableError(`reading the log of job ${tail.jobId} failed: ${r.message}`);
            await sleep(this.o.retryDelayMs * ownFailures, signal);
            continue;
          }
          got = r;
          if ((own as OwnRead).caughtUp) forceOwn = false;
        }
        const before = lastSeq;
        lastSeq = got.seq;
        if (!got.chunk || got.chunk.attempt !== attempt) continue;
        const pieces = asm.push(got.chunk);
        await gaps.check(asm, before);
        for (const p of pieces) {
          this.delivered += p.data.byteLength;
          yield asPiece(p, attempt);
        }
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      closeOwn();
      tail.live?.forget(me);
    }
  }
}

/**
 * A chunk passed whole is itself the piece (it has its attempt): every follower of the job
 * gets the same object, so an edge can encode it once for all of them. A cut piece is new.
 */
const asPiece = (p: LogPiece, attempt: number): AttemptPiece => ('attempt' in p ? (p as AttemptPiece) : { ...p, attempt });

interface Got {
  seq: number;
  /** null: a message on the job's subject that is not a valid chunk (skipped, its sequence counted). */
  chunk: SequencedLogChunk | null;
  /** (own reads) nothing was pending after it when it was delivered. */
  caughtUp?: boolean;
}

export interface SequencedLogChunk extends LogChunk {
  seq: number;
}

/**
 * The next message of an own read, or (once it is caught up) a change of the job's history
 * or tail, whichever comes first; 'stalled' when it is behind and nothing came for stallMs.
 * Nothing long-lived is raced against (a promise that never settles would keep every race's
 * result, and so every chunk, reachable).
 */
async function raceNext(own: OwnRead, tail: JobTail, stallMs: number, signal?: AbortSignal): Promise<Got | 'changed' | 'aborted' | 'stalled' | Error> {
  if (!own.caughtUp) {
    const wait = new AbortController();
    const relay = () => wait.abort();
    signal?.addEventListener('abort', relay, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      wait.abort();
    }, stallMs);
    try {
      const r = await own.next(wait.signal);
      return r === 'aborted' ? (timedOut && !signal?.aborted ? 'stalled' : 'aborted') : r;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', relay);
    }
  }
  // Caught up: a next message may never come; the history (the end of the attempt) or the tail decides.
  const changed = new AbortController();
  const relay = () => changed.abort();
  signal?.addEventListener('abort', relay, { once: true });
  const woke = tail.changed(changed.signal).then((ok) => {
    if (ok) changed.abort();
  });
  try {
    const r = await own.next(changed.signal);
    return r === 'aborted' ? (signal?.aborted ? 'aborted' : 'changed') : r;
  } finally {
    signal?.removeEventListener('abort', relay);
    changed.abort();
    await woke;
  }
}

/** Decides whether a gap in an attempt's offsets is data loss (discarded by retention) or a chunk stored late. */
class GapCheck {
  private checkedAt: number | null = null;

  constructor(
    private readonly o: LogReader['o'],
    private readonly attempt: number,
  ) {}

  async check(asm: LogAssembler, seqBefore: number): Promise<void> {
    if (asm.heldBytes === 0) {
      this.checkedAt = null;
      return;
    }
    if (asm.heldBytes > this.o.maxHeldBytes) this.fail(asm);
    if (this.checkedAt === asm.position) return;
    this.checkedAt = asm.position;
    // Messages after the last one read before the gap are gone: the missing bytes were discarded, not late.
    const info = await retry(this.o, 'reading the logs stream state', () => this.o.jsm.streams.info(STREAMS.logs));
    if (info.state.first_seq > seqBefore + 1) {
      const to = asm.firstHeldOffset ?? asm.position;
      throw new DataLossError(
        `bytes ${asm.position}–${to} of attempt ${this.attempt} were discarded by the logs stream's retention (its byte budget or age) before they could be read`,
        { attempt: this.attempt, from: asm.position, to },
      );
    }
  }

  fail(asm: LogAssembler): never {
    throw new DataLossError(`the log of attempt ${this.attempt} has a gap at byte ${asm.position} that was never filled (bytes up to ${asm.firstHeldOffset} are not stored)`, {
      attempt: this.attempt,
      from: asm.position,
      to: asm.firstHeldOffset,
    });
  }
}

/** One read on an ordered consumer of its own, from a stream sequence, pulled as it is consumed. */
class OwnRead {
  caughtUp: boolean;
  private pending: Promise<Got | Error> | null = null;

  private constructor(
    private readonly messages: ConsumerMessages,
    private readonly iter: AsyncIterator<JsMsg>,
    private readonly remove: () => void,
    numPending: number,
    /** Tick taken before the consumer was asked for: what it delivers includes everything stored before then. */
    readonly requestedAt: number,
    /** The job's shared tail that had started when this read was asked for: catching up means meeting it. */
    readonly afterLive: LiveTail | null,
  ) {
    this.caughtUp = numPending === 0;
  }

  static async open(o: LogReader['o'], jobId: string, startSeq: number, signal?: AbortSignal, afterLive: LiveTail | null = null): Promise<OwnRead | null> {
    if (signal?.aborted) return null;
    const requestedAt = tick();
    const consumer = await retry(o, `opening a reader of the log of job ${jobId}`, () =>
      o.js.consumers.get(STREAMS.logs, { filter_subjects: subjects.logs(jobId), opt_start_seq: Math.max(1, startSeq) }),
    );
    o.onConsumer?.('own');
    const remove = () => void consumer.delete().catch(() => undefined);
    const numPending = (await consumer.info(true)).num_pending;
    const messages = await consumer.consume({ max_messages: o.pullMessages });
    return new OwnRead(messages, messages[Symbol.asyncIterator](), remove, numPending, requestedAt, afterLive);
  }

  /**
   * The next message (it waits for one when caught up), or 'aborted' when the signal fires
   * first; the message is then kept for the next call.
   */
  next(signal?: AbortSignal): Promise<Got | Error | 'aborted'> {
    this.pending ??= this.iter.next().then(
      (r): Got | Error => {
        if (r.done) return new Error('the consumer stopped');
        const m = r.value;
        return { seq: m.seq, chunk: decodeChunk(m), caughtUp: m.info.pending === 0 };
      },
      (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
    );
    const pending = this.pending;
    const taken = (r: Got | Error): Got | Error => {
      this.pending = null;
      if (!(r instanceof Error)) this.caughtUp = r.caughtUp === true;
      return r;
    };
    if (!signal) return pending.then(taken);
    if (signal.aborted) return Promise.resolve('aborted');
    return new Promise((resolve) => {
      const onAbort = () => resolve('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      void pending.then((r) => {
        signal.removeEventListener('abort', onAbort);
        // Taken only by the call that is still waiting for it; an aborted call leaves it for the next.
        if (!signal.aborted) resolve(taken(r));
      });
    });
  }

  close(): void {
    void this.messages.close();
    this.remove();
  }
}

function decodeChunk(m: JsMsg): SequencedLogChunk | null {
  const c = decodeLogChunk(m);
  return c ? { ...c, seq: m.seq } : null;
}

interface TailFollower {
  /** The sequence of the last chunk this follower took from the tail. */
  taken: number;
  /** Ends its wait at the tail's head, when it waits there. */
  wake: ((r: 'woke' | 'aborted' | 'timeout') => void) | null;
  aborted: boolean;
}

interface Drain {
  /** The job's last chunk in the stream when the attempt was known to be over (0: none). */
  seq: number;
  /** When that answer came. */
  at: number;
}

interface TailEnd extends AttemptLogEnd {
  drain: Drain | null;
}

/**
 * Everything shared by the reads of one job in this reader: its history (read once per
 * change), the drain points of its attempts, and, while some attempt is live, the live tail.
 */
class JobTail {
  users = 0;
  stopped = false;
  live: LiveTail | null = null;
  view: JobView | null = null;
  private events: readonly JobEvent[] | null = null;
  private readonly ends = new Map<number, TailEnd>();
  private readonly drains = new Map<number, Drain | 'pending'>();
  private waiters = new Set<() => void>();
  private readonly unsubscribe: () => void;
  private readonly refresh: ReturnType<typeof setInterval>;
  private loading: Promise<void> | null = null;
  private reloadAgain = false;
  private firstLoad: Promise<void>;
  private liveStarting: Promise<void> | null = null;

  constructor(
    readonly jobId: string,
    private readonly o: LogReader['o'],
  ) {
    this.unsubscribe = o.history.onChange(jobId, () => this.reload());
    this.refresh = setInterval(() => this.reload(), o.historyRefreshMs);
    this.refresh.unref?.();
    this.firstLoad = this.reload();
  }

  /** Resolves true once the history was read once (false if aborted or stopped first). */
  async historyReady(signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      if (this.events) return true;
      if (this.stopped || signal?.aborted) return false;
      await abortable(this.firstLoad, signal);
      if (!this.events) {
        // The first read failed: the history is read again on the next nudge or refresh.
        this.firstLoad = new Promise<void>((resolve) => {
          const w = () => {
            this.waiters.delete(w);
            resolve();
          };
          this.waiters.add(w);
        });
      }
    }
  }

  /** The end of an attempt as the history shows it; asks for its drain point once it is over. */
  end(attempt: number): TailEnd {
    let e = this.ends.get(attempt);
    if (!e) {
      const base = attemptLogEnd(this.events ?? [], attempt);
      // Past the last attempt of a finished job: that attempt will never run.
      const never = this.view !== null && isTerminal(this.view.status) && attempt > this.view.attempt;
      e = { ...base, over: base.over || never, drain: null };
      this.ends.set(attempt, e);
    }
    if (e.over && !e.drain) {
      const d = this.drains.get(attempt);
      if (d === undefined) this.lookUpDrain(attempt);
      else if (d !== 'pending') e.drain = d;
    }
    return e;
  }

  /** Resolves true at the next change (history, drain point, chunk, eviction), false when aborted or stopped. */
  changed(signal?: AbortSignal): Promise<boolean> {
    if (this.stopped) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (v: boolean) => {
        this.waiters.delete(w);
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const w = () => done(!this.stopped);
      const onAbort = () => done(false);
      this.waiters.add(w);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Starts the live tail once (resolves false if aborted or stopped first; retries failures). */
  async startLive(signal?: AbortSignal): Promise<boolean> {
    if (this.live) return true;
    this.liveStarting ??= (async () => {
      for (let failures = 0; !this.stopped; failures++) {
        try {
          const last = await lastSeqOf(this.o, this.jobId);
          if (this.stopped) return;
          this.live = await LiveTail.start(this.o, this.jobId, last + 1, () => this.wake(), () => {
            // The tail's consumer failed: its followers read on their own; a later follower starts another.
            this.live = null;
            this.liveStarting = null;
            this.wake();
          });
          if (this.stopped) this.live.stop();
          this.wake();
          return;
        } catch {
          await sleep(this.o.retryDelayMs * Math.min(failures + 1, 8));
        }
      }
    })();
    await abortable(this.liveStarting, signal);
    return this.live !== null && !signal?.aborted && !this.stopped;
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribe();
    clearInterval(this.refresh);
    this.live?.stop();
    this.live = null;
    this.wake();
  }

  /** Wakes every read waiting on this job: for a change (`changed()`) or at the live tail's head. */
  wake(): void {
    const ws = this.waiters;
    this.waiters = new Set();
    for (const w of ws) w();
    this.live?.wakeHead();
  }

  private reload(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.loading) {
      // A change during a read: read once more after it, so the last change is never missed.
      this.reloadAgain = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.reloadAgain = false;
        try {
          const events = await this.o.history.read(this.jobId);
          if (this.stopped) return;
          if (!this.events || events.length !== this.events.length) {
            this.events = events;
            this.view = events.reduce<JobView | null>((v, e) => evolveJobView(v, e), null);
            this.ends.clear();
            this.wake();
          }
        } catch {
          // The store did not answer: the next nudge or refresh reads again; followers keep reading bytes meanwhile.
        }
      } while (this.reloadAgain && !this.stopped);
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  private lookUpDrain(attempt: number): void {
    this.drains.set(attempt, 'pending');
    void (async () => {
      for (let failures = 0; !this.stopped; failures++) {
        try {
          const seq = await lastSeqOf(this.o, this.jobId);
          this.drains.set(attempt, { seq, at: tick() });
          this.ends.delete(attempt);
          this.wake();
          return;
        } catch {
          await sleep(this.o.retryDelayMs * Math.min(failures + 1, 8));
        }
      }
    })();
  }
}

/**
 * The live chunks of one job, read once from where the job's log stood when it started,
 * kept in a window for its followers.
 */
class LiveTail {
  /** Every chunk of the job with seq >= coveredFrom is in the window or not read yet. */
  coveredFrom: number;
  readonly startedFrom: number;
  bytes = 0;
  private readonly window: SequencedLogChunk[] = [];
  private head = 0;
  /** Bytes of window chunks no follower has taken yet (the read-ahead). */
  private aheadBytes = 0;
  private aheadIdx = 0;
  private readonly followers = new Set<TailFollower>();
  private headWaiters = new Set<TailFollower>();
  private atHead = new Set<TailFollower>();
  private resumeReading: (() => void) | null = null;
  private stopped = false;

  private constructor(
    private readonly o: LogReader['o'],
    private readonly messages: ConsumerMessages,
    private readonly remove: () => void,
    startSeq: number,
    private readonly onChange: () => void,
    private readonly onFailed: () => void,
  ) {
    this.coveredFrom = startSeq;
    this.startedFrom = startSeq;
    void this.run();
  }

  static async start(o: LogReader['o'], jobId: string, startSeq: number, onChange: () => void, onFailed: () => void): Promise<LiveTail> {
    const consumer = await retry(o, `opening the live tail of job ${jobId}`, () =>
      o.js.consumers.get(STREAMS.logs, { filter_subjects: subjects.logs(jobId), opt_start_seq: startSeq }),
    );
    o.onConsumer?.('tail');
    const messages = await consumer.consume({ max_messages: o.pullMessages });
    return new LiveTail(o, messages, () => void consumer.delete().catch(() => undefined), startSeq, onChange, onFailed);
  }

  /**
   * Whether this tail holds or will hold every chunk after lastSeq: lastSeq reached the
   * covered part, or an own read opened after the tail started caught up (so nothing lies
   * between them) and nothing was evicted since the start.
   */
  canServe(lastSeq: number, own: OwnRead | null): boolean {
    if (this.stopped) return false;
    if (lastSeq >= this.coveredFrom - 1) return true;
    return own !== null && own.afterLive === this && own.caughtUp && this.coveredFrom === this.startedFrom;
  }

  /** The first chunk after seq; null when there is none yet; 'behind' when it was evicted. */
  nextAfter(seq: number, f: TailFollower): SequencedLogChunk | null | 'behind' {
    if (seq + 1 < this.coveredFrom) {
      this.forget(f);
      return 'behind';
    }
    this.followers.add(f);
    // Binary search: the window is in sequence order.
    let lo = this.head;
    let hi = this.window.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.window[mid].seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.window.length) return null;
    const c = this.window[lo];
    f.taken = c.seq;
    if (lo >= this.aheadIdx) {
      for (let i = this.aheadIdx; i <= lo; i++) this.aheadBytes -= this.window[i].data.byteLength;
      this.aheadIdx = lo + 1;
      this.resumeReading?.();
    }
    return c;
  }

  /** Waits at the head until a new chunk comes, the tail changes, or the timeout passes. */
  waitAtHead(f: TailFollower, timeoutMs: number | undefined): Promise<'woke' | 'aborted' | 'timeout'> {
    if (this.stopped) return Promise.resolve('woke');
    if (f.aborted) return Promise.resolve('aborted');
    this.followers.add(f);
    this.headWaiters.add(f);
    this.resumeReading?.();
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      // No listener on the follower's signal per wait (10,000 followers wait at every chunk): its one listener calls f.wake.
      f.wake = (r) => {
        f.wake = null;
        this.atHead.delete(f);
        this.headWaiters.delete(f);
        clearTimeout(timer);
        resolve(r);
      };
      this.atHead.add(f);
      if (timeoutMs !== undefined) timer = setTimeout(() => f.wake?.('timeout'), timeoutMs);
    });
  }

  forget(f: TailFollower): void {
    this.followers.delete(f);
    this.headWaiters.delete(f);
    this.atHead.delete(f);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    void this.messages.close();
    this.remove();
    this.resumeReading?.();
    this.wakeHead();
  }

  wakeHead(): void {
    const ws = this.atHead;
    this.atHead = new Set();
    for (const f of ws) f.wake?.('woke');
  }

  private async run(): Promise<void> {
    try {
      for await (const m of this.messages) {
        if (this.stopped) break;
        const chunk = decodeChunk(m);
        if (chunk) {
          this.window.push(chunk);
          this.bytes += chunk.data.byteLength;
          this.aheadBytes += chunk.data.byteLength;
        } else {
          // Not a chunk: nothing to deliver, but followers must count past its sequence.
          this.window.push({ jobId: '', attempt: 0, stream: 'stdout', offset: 0, data: new Uint8Array(0), seq: m.seq });
        }
        this.evict();
        // Wakes the followers at the head and the reads waiting for a change of this job.
        this.onChange();
        // Read further only for a follower waiting at the head, or to keep a little ahead of the fastest.
        while (!this.stopped && this.headWaiters.size === 0 && this.aheadBytes >= this.o.readAheadBytes) {
          await new Promise<void>((resolve) => (this.resumeReading = resolve));
          this.resumeReading = null;
        }
      }
    } catch {
      // The consumer failed: its followers carry on reading on their own.
    }
    if (!this.stopped) {
      this.stop();
      this.onFailed();
    }
  }

  /** Drops chunks every follower of the tail has taken, then the oldest while over the window size. */
  private evict(): void {
    if (this.bytes > this.o.readAheadBytes) {
      let min = Infinity;
      for (const f of this.followers) if (f.taken < min) min = f.taken;
      if (min === Infinity) min = this.aheadIdx > this.head ? this.window[this.aheadIdx - 1].seq : 0;
      while (this.head < this.aheadIdx && this.window[this.head].seq <= min) this.dropOldest();
    }
    while (this.bytes > this.o.windowBytes && this.head < this.window.length - 1) this.dropOldest();
    if (this.head > 256 && this.head * 2 > this.window.length) {
      this.window.splice(0, this.head);
      this.aheadIdx -= this.head;
      this.head = 0;
    }
  }

  private dropOldest(): void {
    const c = this.window[this.head];
    this.bytes -= c.data.byteLength;
    if (this.head >= this.aheadIdx) {
      this.aheadBytes -= c.data.byteLength;
      this.aheadIdx = this.head + 1;
    }
    this.coveredFrom = c.seq + 1;
    // Let go of the bytes now: until the array is compacted, its slot would keep them (and the NATS buffer under them) alive.
    this.window[this.head] = EVICTED;
    this.head++;
  }
}

/** What an evicted slot of a tail's window holds until the window is compacted (never read: slots before `head`). */
const EVICTED: SequencedLogChunk = { jobId: '', attempt: 0, stream: 'stdout', offset: 0, data: new Uint8Array(0), seq: 0 };

/** The stream sequence of the job's last chunk (0 when it has none). */
async function lastSeqOf(o: LogReader['o'], jobId: string): Promise<number> {
  return retry(o, `finding the last chunk of job ${jobId}`, async () => {
    try {
      const m = await o.jsm.streams.getMessage(STREAMS.logs, { last_by_subj: subjects.logs(jobId) });
      return m?.seq ?? 0;
    } catch (err) {
      if (isNoMessage(err)) return 0;
      throw err;
    }
  });
}

function isNoMessage(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string; code?: unknown };
  return e?.api_error?.err_code === 10037 || /no message found/i.test(String(e?.message));
}

/** A JetStream request, retried on failure with a growing pause; the last failure becomes UNAVAILABLE. */
async function retry<T>(o: LogReader['o'], what: string, fn: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let i = 0; i < o.retries; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      if (i + 1 < o.retries) await sleep(o.retryDelayMs * (i + 1));
    }
  }
  throw new UnavailableError(`${what} failed after ${o.retries} tries: ${last instanceof Error ? last.message : String(last)}`);
}

function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T | 'aborted'> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve('aborted');
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
