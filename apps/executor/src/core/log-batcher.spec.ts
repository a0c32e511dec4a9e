import { NoRespondersError, RequestError, TimeoutError } from '@nats-io/nats-core';
import { busUnavailable, LogBatcher, type OutChunk } from './log-batcher';
import { portableLogHasher } from './log-hasher';

/** A sink that records every publish and acks it when told (or at once). */
function recordingSink(autoAck = true) {
  const calls: OutChunk[] = [];
  const acks: (() => void)[] = [];
  const sink = (chunk: OutChunk) => {
    calls.push(chunk);
    if (autoAck) return Promise.resolve();
    return new Promise<void>((resolve) => acks.push(resolve));
  };
  return { sink, calls, acks };
}

const bytes = (...values: number[]) => Uint8Array.from(values);
const filled = (n: number, v: number) => new Uint8Array(n).fill(v);

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('LogBatcher', () => {
  it('cut() emits what is buffered on both streams and returns the next offset, so what is written after stands after it', async () => {
    const { sink, calls } = recordingSink();
    const b = new LogBatcher({ sink, flushMs: 1000 });
    b.write('stdout', bytes(1, 2));
    b.write('stderr', bytes(3));
    expect(b.cut()).toBe(3);
    b.write('stderr', bytes(4));
    expect(b.cut()).toBe(4);
    b.write('stdout', bytes(5));
    await b.flush();
    expect(calls.map((c) => [c.stream, c.offset, [...c.data]])).toEqual([
      ['stdout', 0, [1, 2]],
      ['stderr', 2, [3]],
      ['stderr', 3, [4]],
      ['stdout', 4, [5]],
    ]);
  });

  it('coalesces small writes of one stream into one chunk after flushMs', async () => {
    const { sink, calls } = recordingSink();
    const b = new LogBatcher({ sink, flushMs: 5 });
    b.write('stdout', bytes(1, 2));
    b.write('stdout', bytes(3));
    expect(calls).toHaveLength(0);
    await until(() => calls.length === 1);
    expect(calls[0]).toEqual({ stream: 'stdout', offset: 0, data: bytes(1, 2, 3) });
  });

  it('emits at once when a stream holds chunkBytes, never a chunk larger than that', () => {
    const { sink, calls } = recordingSink();
    const b = new LogBatcher({ sink, chunkBytes: 4, flushMs: 10_000 });
    b.write('stdout', bytes(1, 2, 3));
    expect(calls).toHaveLength(0);
    b.write('stdout', bytes(4, 5, 6, 7, 8, 9, 10, 11, 12, 13));
    expect(calls.map((c) => Array.from(c.data))).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11, 12],
      [13],
    ]);
    expect(calls.map((c) => c.offset)).toEqual([0, 4, 8, 12]);
    return b.flush();
  });

  it('shares offsets between stdout and stderr, contiguous and in publish order', async () => {
    const { sink, calls } = recordingSink();
    const b = new LogBatcher({ sink, chunkBytes: 3, flushMs: 10_000 });
    b.write('stdout', bytes(1, 2));
    b.write('stderr', bytes(9, 9, 9, 9));
    b.write('stdout', bytes(3));
    await b.flush();
    expect(calls.map((c) => [c.stream, c.offset, c.data.length])).toEqual([
      ['stderr', 0, 3],
      ['stderr', 3, 1],
      ['stdout', 4, 3],
    ]);
    expect(b.bytes).toBe(7);
  });

  it('keeps every byte of binary output, whatever the write sizes', async () => {
    const { sink, calls } = recordingSink();
    const b = new LogBatcher({ sink, chunkBytes: 1000, flushMs: 1 });
    const written: Record<'stdout' | 'stderr', Uint8Array[]> = { stdout: [], stderr: [] };
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 500; i++) {
      const stream = rand() < 0.7 ? 'stdout' : 'stderr';
      const data = new Uint8Array(Math.floor(rand() * 3000) + 1).map(() => Math.floor(rand() * 256));
      written[stream].push(data);
      b.write(stream, data);
    }
    await b.flush();
    let next = 0;
    for (const c of calls) {
      expect(c.offset).toBe(next);
      expect(c.data.length).toBeLessThanOrEqual(1000);
      next += c.data.length;
    }
    for (const stream of ['stdout', 'stderr'] as const) {
      const got = concat(calls.filter((c) => c.stream === stream).map((c) => c.data));
      expect(Buffer.from(got).equals(Buffer.from(concat(written[stream])))).toBe(true);
    }
    expect(b.bytes).toBe(next);
  });

  it('holds writers back while maxInFlight chunks await their ack', async () => {
    const { sink, calls, acks } = recordingSink(false);
    const b = new LogBatcher({ sink, chunkBytes: 2, maxInFlight: 2 });
    expect(b.write('stdout', filled(2, 1))).toBeUndefined();
    const held = b.write('stdout', filled(2, 2));
    expect(held).toBeInstanceOf(Promise);
    let released = false;
    void held!.then(() => (released = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(released).toBe(false);
    acks[0]();
    await until(() => released);
    acks[1]();
    await b.flush();
    expect(calls).toHaveLength(2);
  });

  it('resolves flush only when every chunk is acked', async () => {
    const { sink, acks } = recordingSink(false);
    const b = new LogBatcher({ sink, flushMs: 10_000 });
    b.write('stdout', bytes(1));
    b.write('stderr', bytes(2));
    let flushed = false;
    const f = b.flush().then(() => (flushed = true));
    await until(() => acks.length === 2);
    acks[1]();
    await new Promise((r) => setTimeout(r, 5));
    expect(flushed).toBe(false);
    acks[0]();
    await f;
    expect(flushed).toBe(true);
  });

  it('retries a failed publish with the same offset', async () => {
    const offsets: number[] = [];
    let failures = 1;
    const sink = async (c: OutChunk) => {
      offsets.push(c.offset);
      if (failures-- > 0) throw new Error('503');
    };
    const b = new LogBatcher({ sink, retryDelayMs: 1 });
    b.write('stdout', bytes(1, 2));
    await b.flush();
    expect(offsets).toEqual([0, 0]);
  });

  it('rejects flush when a chunk cannot be stored after its retries', async () => {
    let tries = 0;
    const sink = async () => {
      tries++;
      throw new Error('no responders');
    };
    const b = new LogBatcher({ sink, retries: 2, retryDelayMs: 1 });
    b.write('stdout', bytes(1));
    await expect(b.flush()).rejects.toThrow('no responders');
    expect(tries).toBe(3);
  });
});

