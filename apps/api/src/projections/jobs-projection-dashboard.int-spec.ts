import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SqliteEventStore } from '../../../../libs/event-store/src';
import { tempDir, type TempDir } from '../../../../libs/testing/src';
import { recordJob } from '../testing/job-history';
import { JobsProjection } from './jobs.projection';

/** What the dashboard asks of the read model: executor and time filters, the throughput timeline, and a schema upgrade. */
describe('JobsProjection for the dashboard (real SQLite event store)', () => {
  let dir: TempDir;
  let store: SqliteEventStore;
  const T0 = Date.parse('2025-01-31T12:00:00.000Z');
  const at = (minutes: number, seconds = 0) => new Date(T0 + minutes * 60_000 + seconds * 1000).toISOString();

  beforeEach(() => {
    dir = tempDir('jobline-projection-dashboard-');
    store = new SqliteEventStore({ path: join(dir.path, 'events.sqlite') });
  });
  afterEach(async () => {
    await store.close();
    dir.remove();
  });

  it('filters by executor and submission time, and counts submitted and finished jobs per bucket', async () => {
    const queued = await recordJob(store, { owner: 'alice', now: at(0, 10) });
    const ok = await recordJob(store, { owner: 'alice', now: at(1, 5), until: { exitCode: 0 } });
    const bad = await recordJob(store, { owner: 'bob', now: at(1, 30), until: { exitCode: 3 } });
    const running = await recordJob(store, { owner: 'bob', now: at(3), until: 'running' });
    const cancelled = await recordJob(store, { owner: 'alice', now: at(4), until: 'cancelled' });
    const p = await JobsProjection.rebuild(store, join(dir.path, 'read.sqlite'));
    try {
      const ids = (q: Parameters<JobsProjection['list']>[0]) => p.list({ ...q, order: 'submittedAt' }).items.map((v) => v.id);
      expect(ids({ executor: ['ex-1'] })).toEqual([ok, bad, running]);
      expect(ids({ executor: ['elsewhere'] })).toEqual([]);
      expect(ids({ submittedFrom: Date.parse(at(1)), submittedTo: Date.parse(at(4)) })).toEqual([ok, bad, running]);
      expect(ids({ submittedFrom: Date.parse(at(4)) })).toEqual([cancelled]);
      expect(p.list({ executor: ['ex-1'], owner: 'bob' }).total).toBe(2);
      expect(queued).toBeDefined();

      const zero = { submitted: 0, succeeded: 0, failed: 0, cancelled: 0, timedOut: 0 };
      const buckets = p.timeline({ from: T0, to: T0 + 5 * 60_000, bucketMs: 60_000 });
      expect(buckets).toEqual([
        { start: T0, ...zero, submitted: 1 },
        { start: T0 + 60_000, ...zero, submitted: 2, succeeded: 1, failed: 1 },
        { start: T0 + 120_000, ...zero },
        { start: T0 + 180_000, ...zero, submitted: 1 },
        { start: T0 + 240_000, ...zero, submitted: 1, cancelled: 1 },
      ]);
      expect(p.timeline({ from: T0, to: T0 + 5 * 60_000, bucketMs: 300_000, owner: 'bob' })).toEqual([{ start: T0, ...zero, submitted: 2, failed: 1 }]);
      expect(() => p.timeline({ from: T0, to: T0 + 1001, bucketMs: 1 })).toThrow(/at most 1000 buckets/);
    } finally {
      await p.close();
    }
  });

  it('rebuilds a read model written by the previous schema from position 0', async () => {
    const id = await recordJob(store, { owner: 'alice', now: at(0), until: { exitCode: 0 } });
    const path = join(dir.path, 'old.sqlite');
    // The schema before executor and finished_at existed, with a checkpoint past every event.
    const old = new Database(path);
    old.exec(`CREATE TABLE jobs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, submitted_at INTEGER NOT NULL, view TEXT NOT NULL);
      CREATE TABLE idempotency (owner TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (owner, key)) WITHOUT ROWID;
      CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), position INTEGER NOT NULL);
      INSERT INTO checkpoint VALUES (0, 1000);`);
    old.close();
    const warnings: string[] = [];
    const p = new JobsProjection({ path, onWarning: (m) => warnings.push(m) });
    try {
      expect(p.position).toBe(-1);
      expect(warnings.join('\n')).toMatch(/rebuilding it from position 0/);
      await p.catchUp(store);
      expect(p.list({ executor: ['ex-1'] }).items.map((v) => v.id)).toEqual([id]);
      expect(p.dump().jobs[0]).toMatchObject({ id, executor: 'ex-1', finishedAt: T0 });
    } finally {
      await p.close();
    }
    // Opened again by the same build, it keeps its rows.
    const again = new JobsProjection({ path });
    try {
      expect(again.position).toBeGreaterThanOrEqual(0);
      expect(again.get(id)?.status).toBe('succeeded');
    } finally {
      await again.close();
    }
  });
});
