import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { jobStreamName, subjects, type CommandRejection } from '../../../libs/contracts/src';
import { Quotas } from '../../../libs/domain/src';
import type { SqliteEventStore } from '../../../libs/event-store/src';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { eventually, startTestBus, type TestBus } from '../../../libs/testing/src';
import type { Orchestrator } from './orchestrator';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';

/** The queued quota at the orchestrator, with no executor (every job stays queued): real nats-server, SQLite. */
describe('queued quota at the orchestrator (real nats-server, SQLite store)', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let nc: NatsConnection;
  let store: SqliteEventStore;
  let orchestrator: Orchestrator;
  let publisher: JetStreamPublisher;
  let sub: Subscription;
  const rejections: CommandRejection[] = [];

  beforeAll(async () => {
    ({ nc, store, publisher } = bus = await startTestBus('quotas-test', { dirPrefix: 'jobline-quota-int-' }));
    ({ orchestrator } = orch = await startTestOrchestrator(bus, {
      quotas: new Quotas({ default: { maxQueued: 3 }, owners: { roomy: { maxQueued: 1000 } }, retryAfterSeconds: 4 }),
    }));
    sub = nc.subscribe('jobline.rej.*', { callback: (_e, m) => void rejections.push(m.json()) });
    await nc.flush();
  });

  afterAll(async () => {
    sub?.unsubscribe();
    await orch?.stop();
    await bus?.stop();
  });

  const stored = async (jobId: string) => (await store.readStream(jobStreamName(jobId))).length > 0;
  const submit = (owner: string, jobId: string) => publisher.publish(subjects.submit(owner), { jobId, spec: { command: 'true' } }, { msgId: jobId });

  it('of 12 submits published at once, exactly maxQueued are stored; the others are refused, each said so, nothing stored for them', async () => {
    const ids = Array.from({ length: 12 }, () => randomUUID());
    await Promise.all(ids.map((id) => submit('alice', id)));
    const refused = await eventually(() => {
      const r = rejections.filter((x) => x.subject === 'jobline.cmd.alice.submit');
      return r.length >= 9 ? r : undefined;
    }, 20_000, '9 rejections');
    await eventually(async () => ((await Promise.all(ids.map(stored))).filter(Boolean).length === 3 ? true : undefined), 20_000, '3 stored jobs');
    expect(refused).toHaveLength(9);
    for (const r of refused) expect(r).toMatchObject({ code: 'resource_exhausted', retryAfterSeconds: 4, message: expect.stringMatching(/owner alice has 3 job\(s\) waiting, its quota is 3/) });
    const refusedIds = new Set(refused.map((r) => r.jobId));
    for (const id of ids) expect(await stored(id)).toBe(!refusedIds.has(id));
    expect(orchestrator.scheduler.waitingOf('alice')).toBe(3);
  });

  it('another owner has its own quota, and a repeated submit of a job that exists is no new job (not refused)', async () => {
    const bobs = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of bobs) await submit('bob', id);
    await eventually(async () => ((await Promise.all(bobs.map(stored))).every(Boolean) ? true : undefined), 20_000, "bob's 3 jobs");
    const before = rejections.length;
    // The same job again (another message id: not deduplicated by the stream), at the quota.
    await publisher.publish(subjects.submit('bob'), { jobId: bobs[0], spec: { command: 'true' } }, { msgId: randomUUID() });
    const fourth = randomUUID();
    await submit('bob', fourth);
    const r = await eventually(() => rejections.slice(before).find((x) => x.jobId === fourth), 20_000, 'the rejection of the fourth');
    expect(r.code).toBe('resource_exhausted');
    expect(rejections.slice(before).filter((x) => x.jobId === bobs[0])).toEqual([]);
    expect((await store.readStream(jobStreamName(bobs[0]))).map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued']);
    // An owner with a larger quota is not held to the default.
    const roomy = Array.from({ length: 8 }, () => randomUUID());
    await Promise.all(roomy.map((id) => submit('roomy', id)));
    await eventually(async () => ((await Promise.all(roomy.map(stored))).every(Boolean) ? true : undefined), 20_000, "roomy's 8 jobs");
  });

  it('a cancelled job leaves the count: the owner may submit again', async () => {
    const [first] = (await store.readAll()).filter((e) => e.type === 'JobSubmitted' && (e.data as { owner: string }).owner === 'alice').map((e) => e.streamId.replace(/^job-/, ''));
    await publisher.publish(subjects.cancel('alice'), { jobId: first }, { msgId: randomUUID() });
    await eventually(() => (orchestrator.scheduler.waitingOf('alice') === 2 ? true : undefined), 20_000, 'the cancel to be seen');
    const next = randomUUID();
    await submit('alice', next);
    await eventually(() => stored(next).then((s) => s || undefined), 20_000, 'the new job');
  });
});
