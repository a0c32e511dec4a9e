import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { JOB_STREAM_PREFIX, JobSpecSchema, decodeJobEvent, type JobSpec } from '../../../libs/contracts/src';
import { LIFECYCLE_VERSION, Lifecycle } from '../../../libs/domain/src';
import { SqliteCheckpointStore, SqliteEventStore, SqliteSnapshotStore } from '../../../libs/event-store/src';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';
import { connectNats } from '../../../libs/messaging/src/connection';
import { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { JobCommandHandler, type CommandMeta } from './job-command.handler';
import { Relay } from './relay';
import { SCHEDULER_LIFECYCLE, Scheduler } from './scheduler';

/**
 * Start-up from a checkpoint of the lifecycle fold (README "One lifecycle fold, checkpointed
 * start-up"), on a real SQLite store and snapshot table: a scheduler (and a relay) started
 * from the snapshot subscribes from its position, not from 0, and holds exactly what a fold
 * of the whole store from position 0 holds; a snapshot of another version is not read.
 */

const quiet = { log: () => undefined, warn: () => undefined, debug: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const meta = (jobId: string): CommandMeta => ({ actor: 'test', causationId: 'test-command', correlationId: jobId });
const HOUR = 3600;

/** The lifecycle of the whole store, folded from position 0. */
async function foldFromZero(store: EventStore): Promise<Lifecycle> {
  const fold = new Lifecycle();
  for (let after = -1; ; ) {
    const page = await store.readAll({ after, maxCount: 1000 });
    if (page.length === 0) return fold;
    for (const rec of page) {
      if (rec.streamId.startsWith(JOB_STREAM_PREFIX)) {
        const e = decodeJobEvent(rec);
        fold.apply(e.metadata.jobId, e, rec.position);
      }
      fold.position = rec.position;
      after = rec.position;
    }
  }
}

const byId = (fold: Lifecycle) => new Map([...fold.values()].map((j) => [j.jobId, j]));

/** Remembers where each subscription of the store starts. */
function watchedStore(store: SqliteEventStore): { store: EventStore; subscribedAfter: number[] } {
  const subscribedAfter: number[] = [];
  const watched: EventStore = Object.create(store) as EventStore;
  watched.subscribeToAll = (options) => {
    subscribedAfter.push(options?.after ?? -1);
    return store.subscribeToAll(options);
  };
  return { store: watched, subscribedAfter };
}

describe('lifecycle checkpoints: start from a snapshot equals a fold from 0 (SQLite)', () => {
  let dir: TempDir;
  let events: SqliteEventStore;
  let snapshots: SqliteSnapshotStore;
  let handler: JobCommandHandler;
  const started: Scheduler[] = [];

  const spec = (s: object): JobSpec => JobSpecSchema.parse({ command: ['true'], ...s });

  /** A mix of histories: queued, dispatched, running (with a timeout), waiting for a retry, cancel requested, finished. */
  async function history(count: number): Promise<void> {
    const now = () => new Date().toISOString();
    for (let i = 0; i < count; i++) {
      const jobId = randomUUID();
      const kind = i % 6;
      const s = spec(kind === 3 ? { retry: { maxAttempts: 3, backoffSeconds: HOUR } } : { timeoutSeconds: HOUR, priority: (['low', 'normal', 'high'] as const)[i % 3] });
      const run = (c: Parameters<JobCommandHandler['execute']>[1]) => handler.execute(jobId, c, meta(jobId));
      await run({ type: 'SubmitJob', data: { jobId, owner: `owner-${i % 4}`, spec: s, now: now() } });
      if (kind === 0) continue; // queued
      await run({ type: 'DispatchJob', data: { attempt: 1, executorId: `e${i % 2}`, now: now() } });
      if (kind === 1) continue; // dispatched
      await run({ type: 'RecordStarted', data: { attempt: 1, executorId: `e${i % 2}`, startedAt: now(), sandbox: 'none' } });
      if (kind === 2) continue; // running, with a timeout deadline
      const finished = { signal: null, oomKilled: false, durationMs: 1, finishedAt: now(), usage: null, logBytes: 0 };
      if (kind === 3) await run({ type: 'RecordFinished', data: { attempt: 1, exitCode: 1, ...finished } }); // retry wait
      else if (kind === 4) await run({ type: 'RequestCancel', data: { actor: { id: 'test', admin: true }, now: now() } }); // cancel requested
      else await run({ type: 'RecordFinished', data: { attempt: 1, exitCode: 0, ...finished } }); // finished: not in the fold
    }
  }

  async function startScheduler(store: EventStore, withSnapshots = true): Promise<Scheduler> {
    // Standing by: it follows the history and decides nothing, so the store changes only by the test's hand.
    const s = new Scheduler({ eventStore: store, handler, logger: quiet, acting: () => false, snapshots: withSnapshots ? snapshots : undefined, snapshotEvery: 25 });
    started.push(s);
    await s.start();
    return s;
  }

  beforeEach(() => {
    dir = tempDir('jobline-lifecycle-checkpoint-');
    events = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    snapshots = new SqliteSnapshotStore({ db: events.database });
    handler = new JobCommandHandler({ eventStore: events });
  });

  afterEach(async () => {
    for (const s of started.splice(0)) await s.stop();
    await events.close();
    dir.remove();
  });

  it('starts from the snapshot, folds only what came after it, and holds what a fold from position 0 holds', async () => {
    await history(30);
    const first = await startScheduler(events);
    await history(12); // followed live; snapshots every 25 positions
    const head1 = await events.headPosition();
    await waitFor(() => first.lifecycle.position === head1);
    await first.stop();
    started.splice(0);
    const snap = await snapshots.load<{ version: number }>(SCHEDULER_LIFECYCLE);
    expect(snap?.position).toBe(head1);
    expect(snap?.state.version).toBe(LIFECYCLE_VERSION);

    await history(18); // stored while no scheduler ran: the next start folds these from the snapshot on
    const head2 = await events.headPosition();
    const { store, subscribedAfter } = watchedStore(events);
    const second = await startScheduler(store);
    expect(subscribedAfter).toEqual([head1]);
    expect(second.lifecycle.position).toBe(head2);

    const expected = await foldFromZero(events);
    expect(expected.size).toBeGreaterThan(40);
    expect(byId(second.lifecycle)).toEqual(byId(expected));
    // The same as a scheduler that read the whole store, queue included.
    const fromZero = await startScheduler(events, false);
    expect(byId(fromZero.lifecycle)).toEqual(byId(expected));
    expect(second.queuedCount).toBe(fromZero.queuedCount);
    expect(second.queuedCount).toBe([...expected.values()].filter((j) => j.phase === 'queued').length);
  });

  it('ignores a snapshot of another version (folds from position 0) and never misreads it', async () => {
    await history(12);
    const head = await events.headPosition();
    // A snapshot of a future shape, at the head: read as this version, it would hold no jobs at all.
    await snapshots.save(SCHEDULER_LIFECYCLE, head, { version: LIFECYCLE_VERSION + 1, jobs: [] });
    const { store, subscribedAfter } = watchedStore(events);
    const s = await startScheduler(store);
    expect(subscribedAfter).toEqual([-1]);
    expect(byId(s.lifecycle)).toEqual(byId(await foldFromZero(events)));
    expect(s.lifecycle.size).toBe(10);
  });

  describe('relay', () => {
    let server: RunningNatsServer;
    let nc: NatsConnection;

    beforeEach(async () => {
      server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
      nc = await connectNats({ servers: server.url, name: 'lifecycle-checkpoint-test' });
      await ensureStreams(await jetstreamManager(nc));
    });
    afterEach(async () => {
      await nc.drain();
      await server.stop();
    });

    it('starts from its snapshot, brought up to its checkpoint, equal to a fold from position 0', async () => {
      const checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
      const relay = (store: EventStore) =>
        new Relay({ eventStore: store, checkpoints, snapshots, snapshotEvery: 25, publisher: new JetStreamPublisher(jetstream(nc)), core: nc, jobs: handler, logger: quiet });
      try {
        await history(30);
        const first = relay(events);
        await first.start();
        await first.waitFor(await events.headPosition());
        await first.stop();
        const saved = await snapshots.load('lifecycle:relay');
        expect(saved?.position).toBe(await events.headPosition());
        await history(12);
        const head = await events.headPosition();
        const { store, subscribedAfter } = watchedStore(events);
        const second = relay(store);
        await second.start();
        expect(subscribedAfter).toEqual([saved!.position]);
        await second.waitFor(head);
        expect(byId(second.lifecycle)).toEqual(byId(await foldFromZero(events)));
        await second.stop();
      } finally {
        await checkpoints.close();
      }
    });
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
