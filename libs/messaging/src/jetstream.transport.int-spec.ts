import { jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { STREAMS } from '../../contracts/src';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { JetStreamServer, provisionConsumer, type JetStreamConsumerSpec } from './jetstream.transport';
import { ensureStreams } from './streams';

/**
 * The transport's ack wait against a real nats-server: a running handler keeps its message
 * (no redelivery however long it runs), and what another instance took and holds without
 * acking (a frozen one) comes back to a live instance once the ack wait has passed.
 */
describe('JetStreamServer ack wait (real nats-server)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  const servers: JetStreamServer[] = [];

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: dir.path });
    nc = await connectNats({ servers: server.url, name: 'transport-test' });
    await ensureStreams(await jetstreamManager(nc));
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await nc?.drain();
    await server?.stop();
    dir?.remove();
  });

  const listen = async (spec: JetStreamConsumerSpec, handler: (data: { n: number }, deliveryCount: number) => Promise<void>): Promise<void> => {
    const s = new JetStreamServer({ connection: nc, consumers: [spec] });
    s.addHandler(spec.pattern, (data: { n: number }, ctx: { deliveryCount: number }) => handler(data, ctx.deliveryCount), true);
    servers.push(s);
    await new Promise<void>((resolve, reject) => s.listen((err?: unknown) => (err ? reject(err) : resolve())));
  };

  it('a handler running for three ack waits is not redelivered meanwhile', async () => {
    const spec: JetStreamConsumerSpec = { pattern: 'jobline.report.keep', stream: STREAMS.reports, durable: 'test-keepalive', ackWaitMs: 1000, pullExpiresMs: 1000 };
    const deliveries: number[] = [];
    let done = 0;
    await listen(spec, async (_data, count) => {
      deliveries.push(count);
      await new Promise((r) => setTimeout(r, 3000));
      done++;
    });
    await jetstream(nc).publish('jobline.report.keep', JSON.stringify({ n: 1 }));
    await eventually(() => done === 1, 10_000, 'the handler to finish');
    // One more ack wait: a redelivery the keep-alive failed to prevent would show by now.
    await new Promise((r) => setTimeout(r, 1500));
    expect(deliveries).toEqual([1]);
    const info = await (await jetstreamManager(nc)).consumers.info(STREAMS.reports, 'test-keepalive');
    expect(info.config.ack_wait).toBe(1000 * 1_000_000);
    expect(info.num_ack_pending).toBe(0);
  }, 30_000);

  it('what a frozen instance took and never acks comes back to a live one after the ack wait', async () => {
    const spec: JetStreamConsumerSpec = { pattern: 'jobline.report.frozen', stream: STREAMS.reports, durable: 'test-frozen', ackWaitMs: 1000, pullExpiresMs: 1000 };
    // The "frozen" instance: a pull on the same durable whose messages are never acked.
    await provisionConsumer(await jetstreamManager(nc), spec);
    const held: JsMsg[] = [];
    const frozen = await (await jetstream(nc).consumers.get(STREAMS.reports, 'test-frozen')).fetch({ max_messages: 5, expires: 1000 });
    const js = jetstream(nc);
    for (let n = 0; n < 5; n++) await js.publish('jobline.report.frozen', JSON.stringify({ n }));
    for await (const m of frozen) held.push(m);
    expect(held.length).toBe(5);
    const handled = new Map<number, number>();
    await listen(spec, async (data, count) => void handled.set(data.n, count));
    await eventually(() => handled.size === 5, 10_000, 'every held message handled by the live instance');
    expect([...handled.values()].every((count) => count >= 2)).toBe(true);
  }, 30_000);
});
