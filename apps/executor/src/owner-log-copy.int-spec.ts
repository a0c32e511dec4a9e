import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { decodeLogChunk, subjects } from '../../../libs/contracts/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { jetStreamLogSink, OwnerLogInterest, type OwnerLogCopy } from './core/log-batcher';

let tmp: TempDir;
let server: RunningNatsServer;
let nc: NatsConnection;
let other: NatsConnection;
let js: JetStreamClient;

beforeAll(async () => {
  tmp = tempDir('jobline-owner-copy-');
  server = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
  nc = await connectNats({ servers: server.url, name: 'executor' });
  other = await connectNats({ servers: server.url, name: 'integration' });
  js = jetstream(nc);
  await ensureStreams(await jetstreamManager(nc));
});

afterAll(async () => {
  await nc?.close();
  await other?.close();
  await server?.stop();
  tmp?.remove();
});

/** The executor's connection, counting what it publishes on the owner's subject. */
function counted(jobId: string, withSubscribe = true): { copy: OwnerLogCopy; sent: () => number } {
  const ownerSubject = subjects.ownerLogs('alice', jobId);
  let sent = 0;
  const conn = {
    publish: (subject: string, ...rest: Parameters<NatsConnection['publish']> extends [string, ...infer R] ? R : never) => {
      if (subject === ownerSubject) sent++;
      nc.publish(subject, ...rest);
    },
    ...(withSubscribe ? { subscribe: nc.subscribe.bind(nc) } : {}),
  };
  return { copy: { nc: conn, owner: 'alice' }, sent: () => sent };
}

const chunk = (k: number) => ({ stream: 'stdout' as const, offset: k * 4, data: Buffer.from(`c${String(k).padStart(2, '0')}\n`) });

describe("the owner's log copy", () => {
  it('stops while its subject has no subscriber (the server answers 503), and is sent again after the quiet time', async () => {
    const jobId = crypto.randomUUID();
    let now = 0;
    const interest = new OwnerLogInterest(nc, 1000, () => now);
    const { copy, sent } = counted(jobId);
    const sink = jetStreamLogSink(js, jobId, 1, copy, null, interest);
    await sink(chunk(0));
    // The server answers the copy's reply subject before the flush's PONG: the 503 has been seen.
    await nc.flush();
    expect(sent()).toBe(1);
    for (let k = 1; k < 5; k++) await sink(chunk(k));
    expect(sent()).toBe(1);
    now = 999;
    await sink(chunk(5));
    expect(sent()).toBe(1);
    // A subscriber comes; the next copy after the quiet time reaches it, and so does every later one.
    const got: Msg[] = [];
    const sub = other.subscribe(subjects.ownerLogs('alice', jobId), { callback: (_e, m) => void got.push(m) });
    await other.flush();
    now = 1000;
    for (let k = 6; k < 10; k++) {
      await sink(chunk(k));
      await nc.flush();
    }
    now = 5000;
    await sink(chunk(10));
    await nc.flush();
    await other.flush();
    sub.unsubscribe();
    expect(sent()).toBe(6);
    expect(got.map((m) => decodeLogChunk(m)?.offset)).toEqual([6, 7, 8, 9, 10].map((k) => k * 4));
    // Every chunk is stored whatever the owner's subject does.
    const jsm = await jetstreamManager(nc);
    const last = await jsm.streams.getMessage('JOBLINE_LOGS', { last_by_subj: subjects.logs(jobId) });
    expect(last?.header.get('Jobline-Offset')).toBe('40');
  });

  it('reaches a subscriber that was there before the first chunk with every chunk, payload and headers as stored', async () => {
    const jobId = crypto.randomUUID();
    const interest = new OwnerLogInterest(nc, 60_000);
    const got: Msg[] = [];
    const sub = other.subscribe(subjects.ownerLogs('alice', jobId), { callback: (_e, m) => void got.push(m) });
    await other.flush();
    const { copy, sent } = counted(jobId);
    const sink = jetStreamLogSink(js, jobId, 1, copy, null, interest);
    for (let k = 0; k < 20; k++) await sink(chunk(k));
    await nc.flush();
    await other.flush();
    sub.unsubscribe();
    expect(sent()).toBe(20);
    const chunks = got.map((m) => decodeLogChunk(m));
    expect(chunks.map((c) => c && { offset: c.offset, data: Buffer.from(c.data).toString() })).toEqual(Array.from({ length: 20 }, (_, k) => ({ offset: k * 4, data: chunk(k).data.toString() })));
    expect(got.map((m) => m.headers?.get('Nats-Msg-Id'))).toEqual(Array.from({ length: 20 }, (_, k) => `${jobId}.1.${k * 4}`));
  });

  it('is sent for every chunk when interest cannot be asked (a connection without subscribe)', async () => {
    const jobId = crypto.randomUUID();
    const { copy, sent } = counted(jobId, false);
    const sink = jetStreamLogSink(js, jobId, 1, copy, null);
    for (let k = 0; k < 5; k++) {
      await sink(chunk(k));
      await nc.flush();
    }
    expect(sent()).toBe(5);
  });
});
