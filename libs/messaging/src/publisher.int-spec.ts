import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { STREAMS, subjects } from '../../contracts/src';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { JetStreamPublisher, PublishManyError } from './publisher';
import { ensureStreams } from './streams';

describe('JetStreamPublisher (real nats-server)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let publisher: JetStreamPublisher;

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: dir.path });
    nc = await connectNats({ servers: server.url, name: 'publisher-test' });
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

  it('JSON-encodes values, sends bytes as they are, and passes headers', async () => {
    const a = await publisher.publish(subjects.event('j1', 'JobSubmitted'), { hello: 'world' }, { headers: { 'X-Test': 'yes' } });
    const b = await publisher.publish(subjects.event('j1', 'JobQueued'), new Uint8Array([0, 255, 1]));
    expect(a.stream).toBe(STREAMS.events);
    expect(b.seq).toBe(a.seq + 1);
    const ma = await jsm.streams.getMessage(STREAMS.events, { seq: a.seq });
    expect(ma?.json()).toEqual({ hello: 'world' });
    expect(ma?.header.get('X-Test')).toBe('yes');
    const mb = await jsm.streams.getMessage(STREAMS.events, { seq: b.seq });
    expect(Array.from(mb!.data)).toEqual([0, 255, 1]);
  });

  it('reports a re-published msgId as a duplicate instead of storing it again', async () => {
    const subject = subjects.event('j2', 'JobSubmitted');
    const first = await publisher.publish(subject, { n: 1 }, { msgId: 'evt-j2-1' });
    const again = await publisher.publish(subject, { n: 1 }, { msgId: 'evt-j2-1' });
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
    const [m1, m2] = await publisher.publishMany([
      { subject, payload: { n: 1 }, msgId: 'evt-j2-1' },
      { subject, payload: { n: 2 }, msgId: 'evt-j2-2' },
    ]);
    expect(m1.duplicate).toBe(true);
    expect(m2.duplicate).toBe(false);
    expect((await jsm.streams.info(STREAMS.events, { subjects_filter: subject })).state.subjects?.[subject]).toBe(2);
  });

  it('rejects a publish whose expected last subject sequence does not match', async () => {
    const subject = subjects.event('j3', 'JobSubmitted');
    const first = await publisher.publish(subject, { n: 1 }, { expectLastSubjectSequence: 0 });
    await publisher.publish(subject, { n: 2 }, { expectLastSubjectSequence: first.seq });
    await expect(publisher.publish(subject, { n: 3 }, { expectLastSubjectSequence: first.seq })).rejects.toThrow(/wrong last sequence/i);
  });

  it('publishMany stores many messages in order', async () => {
    const item = (i: number, tag: string) => ({ subject: subjects.event(`p${i % 7}`, 'JobQueued'), payload: { i }, msgId: `${tag}-${i}` });
    const n = 5000;
    const acks = await publisher.publishMany(Array.from({ length: n }, (_, i) => item(i, 'many')));
    expect(acks).toHaveLength(n);
    for (let i = 1; i < n; i++) expect(acks[i].seq).toBe(acks[i - 1].seq + 1);
    const sample = await jsm.streams.getMessage(STREAMS.events, { seq: acks[4321].seq });
    expect(sample?.json()).toEqual({ i: 4321 });
    // Throughput is measured by bench/, not asserted here.
  });

  it('publishMany reports which item failed and the acks of those before it', async () => {
    const items = [
      { subject: subjects.event('f1', 'JobQueued'), payload: { ok: 1 } },
      { subject: 'nobody.listens.here', payload: { ok: 2 } },
      { subject: subjects.event('f1', 'JobStarted'), payload: { ok: 3 } },
    ];
    const err = await publisher.publishMany(items).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PublishManyError);
    expect((err as PublishManyError).failedIndex).toBe(1);
    expect((err as PublishManyError).acks).toHaveLength(1);
  });
});
