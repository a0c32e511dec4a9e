import { createInbox, headers, NoRespondersError, RequestError, TimeoutError } from '@nats-io/nats-core';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { encodeLogChunk, subjects, type LogStream } from '../../../../libs/contracts/src';
import type { LogHasher } from './log-hasher';

/** One slice of an attempt's output, ready to publish. */
export interface OutChunk {
  stream: LogStream;
  /** Bytes of this attempt (stdout and stderr together) emitted before this chunk. */
  offset: number;
  data: Uint8Array;
}

/** Publishes one chunk; resolves once it is durably stored (e.g. the JetStream ack). */
export type ChunkSink = (chunk: OutChunk) => Promise<unknown>;

export interface LogBatcherOptions {
  sink: ChunkSink;
  /** A stream's buffer is emitted once it holds this many bytes; no chunk is larger (default 64 KiB, keep it below the server's max_payload). */
  chunkBytes?: number;
  /** Buffered output is emitted at the latest this long after it arrived (default 10 ms). */
  flushMs?: number;
  /** Chunks awaiting their ack before writers are held back (default 32): bounds memory to about maxInFlight × chunkBytes. */
  maxInFlight?: number;
  /** Extra tries of a chunk whose publish failed (default 3), spaced by retryDelayMs × try (default 100 ms, at most 1 s). */
  retries?: number;
  retryDelayMs?: number;
  /**
   * A chunk whose publish failed because the bus did not answer (`isOutage`: a timeout, no
   * responders while JetStream starts again) is tried again for this long after its first try
   * (default 5 min), however many tries that takes: a nats-server restart must not cost the log.
   * Meanwhile the writers are held back (maxInFlight), so the job's output waits in its pipes.
   */
  outageMs?: number;
  /** Whether a publish error means the bus is down or restarting (default busUnavailable). */
  isOutage?: (err: unknown) => boolean;
  /** Once aborted (the executor stopping), chunks no longer wait through an outage: they get their retries only, so a stop is not held for outageMs. */
  stopWaiting?: AbortSignal;
  /** Fed every chunk as it is emitted (offset order): the digest of exactly the bytes the log stream holds. */
  hasher?: LogHasher;
}

export const LOG_BATCHER_DEFAULTS = { chunkBytes: 128 * 1024, flushMs: 10, maxInFlight: 32, retries: 3, retryDelayMs: 100, outageMs: 300_000 } as const;

/** The longest pause between two tries of a chunk. */
const MAX_RETRY_DELAY_MS = 1000;

/**
 * A publish error that says the bus is down or not back yet, not that it refused the chunk: a
 * request timeout (the connection is down, or the server died with the request unanswered:
 * nats.js drops what it buffered while disconnected), no responders (the server is up and
 * JetStream is not yet), a disconnection. Looked for in the error and its causes.
 */
export function busUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof TimeoutError || e instanceof NoRespondersError) return true;
    if (e instanceof RequestError && (e.isNoResponders() || /disconnect/i.test(e.message))) return true;
  }
  return false;
}

interface Pending {
  parts: Uint8Array[];
  size: number;
}

/**
 * Batches one attempt's stdout and stderr into chunks with byte offsets shared by both
 * streams, emitted in order. Chunks are emitted (and so published) in offset order;
 * a chunk that needs a retry may be stored after a later one, which its offset reveals.
 * Binary-safe: bytes are never decoded.
 */
export class LogBatcher {
  private readonly o: Required<Omit<LogBatcherOptions, 'sink' | 'hasher' | 'isOutage' | 'stopWaiting'>> & { sink: ChunkSink; hasher?: LogHasher; isOutage: (err: unknown) => boolean; stopWaiting?: AbortSignal };
  private readonly pending: Record<LogStream, Pending> = { stdout: { parts: [], size: 0 }, stderr: { parts: [], size: 0 } };
  private emitted = 0;
  private inFlight = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private failure: unknown;
  private digest: string | undefined;

  constructor(options: LogBatcherOptions) {
    this.o = { ...LOG_BATCHER_DEFAULTS, isOutage: busUnavailable, ...options };
    if (!(this.o.chunkBytes > 0) || !(this.o.maxInFlight > 0)) throw new Error('chunkBytes and maxInFlight must be positive');
  }

  /** Bytes handed to the sink so far (after flush(): the attempt's whole output). */
  get bytes(): number {
    return this.emitted;
  }

  /**
   * After a flush() that stored every chunk: the sha256 (hex) of the whole log, stdout and
   * stderr in offset order; undefined without a hasher, while output is buffered or unacknowledged,
   * or when a chunk could not be stored. Read it once the attempt's output has ended.
   */
  get sha256(): string | undefined {
    if (!this.o.hasher || this.inFlight > 0 || this.pending.stdout.size > 0 || this.pending.stderr.size > 0 || this.failure !== undefined) return undefined;
    this.digest ??= this.o.hasher.hex();
    return this.digest;
  }

