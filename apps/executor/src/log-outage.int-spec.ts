import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { STREAMS, decodeLogChunk, subjects } from '../../../libs/contracts/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { LogBatcher, jetStreamLogSink } from './core/log-batcher';
import { portableLogHasher } from './core/log-hasher';

/**
 * An attempt's output written while nats-server is down (kill -9, started again later): its
 * chunks wait for the bus and are stored once it is back, whole and once. Before, a chunk got
 * three retries 100–300 ms apart after its publish timed out, so an outage longer than four
 * publish timeouts lost it while the attempt still reported its byte count and succeeded (the
 * production-topology run whose git job succeeded with an empty log). The publish timeout is
 * shortened here (500 ms) so that the outage (4 s) outlasts those four tries many times over.
 */
describe('log chunks across a kill -9 of nats-server', () => {
  let tmp: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  const storeDir = () => join(tmp.path, 'nats');

  beforeAll(async () => {
    tmp = tempDir('jobline-test-log-outage-');
    server = await startNatsServer({ storeDir: storeDir() });
    nc = await connectNats({ servers: server.url, name: 'executor' });
    await ensureStreams(await jetstreamManager(nc));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
    tmp?.remove();
  });

  it('output written during the outage is stored once the server is back: flush resolves, every byte once, the digest reported', async () => {
    const js = jetstream(nc, { timeout: 500 });
    const jobId = randomUUID();
    const b = new LogBatcher({ sink: jetStreamLogSink(js, jobId, 1), hasher: portableLogHasher(), chunkBytes: 16 });
    const enc = new TextEncoder();
    b.write('stdout', enc.encode('before the outage\n'));
    await b.flush();
    await server.kill();
    // Printed while the bus is down, on both streams (several chunks in flight).
    b.write('stdout', enc.encode('hello from git at a commit\n'));
    b.write('stderr', enc.encode('and a warning on stderr\n'));
    let settled: 'resolved' | Error | null = null;
    const flushed = b.flush().then(
      () => void (settled = 'resolved'),
      (err: Error) => void (settled = err),
    );
    await new Promise((r) => setTimeout(r, 4000));
    // Still waiting for the bus, not given up.
    expect(settled).toBeNull();
    server = await startNatsServer({ storeDir: storeDir(), port: server.port });
    await flushed;
    expect(settled).toBe('resolved');

    // What the logs stream holds for the job: every byte, each once, in offset order.
    const consumer = await jetstream(nc).consumers.get(STREAMS.logs, { filter_subjects: subjects.logs(jobId) });
    const pending = (await consumer.info(true)).num_pending;
    const stored: { offset: number; data: Uint8Array }[] = [];
    const messages = await consumer.fetch({ max_messages: pending, expires: 5000 });
    for await (const m of messages) {
      const c = decodeLogChunk(m);
      if (c) stored.push({ offset: c.offset, data: c.data });
    }
    await consumer.delete().catch(() => undefined);
    stored.sort((x, y) => x.offset - y.offset);
    const offsets = stored.map((c) => c.offset);
    expect(new Set(offsets).size).toBe(offsets.length);
    let next = 0;
    for (const c of stored) {
      expect(c.offset).toBe(next);
      next += c.data.length;
    }
    expect(next).toBe(b.bytes);
    const whole = Buffer.concat(stored.map((c) => Buffer.from(c.data)));
    expect(whole.toString()).toBe('before the outage\nhello from git at a commit\nand a warning on stderr\n');
    expect(b.sha256).toBe(createHash('sha256').update(whole).digest('hex'));
  }, 60_000);
});
