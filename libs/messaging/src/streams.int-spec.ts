import { jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { STREAMS } from '../../contracts/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
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
    expect((await jsm.streams.info(STREAMS.logs)).config.retention).toBe(RetentionPolicy.Limits);
  });

  it('updates mutable settings of an existing stream', async () => {
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm, { logsMaxAgeMs: 3600_000 });
    expect((await jsm.streams.info(STREAMS.logs)).config.max_age).toBe(3600_000 * 1_000_000);
  });
});
