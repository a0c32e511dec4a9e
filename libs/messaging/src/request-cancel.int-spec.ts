import { dirname, join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { STREAMS, subjects } from '../../contracts/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { installQuietRequestCancel } from './request-cancel';
import { ensureStreams } from './streams';

// nats-core's errors module, whose RequestError its requests construct (by property, at each use).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const errors = require(join(dirname(require.resolve('@nats-io/nats-core')), 'errors.js')) as { RequestError: new (...args: unknown[]) => Error };

describe('quiet request cancel (real nats-server)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  const Original = errors.RequestError;
  let built = 0;

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: dir.path });
    nc = await connectNats({ servers: server.url, name: 'request-cancel-test' });
    await ensureStreams(await jetstreamManager(nc));
    errors.RequestError = class extends Original {
      constructor(...args: unknown[]) {
        super(...args);
        built++;
      }
    };
  });
  afterAll(async () => {
    errors.RequestError = Original;
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  it('is installed on this nats-core (a changed client fails here instead of silently keeping the cost)', () => {
    expect(installQuietRequestCancel()).toBe(true);
  });

  it('answered requests and JetStream publishes resolve as before, without building a RequestError each', async () => {
    const sub = nc.subscribe('rc.echo', { callback: (_err, m) => void m.respond(m.data) });
    built = 0;
    for (let i = 0; i < 20; i++) expect((await nc.request('rc.echo', `m${i}`, { timeout: 5000 })).string()).toBe(`m${i}`);
    const js = jetstream(nc);
    const ack = await js.publish(subjects.event('rc-job', 'JobSubmitted'), '{}');
    expect(ack.stream).toBe(STREAMS.events);
    expect(built).toBe(0);
    sub.unsubscribe();
  });

  it('a request nobody answers still fails: no responders, and a timeout', async () => {
    await expect(nc.request('rc.nobody', 'x', { timeout: 2000 })).rejects.toThrow(/no responders/i);
    const silent = nc.subscribe('rc.silent', { callback: () => undefined });
    await nc.flush();
    await expect(nc.request('rc.silent', 'x', { timeout: 100 })).rejects.toThrow(/timeout/i);
    silent.unsubscribe();
  });

  it('a request cancelled before its answer (the connection closing) is rejected as before', async () => {
    const other = await connectNats({ servers: server.url, name: 'request-cancel-close' });
    const silent = other.subscribe('rc.never', { callback: () => undefined });
    await other.flush();
    const pending = other.request('rc.never', 'x', { timeout: 10_000 });
    const settled = pending.then(
      () => 'resolved',
      (err: Error) => err,
    );
    await other.close();
    const outcome = await settled;
    expect(outcome).toBeInstanceOf(Error);
    silent.unsubscribe();
  });
});
