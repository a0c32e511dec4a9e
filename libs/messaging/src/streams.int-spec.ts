import { DiscardPolicy, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { STREAMS } from '../../contracts/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats } from './connection';
import { ensureStreams } from './streams';

describe('ensureStreams (real nats-server)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: dir.path });
    nc = await connectNats({ servers: server.url, name: 'streams-test' });
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  it('creates every stream, and running it again changes nothing', async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm);
    const first = await jsm.streams.info(STREAMS.commands);
    await ensureStreams(jsm, {});
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    expect(names.sort()).toEqual(Object.values(STREAMS).sort());
    const again = await jsm.streams.info(STREAMS.commands);
    expect(again.config).toEqual(first.config);
    expect(again.created).toEqual(first.created);
    expect(again.config.retention).toBe(RetentionPolicy.Workqueue);
    const logs = (await jsm.streams.info(STREAMS.logs)).config;
    expect(logs.retention).toBe(RetentionPolicy.Limits);
    // A byte budget as well as an age, discarding the oldest chunks.
    expect(logs.max_bytes).toBe(4 * 2 ** 30);
    expect(logs.max_age).toBe(7 * 24 * 3600 * 1000 * 1_000_000);
    expect(logs.discard).toBe(DiscardPolicy.Old);
  });

  it('updates mutable settings of an existing stream', async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm, { logsMaxAgeMs: 3600_000, logsMaxBytes: 1 << 30 });
    const logs = (await jsm.streams.info(STREAMS.logs)).config;
    expect(logs.max_age).toBe(3600_000 * 1_000_000);
    expect(logs.max_bytes).toBe(1 << 30);
    await ensureStreams(jsm, { logsMaxBytes: -1 });
    expect((await jsm.streams.info(STREAMS.logs)).config.max_bytes).toBe(-1);
  });

  it('refuses settings JetStream would misread, changing nothing', async () => {
    const jsm = await jetstreamManager(nc);
    const before = (await jsm.streams.info(STREAMS.logs)).config;
    for (const bad of [{ logsMaxBytes: 0 }, { logsMaxBytes: -5 }, { logsMaxBytes: 1.5 }, { logsMaxAgeMs: 0 }, { replicas: -1 }]) {
      await expect(ensureStreams(jsm, bad)).rejects.toThrow(/invalid stream options/);
    }
    expect((await jsm.streams.info(STREAMS.logs)).config).toEqual(before);
  });

  it('a byte budget larger than the server can store is refused, naming the setting; a smaller one fits', async () => {
    const d = tempDir();
    const conf = join(d.path, 'nats.conf');
    writeFileSync(conf, `jetstream { max_file_store: ${1 << 30} }\n`);
    const small = await startNatsServer({ storeDir: join(d.path, 'store'), args: ['-c', conf] });
    const nc2 = await connectNats({ servers: small.url, name: 'streams-small' });
    try {
      const jsm = await jetstreamManager(nc2);
      await expect(ensureStreams(jsm)).rejects.toThrow(/logs stream's byte budget \(4294967296 bytes\) is more than this nats-server can store.*JOBLINE_LOGS_MAX_BYTES/);
      await ensureStreams(jsm, { logsMaxBytes: 256 << 20 });
      expect((await jsm.streams.info(STREAMS.logs)).config.max_bytes).toBe(256 << 20);
    } finally {
      await nc2.close();
      await small.stop();
      d.remove();
    }
  });
});