  /**
   * Buffers output. Returns a promise when too many chunks await their ack: a reader
   * awaits it before reading more, so a fast producer is held back by the pipe.
   */
  write(stream: LogStream, data: Uint8Array): Promise<void> | undefined {
    if (data.length > 0) {
      const p = this.pending[stream];
      p.parts.push(data);
      p.size += data.length;
      if (p.size >= this.o.chunkBytes) this.emit(stream);
      else if (this.timer === undefined) this.timer = setTimeout(() => this.emitAll(), this.o.flushMs);
    }
    if (this.inFlight < this.o.maxInFlight) return undefined;
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /**
   * Emits what is buffered now, without waiting for its ack, and returns the offset the next
   * byte written will have: a boundary (a step's marker) placed after everything before it, on
   * both streams, and before everything after it.
   */
  cut(): number {
    this.emitAll();
    return this.emitted;
  }

  /** Emits what is buffered; resolves once every chunk is stored, rejects if one could not be. */
  flush(): Promise<void> {
    this.emitAll();
    const settled = this.inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    return settled.then(() => {
      if (this.failure !== undefined) throw this.failure;
    });
  }

  private emitAll(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.emit('stdout');
    this.emit('stderr');
  }

  private emit(stream: LogStream): void {
    const p = this.pending[stream];
    if (p.size === 0) return;
    const { parts, size } = p;
    p.parts = [];
    p.size = 0;
    const max = this.o.chunkBytes;
    if (parts.length === 1 && size <= max) {
      this.send(stream, parts[0]);
      return;
    }
    // Cut the buffered parts into chunks of at most chunkBytes, copying only across part boundaries.
    let remaining = size;
    let i = 0;
    let at = 0;
    while (remaining > 0) {
      const len = Math.min(max, remaining);
      const head = parts[i];
      if (head.length - at >= len) {
        this.send(stream, head.subarray(at, at + len));
        at += len;
      } else {
        const out = new Uint8Array(len);
        let filled = 0;
        while (filled < len) {
          const part = parts[i];
          const n = Math.min(part.length - at, len - filled);
          out.set(part.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (at === part.length) {
            i++;
            at = 0;
          }
        }
        this.send(stream, out);
      }
      if (i < parts.length && at === parts[i].length) {
        i++;
        at = 0;
      }
      remaining -= len;
    }
  }

  private send(stream: LogStream, data: Uint8Array): void {
    const chunk: OutChunk = { stream, offset: this.emitted, data };
    this.o.hasher?.update(data);
    this.emitted += data.length;
    this.inFlight++;
    this.publish(chunk).finally(() => this.settled());
  }

  private async publish(chunk: OutChunk): Promise<void> {
    const first = performance.now();
    for (let tries = 0; ; tries++) {
      try {
        await this.o.sink(chunk);
        return;
      } catch (err) {
        // Through an outage the chunk waits for the bus (within outageMs); a refusal gets `retries` tries.
        const waiting = this.o.isOutage(err) && performance.now() - first < this.o.outageMs && !this.o.stopWaiting?.aborted;
        if (!waiting && tries >= this.o.retries) {
          this.failure ??= err;
          return;
        }
        await new Promise((r) => setTimeout(r, Math.min(MAX_RETRY_DELAY_MS, this.o.retryDelayMs * (tries + 1))));
      }
    }
  }

  private settled(): void {
    this.inFlight--;
    if (this.inFlight < this.o.maxInFlight && this.roomWaiters.length > 0) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of waiters) w();
    }
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

/** Where the owner's copy of each chunk goes: `jobline.owner.<owner>.logs.<jobId>` over core NATS. */
export interface OwnerLogCopy {
  /** With `subscribe`, copies nobody listens to are mostly not sent (see OwnerLogInterest); with `publish` only, every one is. */
  nc: Pick<NatsConnection, 'publish'> & Partial<Pick<NatsConnection, 'subscribe'>>;
  owner: string;
}

/** How long an owner's log subject that has no subscriber gets no copies before one is sent again (default). */
export const OWNER_COPY_QUIET_MS = 250;

/**
 * Whether an owner's log subject has a subscriber, as the nats-server tells: each copy is
 * published with a reply subject on one inbox of the executor's connection, and a copy that
 * reaches no subscriber is answered at once with a 503 status ("no responders"). After a 503,
 * that subject gets no copies for quietMs, then the next chunk's copy goes out again (and with
 * it the question). So a job nobody follows on its owner's subject costs one copy every
 * quietMs instead of every byte written twice to the socket (and read twice by the server);
 * a subscriber that was there before the job's first chunk receives every copy (no 503 comes),
 * one that subscribes while the job runs receives the copies from at most about quietMs later.
 * Fails open to the old behaviour: without an answer (a server or client without no-responders,
 * the inbox subscription refused), every copy is sent. Subscribers see the reply subject; they
 * cannot publish to it (the services' inbox).
 */
export class OwnerLogInterest {
  private sub: { unsubscribe(): void } | null = null;
  private prefix: string | null = null;
  private failed = false;
  private next = 0;
  /** quiet-until (clock ms) by reply token, set by a 503. */
  private readonly quiet = new Map<string, number>();

  constructor(
    private readonly nc: Pick<NatsConnection, 'subscribe'>,
    private readonly quietMs = OWNER_COPY_QUIET_MS,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** A reply token for one owner subject (one per sink), or null when interest cannot be asked. */
  token(): string | null {
    if (!this.open()) return null;
    return String(this.next++);
  }

  /** The reply subject of that token's copies. */
  replyTo(token: string): string {
    return `${this.prefix}.${token}`;
  }

  /** Send this token's next copy? False only while a 503 said nobody listened, for quietMs. */
  wanted(token: string): boolean {
    const until = this.quiet.get(token);
    if (until === undefined) return true;
    if (this.clock() < until) return false;
    this.quiet.delete(token);
    return true;
  }

  private open(): boolean {
    if (this.failed) return false;
    if (this.sub) return true;
    try {
      const inboxPrefix = (this.nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
      const prefix = `${createInbox(inboxPrefix)}.ownerlogs`;
      this.sub = this.nc.subscribe(`${prefix}.*`, { callback: (err, m) => (err ? this.fail() : this.answer(m)) });
      this.prefix = prefix;
      return true;
    } catch {
      this.failed = true;
      return false;
    }
  }

  private answer(m: Msg): void {
    if (m.headers?.code !== 503) return;
    const token = m.subject.slice(this.prefix!.length + 1);
    const now = this.clock();
    // Tokens of ended attempts are dropped once their quiet time is over.
    if (this.quiet.size >= 4096) for (const [t, until] of this.quiet) if (until <= now) this.quiet.delete(t);
    this.quiet.set(token, now + this.quietMs);
  }

  private fail(): void {
    // Refused or closed: every copy is sent again from now on.
    this.failed = true;
    this.quiet.clear();
    try {
      this.sub?.unsubscribe();
    } catch {
      // already closed
    }
    this.sub = null;
  }
}

/** One OwnerLogInterest per connection, shared by the sinks of its attempts. */
const interests = new WeakMap<object, OwnerLogInterest>();

export function ownerLogInterest(nc: OwnerLogCopy['nc']): OwnerLogInterest | null {
  if (typeof nc.subscribe !== 'function') return null;
  let i = interests.get(nc);
  if (!i) {
    i = new OwnerLogInterest(nc as Pick<NatsConnection, 'subscribe'>);
    interests.set(nc, i);
  }
  return i;
}

/**
 * A sink publishing to `jobline.logs.<jobId>` through the one chunk codec of the contracts
 * (the readers decode with the same one). The message id makes a retried chunk that was in
 * fact stored a no-op. Once a chunk is stored, the same payload and headers (Nats-Msg-Id
 * included) go to its owner's subject over core NATS, live only and not stored, for
 * integration users limited to `jobline.owner.<owner>.>`; while that subject has no
 * subscriber, mostly not (OwnerLogInterest).
 */
export function jetStreamLogSink(js: JetStreamClient, jobId: string, attempt: number, ownerCopy?: OwnerLogCopy, trace?: Readonly<Record<string, string>> | null, interest?: OwnerLogInterest | null): ChunkSink {
  const ownerSubject = ownerCopy ? subjects.ownerLogs(ownerCopy.owner, jobId) : null;
  const asked = ownerCopy ? (interest === undefined ? ownerLogInterest(ownerCopy.nc) : interest) : null;
  let token: string | null | undefined;
  // The attempt's trace context, computed once per attempt: every chunk carries it, at no cost when tracing is off.
  const traceEntries = trace ? Object.entries(trace) : null;
  return async (chunk) => {
    const e = encodeLogChunk({ jobId, attempt, ...chunk });
    const h = headers();
    for (const [k, v] of Object.entries(e.headers)) h.set(k, v);
    if (traceEntries) for (const [k, v] of traceEntries) h.set(k, v);
    const ack = await js.publish(e.subject, e.payload, { headers: h, msgID: e.msgId });
    if (ownerCopy && ownerSubject) {
      if (token === undefined) token = asked ? asked.token() : null;
      if (token !== null && !asked!.wanted(token)) return ack;
      const copy = headers();
      for (const [k, v] of Object.entries(e.headers)) copy.set(k, v);
      copy.set('Nats-Msg-Id', e.msgId);
      try {
        ownerCopy.nc.publish(ownerSubject, e.payload, token !== null ? { headers: copy, reply: asked!.replyTo(token) } : { headers: copy });
      } catch {
        // Live-only and best effort: the chunk is stored, so retrying it (the sink's failure) would only repeat it.
      }
    }
    return ack;
  };
}
