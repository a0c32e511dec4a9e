import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection } from '@nats-io/nats-core';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { STREAMS, decodeJobEvent, jobStreamName, subjects, type JobEvent, type JobEventMessage, type JobSpecInput } from '../../../libs/contracts/src';
import { SqliteEventStore, SqliteSnapshotStore } from '../../../libs/event-store/src';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { eventually, startTestBus, type TempDir, type TestBus } from '../../../libs/testing/src';
import { startNodeExecutor, type NodeExecutorHandle } from '../../executor/src/node/main';
import { COMMANDS_DURABLE } from './orchestrator.module';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';
import type { Orchestrator } from './orchestrator';
import { SCHEDULER_LIFECYCLE } from './scheduler';

const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };

describe('orchestrator with a real nats-server, SQLite store and Node executor', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let dir: TempDir;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: SqliteEventStore;
  let orchestrator: Orchestrator;
  let executor: NodeExecutorHandle;
  let publisher: JetStreamPublisher;

  // Lifecycle snapshots every few events: a restart starts from one and folds the tail after it.
  async function startOrchestrator() {
    const snapshots = new SqliteSnapshotStore({ db: store.database });
    ({ orchestrator } = orch = await startTestOrchestrator(bus, { snapshots, snapshotEvery: 7, cancelConfirmMs: 5000 }));
  }

  beforeAll(async () => {
    ({ dir, nc, jsm, publisher, store } = bus = await startTestBus('orchestrator-test'));
    await startOrchestrator();
    executor = await startNodeExecutor({ nc, executorId: 'solo', capacity: 1, workRoot: join(dir.path, 'work'), graceMs: 500, heartbeatMs: 200, logger: quietExecutor });
  });

  afterAll(async () => {
    await executor?.stop();
    await orch?.stop();
    await bus?.stop();
  });

  async function submit(spec: JobSpecInput, owner = 'alice', jobId: string = randomUUID()): Promise<string> {
    await publisher.publish(subjects.submit(owner), { jobId, spec }, { msgId: jobId });
    return jobId;
  }
  async function history(jobId: string): Promise<JobEvent[]> {
    return (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  }
  const types = async (jobId: string) => (await history(jobId)).map((e) => e.type);
  const TERMINAL = ['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut'];
  async function finished(jobId: string, timeoutMs = 20_000): Promise<JobEvent[]> {
    return eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => TERMINAL.includes(e.type)) ? h : undefined;
    }, timeoutMs, `job ${jobId} to finish`);
  }
  async function busMessages(jobId: string): Promise<JobEventMessage[]> {
    const out: JobEventMessage[] = [];
    const consumer = await jetstream(nc).consumers.get(STREAMS.events, { filter_subjects: `jobline.evt.${jobId}.>` });
    const pending = (await consumer.info(true)).num_pending;
    if (pending === 0) return out;
    const msgs = await consumer.consume();
    for await (const m of msgs) {
      out.push(m.json<JobEventMessage>());
      if (m.info.pending === 0) break;
    }
    await consumer.delete().catch(() => undefined);
    return out;
  }

  it('runs a failing job to failed, records each step in order and relays each event once, in order', async () => {
    const jobId = await submit({ command: "sh -c 'echo hello; echo oops >&2; exit 3'" });
    const events = await finished(jobId);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(events.some((e) => e.type === 'JobFailed')).toBe(false);
    const completed = events.find((e) => e.type === 'JobCompleted');
    expect(completed?.data).toMatchObject({ attempt: 1, exitCode: 3 });

    const relayed = await eventually(async () => {
      const m = await busMessages(jobId);
      return m.length === events.length ? m : undefined;
    }, 10_000, 'every event relayed');
    expect(relayed.map((m) => m.type)).toEqual(events.map((e) => e.type));
    expect(relayed.map((m) => m.id)).toEqual((await store.readStream(jobStreamName(jobId))).map((r) => r.id));
    const positions = relayed.map((m) => m.position);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(new Set(positions).size).toBe(positions.length);
  });

  it('a duplicate submit (same Nats-Msg-Id, or a re-sent jobId past dedupe) records one job', async () => {
    const jobId = randomUUID();
    await submit({ command: 'true' }, 'alice', jobId);
    await submit({ command: 'true' }, 'alice', jobId);
    // A different message id with the same jobId is past JetStream's dedupe: the decider ignores it.
    await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' } }, { msgId: `${jobId}-again` });
    await finished(jobId);
    await new Promise((r) => setTimeout(r, 300));
    expect((await types(jobId)).filter((t) => t === 'JobSubmitted')).toHaveLength(1);
  });

  it('terminates a malformed command without writing anything, and keeps consuming', async () => {
    const before = await store.headPosition();
    const bad = randomUUID();
    await publisher.publish(subjects.submit('alice'), { jobId: bad, spec: { command: '' } }, { msgId: bad });
    await publisher.publish(subjects.submit('alice'), { jobId: 'not-a-uuid', spec: { command: 'true' } }, { msgId: randomUUID() });
    await publisher.publish(subjects.submit('alice'), 'not json at all', { msgId: randomUUID() });
    const good = await submit({ command: 'true' });
    await finished(good);
    expect(await history(bad)).toEqual([]);
    const after = (await store.readAll({ after: before })).map((r) => r.streamId);
    expect(new Set(after)).toEqual(new Set([jobStreamName(good)]));
    // Nothing left un-acked for redelivery.
    await eventually(async () => {
      const ci = await jsm.consumers.info(STREAMS.commands, COMMANDS_DURABLE);
      return ci.num_ack_pending === 0;
    }, 10_000, 'acks');
  });

  it('cancels a running job: the process is stopped and the job ends cancelled', async () => {
    const jobId = await submit({ command: ['sleep', '300'] });
    await eventually(async () => (await types(jobId)).includes('JobStarted'), 10_000, 'start');
    await publisher.publish(subjects.cancel('alice'), { jobId }, { msgId: randomUUID() });
    const events = await finished(jobId, 10_000);
    expect(events.map((e) => e.type).slice(-2)).toEqual(['JobCancelRequested', 'JobCancelled']);
    // JobCancelled can be stored before the executor has its own acknowledgement of the finished report.
    await eventually(() => executor.executor.running.length === 0, 5000, 'the executor to release the attempt');
    expect(spawnSync('pgrep', ['-fx', 'sleep 300']).stdout.toString()).toBe('');
  });

  it("ignores a cancel on another owner's subject", async () => {
    const jobId = await submit({ command: ['sleep', '1'] });
    await publisher.publish(subjects.cancel('mallory'), { jobId }, { msgId: randomUUID() });
    const events = await finished(jobId);
    expect(events.map((e) => e.type)).not.toContain('JobCancelRequested');
    expect(events.at(-1)?.type).toBe('JobCompleted');
  });

  it('fails a job with a source or data at once when there is no packager, saying why', async () => {
    const jobId = await submit({ command: 'ls', source: { git: { url: 'https://example.com/repo.git', commit: 'a'.repeat(40) } } });
    const events = await eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => e.type === 'JobPackagingFailed') ? h : undefined;
    }, 10_000, 'packaging to fail');
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackagingFailed']);
    expect(JSON.stringify(events[1].data)).toMatch(/no packager/);
  });

  it('fails a data-only job at once too when there is no packager: its data is never fetched unguarded', async () => {
    const jobId = await submit({ command: 'ls', data: [{ url: 'http://169.254.169.254/latest/meta-data/', path: 'md' }] });
    const events = await eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => e.type === 'JobPackagingFailed') ? h : undefined;
    }, 10_000, 'packaging to fail');
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackagingFailed']);
    expect(JSON.stringify(events[1].data)).toMatch(/no packager: jobs with a source or data/);
  });

  it("times out a job that runs past timeoutSeconds, then records the stopped attempt's usage and log bytes", async () => {
    const jobId = await submit({ command: 'echo twelve bytes; exec sleep 30', timeoutSeconds: 1 });
    const events = await finished(jobId, 15_000);
    expect(events.filter((e) => TERMINAL.includes(e.type)).map((e) => e.type)).toEqual(['JobTimedOut']);
    const stopped = await eventually(async () => (await history(jobId)).find((e) => e.type === 'JobAttemptStopped'), 15_000, 'the stopped report');
    expect(stopped.data).toMatchObject({ attempt: 1, logBytes: 'twelve bytes\n'.length, signal: 'SIGTERM' });
    expect((await types(jobId)).slice(-2)).toEqual(['JobTimedOut', 'JobAttemptStopped']);
  });

  it('with one slot, starts every high-priority job before any later-submitted low one', async () => {
    // A blocker holds the slot while the queue fills, so the order is the scheduler's, not the arrival's.
    const blocker = await submit({ command: ['sleep', '1'] });
    await eventually(async () => (await types(blocker)).includes('JobStarted'), 10_000, 'blocker start');
    const jobs: { id: string; priority: 'low' | 'normal' | 'high'; n: number }[] = [];
    for (let n = 0; n < 60; n++) {
      const priority = (['low', 'normal', 'high'] as const)[n % 3];
      jobs.push({ id: await submit({ command: 'true', priority }), priority, n });
    }
    const starts = new Map<string, number>();
    await eventually(async () => {
      for (const j of jobs) {
        if (starts.has(j.id)) continue;
        const started = (await history(j.id)).find((e) => e.type === 'JobStarted');
        if (started) starts.set(j.id, (await store.readStream(jobStreamName(j.id))).find((r) => r.type === 'JobStarted')!.position);
      }
      return starts.size === jobs.length;
    }, 60_000, 'all 60 jobs to start');
    const order = [...jobs].sort((a, b) => starts.get(a.id)! - starts.get(b.id)!);
    const rank = { high: 0, normal: 1, low: 2 };
    for (let i = 1; i < order.length; i++) {
      const [a, b] = [order[i - 1], order[i]];
      expect(rank[a.priority] < rank[b.priority] || (a.priority === b.priority && a.n < b.n)).toBe(true);
    }
    for (const j of jobs) expect((await finished(j.id)).at(-1)?.type).toBe('JobCompleted');
  });

  it('after an orchestrator restart, relays only what it had not relayed and keeps scheduling', async () => {
    const first = await submit({ command: 'true' });
    await finished(first);
    await eventually(async () => (await busMessages(first)).length === 5, 10_000, 'first relayed');
    await orch.stop();
    const whileDown = await submit({ command: 'echo later' });
    await startOrchestrator();
    await finished(whileDown);
    await eventually(async () => (await busMessages(whileDown)).length === 5, 10_000, 'second relayed');
    expect((await busMessages(first)).map((m) => m.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
  });

  it('after a restart from the lifecycle snapshot, a running job still times out and a job queued behind it then runs', async () => {
    const slow = await submit({ command: 'sleep 30', timeoutSeconds: 3 });
    await eventually(async () => (await types(slow)).includes('JobStarted'), 20_000, 'the slow job to start');
    await orch.stop();
    const snapshot = await new SqliteSnapshotStore({ db: store.database }).load(SCHEDULER_LIFECYCLE);
    expect(snapshot?.position).toBe(await store.headPosition());
    const behind = await submit({ command: 'true' }); // the one slot is taken: it waits in the queue
    await startOrchestrator();
    expect(orchestrator.scheduler.lifecycle.get(slow)).toMatchObject({ phase: 'running', attempt: 1, executorId: 'solo' });
    expect((await finished(slow)).at(-1)?.type).toBe('JobTimedOut');
    expect((await finished(behind)).map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
  });

  it("publishes every event again on its owner's subject, the same message, also after a restart of the relay (the owner from its lifecycle snapshot)", async () => {
    const jobId = randomUUID();
    const copies: Msg[] = [];
    const sub = nc.subscribe(`jobline.owner.*.evt.${jobId}.*`, { callback: (_err, m) => void copies.push(m) });
    await nc.flush();
    try {
      await submit({ command: 'sleep 1; echo done' }, 'bob', jobId);
      await eventually(() => copies.some((m) => m.subject.endsWith('.JobStarted')), 20_000, 'JobStarted on the owner subject');
      // A new relay knows the owner of the open job from its lifecycle fold, started from the snapshot.
      await orch.stop();
      await startOrchestrator();
      const events = await finished(jobId);
      await eventually(() => copies.some((m) => m.subject.endsWith('.JobCompleted')), 20_000, 'JobCompleted on the owner subject');
      // A restarted relay replays from its checkpoint, so a copy may repeat, with the same Nats-Msg-Id.
      const byId = new Map(copies.map((m) => [m.headers!.get('Nats-Msg-Id'), m]));
      const unique = [...byId.values()];
      expect(unique.map((m) => m.subject)).toEqual(events.map((e) => subjects.ownerEvent('bob', jobId, e.type)));
      expect([...byId.keys()]).toEqual((await store.readStream(jobStreamName(jobId))).map((r) => r.id));
      const stored = await eventually(async () => {
        const m = await busMessages(jobId);
        return m.length === events.length ? m : undefined;
      }, 10_000, 'every event relayed');
      expect(unique.map((m) => m.json<JobEventMessage>())).toEqual(stored);
    } finally {
      sub.unsubscribe();
    }
  });
});
