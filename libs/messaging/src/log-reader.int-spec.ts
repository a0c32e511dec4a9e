import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { STREAMS, subjects, encodeJobEvent, encodeLogChunk, jobStreamName, parseJobSpec, type JobView, type LogChunk, type LogStream } from '../../contracts/src';
import { decide, fold, type JobCommand } from '../../domain/src';
import { decodeJobEvent } from '../../contracts/src';
import { SqliteEventStore } from '../../event-store/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { LogReader, eventStoreHistory, type AttemptPiece, type AttemptReadEnd, type LogReaderOptions } from './log-reader';
import { JetStreamPublisher } from './publisher';
import { ensureStreams } from './streams';

/**
 * The log reader against a real nats-server (JetStream) and a real SQLite event store: the
 * histories are made by the real decider, the chunks are published as the executor does.
 */
describe('LogReader (real nats-server, SQLite history)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: JetStreamPublisher;
  let store: SqliteEventStore;
  const listeners = new Map<string, Set<() => void>>();
  const readers: LogReader[] = [];
  let consumers: { tail: number; own: number };

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'log-reader-test' });
    jsm = await jetstreamManager(nc);
    await ensureStreams(jsm);
    js = jetstream(nc);
    publisher = new JetStreamPublisher(js);
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
  });
  afterAll(async () => {
    for (const r of readers) r.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });
  beforeEach(() => {
    consumers = { tail: 0, own: 0 };
  });

  function reader(o: Partial<LogReaderOptions> = {}): LogReader {
    const history = eventStoreHistory(store, (jobId, l) => {
      let set = listeners.get(jobId);
      if (!set) listeners.set(jobId, (set = new Set()));
      set.add(l);
      return () => set.delete(l);
    });
    const r = new LogReader({ js, jsm, history, onConsumer: (k) => consumers[k]++, retryDelayMs: 50, ...o });
    readers.push(r);
    return r;
  }

  /** Records a command the way the orchestrator does (fold, decide, append at the expected revision), then nudges the readers. */
  async function record(jobId: string, command: JobCommand): Promise<void> {
    const recorded = await store.readStream(jobStreamName(jobId));
    const events = decide(command, fold(recorded.map((r) => decodeJobEvent(r))));
    const now = new Date().toISOString();
    await store.appendToStream(
      jobStreamName(jobId),
      events.map((e) => encodeJobEvent(e, { id: randomUUID(), jobId, occurredAt: now, actor: 'test', causationId: null, correlationId: jobId })),
      recorded.length ? recorded.length - 1 : 'no_stream',
    );
    for (const l of listeners.get(jobId) ?? []) l();
  }

  const now = () => new Date().toISOString();
  async function submitAndStart(opts: { retry?: boolean } = {}): Promise<string> {
    const jobId = randomUUID();
    const parsed = parseJobSpec({ command: ['true'], ...(opts.retry ? { retry: { maxAttempts: 2, backoffSeconds: 0 } } : {}) });
    if (!parsed.ok) throw new Error('bad spec');
    await record(jobId, { type: 'SubmitJob', data: { jobId, owner: 'test', spec: parsed.value, now: now() } });
    await start(jobId, 1);
    return jobId;
  }
  async function start(jobId: string, attempt: number): Promise<void> {
    await record(jobId, { type: 'DispatchJob', data: { attempt, executorId: 'ex-1', now: now() } });
    await record(jobId, { type: 'RecordStarted', data: { attempt, executorId: 'ex-1', startedAt: now(), sandbox: 'none' } });
  }
  const finish = (jobId: string, attempt: number, logBytes: number, exitCode = 0) =>
    record(jobId, { type: 'RecordFinished', data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 1, finishedAt: now(), usage: null, logBytes } });

  /** `n` chunks of `size` bytes from byte `from`: byte i of the attempt is (i * 7 + attempt) mod 251. */
  function chunks(jobId: string, attempt: number, from: number, n: number, size: number): LogChunk[] {
    return Array.from({ length: n }, (_, k) => {
      const offset = from + k * size;
      const stream: LogStream = k % 3 === 2 ? 'stderr' : 'stdout';
      return { jobId, attempt, stream, offset, data: Uint8Array.from({ length: size }, (_, i) => ((offset + i) * 7 + attempt) % 251) };
    });
  }
  const expected = (attempt: number, from: number, to: number) => Buffer.from(Uint8Array.from({ length: to - from }, (_, i) => ((from + i) * 7 + attempt) % 251));
  const write = (cs: LogChunk[]) => publisher.publishMany(cs.map(encodeLogChunk));

  /** Reads to the end; checks offsets are contiguous from `from`. */
  async function collect(gen: AsyncGenerator<AttemptPiece, AttemptReadEnd | JobView | null>, from = 0, onPiece?: () => Promise<void>) {
    const parts: Buffer[] = [];
    let next = from;
    let attempt = 0;
    for (;;) {
      const r = await gen.next();
      if (r.done) return { bytes: Buffer.concat(parts), end: r.value, attempt };
      const p = r.value;
      if (p.attempt !== attempt) {
        attempt = p.attempt;
        next = p.offset;
      }
      expect(p.offset).toBe(next);
      next += p.data.length;
      parts.push(Buffer.from(p.data));
      await onPiece?.();
    }
  }

  /** Consumers on the logs stream reading this job's subject. */
  const logConsumers = async (jobId: string) => {
    let n = 0;
    for await (const ci of jsm.consumers.list(STREAMS.logs)) if (ci.config.filter_subject === subjects.logs(jobId)) n++;
    return n;
  };

  it('a finished attempt: every stored byte from an offset, then complete at the recorded length, on one consumer', async () => {
    const jobId = await submitAndStart();
    await write(chunks(jobId, 1, 0, 10, 1000));
    await finish(jobId, 1, 10_000);
    const r = reader();
    const got = await collect(r.attempt(jobId, { attempt: 1, offset: 2500, follow: true }), 2500);
    expect(got.bytes.equals(expected(1, 2500, 10_000))).toBe(true);
    expect(got.end).toEqual({ reason: 'complete', bytes: 10_000 });
    expect(consumers).toEqual({ tail: 0, own: 1 });
    const snap = await collect(r.attempt(jobId, { attempt: 1 }));
    expect(snap.bytes.equals(expected(1, 0, 10_000))).toBe(true);
    expect(r.stats().tails).toBe(0);
  });

  it('followers that join before any output share one live tail and open nothing of their own', async () => {
    const jobId = await submitAndStart();
    const r = reader();
    const runs = Array.from({ length: 20 }, () => collect(r.attempt(jobId, { attempt: 1, follow: true })));
    await eventuallyTrue(() => r.stats().liveTails === 1);
    for (let i = 0; i < 10; i++) await write(chunks(jobId, 1, i * 5 * 333, 5, 333));
    await finish(jobId, 1, 50 * 333);
    for (const got of await Promise.all(runs)) {
      expect(got.bytes.equals(expected(1, 0, 50 * 333))).toBe(true);
      expect(got.end).toEqual({ reason: 'complete', bytes: 50 * 333 });
    }
    expect(consumers).toEqual({ tail: 1, own: 0 });
    await eventuallyTrue(async () => (await logConsumers(jobId)) === 0);
  });

  it('late, stalled and offset followers of a live job: every byte once each, one shared tail', async () => {
    const jobId = await submitAndStart();
    // A small window, so that followers which stop taking fall out of it.
    const r = reader({ windowBytes: 20_000, readAheadBytes: 4_000 });
    const size = 1000;
    const total = 200;
    let allWritten!: () => void;
    const written = new Promise<void>((resolve) => (allWritten = resolve));
    await write(chunks(jobId, 1, 0, 30, size));
    const runs: Promise<{ bytes: Buffer; end: unknown }>[] = [];
    const from: number[] = [];
    const follower = (offset: number, stalls: boolean) => {
      from.push(offset);
      let pieces = 0;
      // A stalled follower takes one piece, then nothing until every chunk is written (200 KB past it).
      runs.push(collect(r.attempt(jobId, { attempt: 1, offset, follow: true }), offset, stalls ? () => (++pieces === 1 ? written : Promise.resolve()) : undefined));
    };
    follower(0, false);
    follower(0, true);
    follower(12_345, false);
    for (let i = 30; i < total; i += 10) {
      await write(chunks(jobId, 1, i * size, 10, size));
      if (i === 100) {
        follower(0, false);
        follower(99_999, true);
        follower(total * size, false);
      }
    }
    allWritten();
    await finish(jobId, 1, total * size);
    const got = await Promise.all(runs);
    got.forEach((g, k) => {
      expect(g.bytes.equals(expected(1, from[k], total * size))).toBe(true);
      expect(g.end).toEqual({ reason: 'complete', bytes: total * size });
    });
    expect(consumers.tail).toBe(1);
  });

  it('a follower that stops taking falls out of the shared window, reads on its own, and still gets every byte; the fast one is not held back', async () => {
    const jobId = await submitAndStart();
    const r = reader({ windowBytes: 20_000, readAheadBytes: 4_000 });
    let allWritten!: () => void;
    const written = new Promise<void>((resolve) => (allWritten = resolve));
    let pieces = 0;
    const fast = collect(r.attempt(jobId, { attempt: 1, follow: true }));
    const stalled = collect(r.attempt(jobId, { attempt: 1, follow: true }), 0, () => (++pieces === 1 ? written : Promise.resolve()));
    await eventuallyTrue(() => r.stats().liveTails === 1);
    for (let i = 0; i < 200; i += 10) await write(chunks(jobId, 1, i * 1000, 10, 1000));
    await finish(jobId, 1, 200_000);
    // The fast follower finishes while the other still holds its first piece.
    expect((await fast).bytes.equals(expected(1, 0, 200_000))).toBe(true);
    allWritten();
    expect((await stalled).bytes.equals(expected(1, 0, 200_000))).toBe(true);
    expect(consumers).toEqual({ tail: 1, own: 1 });
  });

  it('a follower waiting at the live head ends as soon as the end is recorded (no chunk comes after it)', async () => {
    const jobId = await submitAndStart();
    const r = reader({ historyRefreshMs: 60_000 });
    const run = collect(r.attempt(jobId, { attempt: 1, follow: true }));
    await write(chunks(jobId, 1, 0, 2, 10));
    await eventuallyTrue(() => r.stats().liveTails === 1);
    await new Promise((res) => setTimeout(res, 300));
    const t0 = Date.now();
    await finish(jobId, 1, 20);
    expect((await run).end).toEqual({ reason: 'complete', bytes: 20 });
    // Woken by the nudge, not by the periodic refresh.
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('puts a chunk stored late (a retried publish) back in its place', async () => {
    const jobId = await submitAndStart();
    const r = reader();
    const run = collect(r.attempt(jobId, { attempt: 1, follow: true }));
    const cs = chunks(jobId, 1, 0, 6, 100);
    await write([cs[0], cs[1], cs[3], cs[4]]);
    await write([cs[2], cs[5]]);
    await finish(jobId, 1, 600);
    const got = await run;
    expect(got.bytes.equals(expected(1, 0, 600))).toBe(true);
  });

  it('an attempt that timed out (no recorded length) ends after what was stored when the end was known', async () => {
    const jobId = await submitAndStart();
    const r = reader();
    const run = collect(r.attempt(jobId, { attempt: 1, follow: true }));
    await write(chunks(jobId, 1, 0, 4, 250));
    await record(jobId, { type: 'TimeOutJob', data: { attempt: 1, now: now() } });
    const got = await run;
    expect(got.bytes.equals(expected(1, 0, 1000))).toBe(true);
    expect(got.end).toEqual({ reason: 'complete', bytes: 1000 });
  });

  it('a lost attempt is superseded: its read ends, the job read goes on into the retry and returns the finished job', async () => {
    const jobId = await submitAndStart({ retry: true });
    const r = reader();
    const whole = collect(r.job(jobId, { follow: true }));
    const first = collect(r.attempt(jobId, { attempt: 1, follow: true }));
    await write(chunks(jobId, 1, 0, 3, 100));
    await record(jobId, { type: 'MarkLost', data: { attempt: 1, executorId: 'ex-1', reason: 'executor silent', now: now() } });
    const one = await first;
    expect(one.bytes.equals(expected(1, 0, 300))).toBe(true);
    expect(one.end).toEqual({ reason: 'complete', bytes: 300 });
    const view = (await collect(r.job(jobId, { follow: false }))).end as JobView;
    await eventuallyTrue(async () => (await store.readStream(jobStreamName(jobId))).some((e) => e.type === 'JobRetryScheduled'));
    expect(view.id).toBe(jobId);
    await record(jobId, { type: 'RequeueJob', data: { attempt: 2, now: now() } });
    await start(jobId, 2);
    await write(chunks(jobId, 2, 0, 2, 100));
    await finish(jobId, 2, 200, 0);
    const all = await whole;
    expect(all.attempt).toBe(2);
    expect((all.end as JobView).status).toBe('succeeded');
    expect((all.end as JobView).attempt).toBe(2);
  });

  it('bytes the history counts but the stream never stored: DATA_LOSS, not a stall', async () => {
    const jobId = await submitAndStart();
    const r = reader();
    const cs = chunks(jobId, 1, 0, 4, 100);
    await write([cs[0], cs[1], cs[3]]);
    await finish(jobId, 1, 400);
    await expect(collect(r.attempt(jobId, { attempt: 1, follow: true }))).rejects.toMatchObject({ code: 'data_loss' });
    const missingTail = await submitAndStart();
    await write(chunks(missingTail, 1, 0, 2, 100));
    await finish(missingTail, 1, 500);
    await expect(collect(r.attempt(missingTail, { attempt: 1, follow: true }))).rejects.toMatchObject({ code: 'data_loss', message: expect.stringContaining('bytes 200–500') });
  });

  it('a plain read (no follow) of a finished attempt whose stream lacks bytes its history counts: DATA_LOSS, not a short log that looks whole', async () => {
    const r = reader();
    // Nothing stored at all (its only chunk lost while nats-server was down): the case that once read as an empty log of a succeeded job.
    const empty = await submitAndStart();
    await finish(empty, 1, 27);
    await expect(collect(r.attempt(empty, { attempt: 1 }))).rejects.toMatchObject({ code: 'data_loss', message: expect.stringContaining('bytes 0–27') });
    await expect(collect(r.job(empty))).rejects.toMatchObject({ code: 'data_loss' });
    // The tail missing, and a hole.
    const short = await submitAndStart();
    const cs = chunks(short, 1, 0, 4, 100);
    await write([cs[0], cs[1]]);
    await finish(short, 1, 400);
    await expect(collect(r.attempt(short, { attempt: 1, offset: 50 }), 50)).rejects.toMatchObject({ code: 'data_loss', message: expect.stringContaining('bytes 200–400') });
    const holed = await submitAndStart();
    const hs = chunks(holed, 1, 0, 3, 100);
    await write([hs[0], hs[2]]);
    await finish(holed, 1, 300);
    await expect(collect(r.attempt(holed, { attempt: 1 }))).rejects.toMatchObject({ code: 'data_loss' });
    // Whole, or from past its end: no error; a live attempt is what is stored now.
    const whole = await submitAndStart();
    await write(chunks(whole, 1, 0, 2, 100));
    await finish(whole, 1, 200);
    expect((await collect(r.attempt(whole, { attempt: 1 }))).end).toEqual({ reason: 'complete', bytes: 200 });
    expect((await collect(r.job(whole))).bytes.equals(expected(1, 0, 200))).toBe(true);
    expect((await collect(r.attempt(whole, { attempt: 1, offset: 200 }), 200)).end).toEqual({ reason: 'complete', bytes: 200 });
    const live = await submitAndStart();
    await write(chunks(live, 1, 0, 1, 100));
    expect((await collect(r.attempt(live, { attempt: 1 }))).end).toEqual({ reason: 'complete', bytes: 100 });
  });

  it('a purged job ends at once; an attempt past the last one of a finished job is empty', async () => {
    const jobId = await submitAndStart();
    await write(chunks(jobId, 1, 0, 2, 100));
    await finish(jobId, 1, 200);
    const r = reader();
    expect((await collect(r.attempt(jobId, { attempt: 3, follow: true }))).bytes.length).toBe(0);
    await record(jobId, { type: 'PurgeJob', data: { actor: { id: 'test', admin: true }, now: now() } });
    expect((await collect(r.attempt(jobId, { attempt: 1, follow: true }))).end).toEqual({ reason: 'purged' });
  });

  it('an abort ends a follow at once and leaves no consumer on the server', async () => {
    const jobId = await submitAndStart();
    await write(chunks(jobId, 1, 0, 3, 100));
    const r = reader();
    const ac = new AbortController();
    const gen = r.attempt(jobId, { attempt: 1, follow: true, signal: ac.signal });
    let seen = 0;
    const run = collect(gen, 0, async () => {
      if (++seen === 3) ac.abort();
    });
    await write(chunks(jobId, 1, 300, 1, 100));
    expect((await run).end).toEqual({ reason: 'aborted' });
    expect(r.stats()).toMatchObject({ tails: 0, followers: 0 });
    await eventuallyTrue(async () => (await logConsumers(jobId)) === 0);
  });

  it('bytes the stream budget discarded before a follower read them: DATA_LOSS', async () => {
    // A stream of its own budget: ensureStreams with a byte cap, on a second server.
    const d2 = tempDir();
    const s2 = await startNatsServer({ storeDir: d2.path });
    const nc2 = await connectNats({ servers: s2.url, name: 'log-reader-budget' });
    try {
      const jsm2 = await jetstreamManager(nc2);
      await ensureStreams(jsm2, { logsMaxBytes: 64 * 1024 });
      const js2 = jetstream(nc2);
      const jobId = await submitAndStart();
      await new JetStreamPublisher(js2).publishMany(chunks(jobId, 1, 0, 40, 4096).map(encodeLogChunk));
      await finish(jobId, 1, 40 * 4096);
      const history = eventStoreHistory(store, () => () => undefined);
      const r = new LogReader({ js: js2, jsm: jsm2, history });
      readers.push(r);
      await expect(collect(r.attempt(jobId, { attempt: 1, follow: true }))).rejects.toMatchObject({ code: 'data_loss', message: expect.stringContaining('retention') });
      // Without follow: the same clear error, not a log silently starting in the middle.
      await expect(collect(r.attempt(jobId, { attempt: 1 }))).rejects.toMatchObject({ code: 'data_loss' });
    } finally {
      await nc2.close();
      await s2.stop();
      d2.remove();
    }
  });

  it('a read of its own whose consumer stops delivering while behind is opened again from its last chunk: every byte once, then complete', async () => {
    const jobId = await submitAndStart();
    await write(chunks(jobId, 1, 0, 8, 500));
    await finish(jobId, 1, 4000);
    // The first consumer this reader opens delivers two messages, then nothing (as a consumer that stopped would).
    let opened = 0;
    const stalling = new Proxy(js, {
      get(target, prop, receiver) {
        if (prop !== 'consumers') return Reflect.get(target, prop, receiver) as unknown;
        return {
          get: async (...args: Parameters<JetStreamClient['consumers']['get']>) => {
            const consumer = await target.consumers.get(...args);
            if (++opened > 1) return consumer;
            return new Proxy(consumer, {
              get(c, p, r) {
                if (p !== 'consume') return Reflect.get(c, p, r) as unknown;
                return async (opts: unknown) => {
                  const messages = await (c.consume as (o: unknown) => Promise<AsyncIterable<unknown> & { close(): Promise<void> }>)(opts);
                  const inner = messages[Symbol.asyncIterator]();
                  let given = 0;
                  return Object.assign(Object.create(messages) as object, {
                    close: () => messages.close(),
                    [Symbol.asyncIterator]: () => ({ next: () => (++given <= 2 ? inner.next() : new Promise(() => undefined)) }),
                  });
                };
              },
            });
          },
        };
      },
    });
    const stalls: number[] = [];
    const r = reader({ js: stalling, ownStallMs: 300, onStall: (_job, afterSeq) => stalls.push(afterSeq) });
    const got = await collect(r.attempt(jobId, { attempt: 1, follow: true }));
    expect(got.bytes.equals(expected(1, 0, 4000))).toBe(true);
    expect(got.end).toEqual({ reason: 'complete', bytes: 4000 });
    expect(stalls).toHaveLength(1);
    expect(r.stats().stalledReads).toBe(1);
    expect(opened).toBe(2);
  });
});

async function eventuallyTrue(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