describe('LogBatcher through a bus outage', () => {
  it('keeps trying a chunk whose publish times out, past its retries, until the bus answers (the same offset each time)', async () => {
    const offsets: number[] = [];
    let down = 12;
    const sink = async (c: OutChunk) => {
      offsets.push(c.offset);
      if (down-- > 0) throw new TimeoutError();
    };
    const b = new LogBatcher({ sink, retries: 2, retryDelayMs: 1 });
    b.write('stdout', bytes(1, 2, 3));
    await b.flush();
    expect(offsets).toEqual(Array(13).fill(0));
  });

  it('gives a chunk up once the outage outlasts outageMs, and a refusal after its retries', async () => {
    let tries = 0;
    const timingOut = new LogBatcher({
      sink: async () => {
        tries++;
        throw new TimeoutError();
      },
      retries: 1,
      retryDelayMs: 1,
      outageMs: 30,
    });
    timingOut.write('stdout', bytes(1));
    await expect(timingOut.flush()).rejects.toBeInstanceOf(TimeoutError);
    expect(tries).toBeGreaterThan(2);
    const refused = new LogBatcher({
      sink: async () => {
        tries++;
        throw new Error('maximum payload exceeded');
      },
      retries: 1,
      retryDelayMs: 1,
    });
    tries = 0;
    refused.write('stdout', bytes(1));
    await expect(refused.flush()).rejects.toThrow('maximum payload');
    expect(tries).toBe(2);
  });

  it('stops waiting through an outage once told (the executor stopping): the chunk gets its retries only', async () => {
    let tries = 0;
    const stop = new AbortController();
    stop.abort();
    const b = new LogBatcher({
      sink: async () => {
        tries++;
        throw new TimeoutError();
      },
      retries: 2,
      retryDelayMs: 1,
      stopWaiting: stop.signal,
    });
    b.write('stdout', bytes(1));
    await expect(b.flush()).rejects.toBeInstanceOf(TimeoutError);
    expect(tries).toBe(3);
  });

  it('tells an outage (timeout, no responders while JetStream starts, a disconnection) from a refusal', () => {
    expect(busUnavailable(new TimeoutError())).toBe(true);
    // What nats.js throws for a JetStream publish that no server answers (JetStreamNotEnabled, caused by the no-responders RequestError).
    expect(busUnavailable(new Error('jetstream is not enabled', { cause: new RequestError('no responders', { cause: new NoRespondersError('jobline.logs.x') }) }))).toBe(true);
    expect(busUnavailable(new RequestError('connection disconnected'))).toBe(true);
    expect(busUnavailable(new Error('maximum payload exceeded'))).toBe(false);
    expect(busUnavailable('timeout')).toBe(false);
  });
});

describe('LogBatcher log digest', () => {
  const { createHash } = jest.requireActual<typeof import('node:crypto')>('node:crypto');
  const nodeHasher = () => {
    const h = createHash('sha256');
    return { update: (d: Uint8Array) => void h.update(d), hex: () => h.digest('hex') };
  };

  it('is the sha256 of the chunks in offset order (stdout and stderr interleaved), with either hasher', async () => {
    for (const hasher of [nodeHasher(), portableLogHasher()]) {
      const { sink, calls } = recordingSink();
      const b = new LogBatcher({ sink, chunkBytes: 4, flushMs: 1, hasher });
      b.write('stdout', bytes(1, 2, 3));
      b.write('stderr', bytes(9, 9));
      b.write('stdout', filled(7, 5));
      await new Promise((r) => setTimeout(r, 5));
      b.write('stderr', bytes(8));
      await b.flush();
      const log = concat([...calls].sort((x, y) => x.offset - y.offset).map((c) => c.data));
      expect(log.length).toBe(13);
      expect(b.sha256).toBe(createHash('sha256').update(log).digest('hex'));
    }
  });

  it('of no output is the sha256 of nothing; without a hasher there is none', async () => {
    const b = new LogBatcher({ sink: recordingSink().sink, hasher: portableLogHasher() });
    await b.flush();
    expect(b.sha256).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    const none = new LogBatcher({ sink: recordingSink().sink });
    await none.flush();
    expect(none.sha256).toBeUndefined();
  });

  it('is withheld when a chunk could not be stored (it would not describe the stored log)', async () => {
    const b = new LogBatcher({ sink: () => Promise.reject(new Error('no ack')), retries: 0, hasher: portableLogHasher() });
    b.write('stdout', bytes(1));
    await expect(b.flush()).rejects.toThrow('no ack');
    expect(b.sha256).toBeUndefined();
  });
});
