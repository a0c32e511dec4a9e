import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { STREAMS, type LogChunk } from '../../contracts/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { eventually } from '../../testing/src/eventually';
import { encodeLogChunk, purgeLogs, readLogChunks } from './logs';
import { JetStreamPublisher } from './publisher';
import { ensureStreams } from './streams';

describe('log chunks on JetStream (real nats-server)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: JetStreamPublisher;

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: dir.path });
    nc = await connectNats({ servers: server.url, name: 'logs-test' });
    jsm = await jetstreamManager(nc);
    await ensureStreams(jsm);
    js = jetstream(nc);
    publisher = new JetStreamPublisher(js);
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  /** Chunks 0..n-1 of one attempt, alternating stdout/stderr, offsets contiguous. */
  function chunks(jobId: string, n: number, from = 0): LogChunk[] {
    return Array.from({ length: n }, (_, k) => {
      const i = from + k;
      return { jobId, attempt: 1, stream: i % 2 ? 'stderr' : 'stdout', offset: i * 4, data: new TextEncoder().encode(String(i).padStart(4, '0')) };
    });
  }
  const write = (cs: LogChunk[]) => publisher.publishMany(cs.map(encodeLogChunk));
  async function readAll(jobId: string, opts: Parameters<typeof readLogChunks>[2] = {}): Promise<LogChunk[]> {
    const out: LogChunk[] = [];
    for await (const c of readLogChunks(js, jobId, opts)) out.push(c);
    return out;
  }
  const logConsumers = async () => {
    const out = [];
    for await (const ci of jsm.consumers.list(STREAMS.logs)) out.push(ci);
    return out;
  };

  it('carries every byte value unchanged, with its metadata', async () => {
    const jobId = randomUUID();
    const data = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
    const chunk: LogChunk = { jobId, attempt: 3, stream: 'stderr', offset: 123_456_789_012, data };
    await write([chunk]);
    const [got, ...rest] = await readAll(jobId);
    expect(rest).toEqual([]);
    expect(got).toMatchObject({ jobId, attempt: 3, stream: 'stderr', offset: 123_456_789_012 });
    expect(Buffer.from(got.data).equals(Buffer.from(data))).toBe(true);
  });

  it('ends at once for a job without chunks', async () => {
    const started = Date.now();
    expect(await readAll(randomUUID())).toEqual([]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('delivers all of a job’s chunks in order, and only its own, then ends', async () => {
    const jobId = randomUUID();
    const other = randomUUID();
    await write(chunks(jobId, 300));
    await write(chunks(other, 10));
    await write(chunks(jobId, 200, 300));
    const got = await readAll(jobId, { batch: 64 });
    expect(got.map((c) => c.offset)).toEqual(chunks(jobId, 500).map((c) => c.offset));
    expect(got.every((c) => c.jobId === jobId)).toBe(true);
    expect(new TextDecoder().decode(got[499].data)).toBe('0499');
    // The ordered consumer is removed when the read ends.
    await eventually(async () => (await logConsumers()).length === 0, 10_000, 'read consumers to be deleted');
  });

  it('without follow, stops at what existed when the read started', async () => {
    const jobId = randomUUID();
    await write(chunks(jobId, 20));
    const got: LogChunk[] = [];
    for await (const c of readLogChunks(js, jobId, { batch: 8 })) {
      got.push(c);
      if (got.length === 1) await write(chunks(jobId, 20, 20));
    }
    expect(got).toHaveLength(20);
  });

  it('starts at a stream sequence', async () => {
    const jobId = randomUUID();
    const acks = await write(chunks(jobId, 10));
    const got = await readAll(jobId, { startSeq: acks[6].seq });
    expect(got.map((c) => c.offset)).toEqual([24, 28, 32, 36]);
  });

  it('reads a long log without fetching ahead of its reader', async () => {
    const jobId = randomUUID();
    await write(chunks(jobId, 2000));
    const it = readLogChunks(js, jobId, { batch: 50 })[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    const [ci] = await logConsumers();
    expect(ci.num_pending + ci.delivered.consumer_seq).toBe(2000);
    expect(ci.delivered.consumer_seq).toBeLessThanOrEqual(100);
    let n = 1;
    while (!(await it.next()).done) n++;
    expect(n).toBe(2000);
  });

  it('follows live chunks until aborted', async () => {
    const jobId = randomUUID();
    await write(chunks(jobId, 5));
    const ac = new AbortController();
    const got: LogChunk[] = [];
    const reading = (async () => {
      for await (const c of readLogChunks(js, jobId, { follow: true, signal: ac.signal })) got.push(c);
    })();
    await eventually(() => got.length === 5, 10_000, 'existing chunks');
    await write(chunks(jobId, 3, 5));
    await eventually(() => got.length === 8, 10_000, 'live chunks');
    await write(chunks(jobId, 2, 8));
    await eventually(() => got.length === 10, 10_000, 'more live chunks');
    ac.abort();
    await reading;
    expect(got.map((c) => c.offset)).toEqual(chunks(jobId, 10).map((c) => c.offset));
  });

  it('follows a job that has no chunks yet', async () => {
    const jobId = randomUUID();
    const ac = new AbortController();
    const got: LogChunk[] = [];
    const reading = (async () => {
      for await (const c of readLogChunks(js, jobId, { follow: true, signal: ac.signal })) got.push(c);
    })();
    await eventually(async () => (await logConsumers()).length === 1, 10_000, 'follower consumer');
    await write(chunks(jobId, 2));
    await eventually(() => got.length === 2, 10_000, 'live chunks');
    ac.abort();
    await reading;
  });

  it('purges one job’s chunks and leaves the others', async () => {
    const jobId = randomUUID();
    const other = randomUUID();
    await write(chunks(jobId, 7));
    await write(chunks(other, 3));
    expect(await purgeLogs(jsm, jobId)).toBe(7);
    expect(await readAll(jobId)).toEqual([]);
    expect(await readAll(other)).toHaveLength(3);
  });
});
