import { join } from 'node:path';
import { ValidationError, type JobStatus, type Priority } from '../../../../libs/contracts/src';
import { SqliteEventStore } from '../../../../libs/event-store/src';
import { SAFETY_CHECKPOINT_PAGES } from '../../../../libs/event-store/src/sqlite.checkpointer';
import { tempDir, type TempDir } from '../../../../libs/testing/src';
import { recordCommand, recordJob } from '../testing/job-history';
import { JOB_ORDERS, JobsProjection, type JobOrder, type ListJobsQuery } from './jobs.projection';

const PRIORITIES: Priority[] = ['low', 'normal', 'high'];
const RANK: Record<Priority, number> = { low: 0, normal: 1, high: 2 };

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function allPages(p: JobsProjection, q: Omit<ListJobsQuery, 'cursor'>): { ids: string[]; totals: Set<number>; pages: number } {
  const ids: string[] = [];
  const totals = new Set<number>();
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = p.list({ ...q, ...(cursor ? { cursor } : {}) });
    pages++;
    ids.push(...page.items.map((v) => v.id));
    totals.add(page.total);
    cursor = page.nextCursor ?? undefined;
  } while (cursor && pages < 1000);
  return { ids, totals, pages };
}

describe('JobsProjection (real SQLite event store)', () => {
  let dir: TempDir;
  let store: SqliteEventStore;

  beforeEach(() => {
    dir = tempDir('jobline-api-projection-');
    store = new SqliteEventStore({ path: join(dir.path, 'events.sqlite') });
  });
  afterEach(async () => {
    await store.close();
    dir.remove();
  });

  it('shows appended events once they are recorded, and waitFor resolves on the append', async () => {
    const p = new JobsProjection({ path: join(dir.path, 'read.sqlite') });
    p.start(store);
    try {
      const jobId = '00000000-0000-4000-8000-000000000001';
      expect(p.get(jobId)).toBeNull();
      const waiting = p.waitFor(jobId, 10_000);
      await recordJob(store, { jobId, owner: 'alice', spec: { command: ['echo', 'hi'], priority: 'high' }, idempotencyKey: 'k-1' });
      const seen = await waiting;
      expect(seen).toMatchObject({ id: jobId, owner: 'alice', priority: 'high' });
      await until(() => p.get(jobId)?.status === 'queued');
      expect(p.findByIdempotencyKey('alice', 'k-1')?.id).toBe(jobId);
      expect(p.findByIdempotencyKey('bob', 'k-1')).toBeNull();

      await recordCommand(store, jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-1', now: new Date().toISOString() } });
      const head = await store.headPosition();
      await expect(p.waitForPosition(head, 10_000)).resolves.toBe(true);
      expect(p.get(jobId)).toMatchObject({ status: 'running', executor: 'ex-1', attempt: 1 });
      expect(p.position).toBe(head);
      expect(p.health()).toEqual({ position: head, live: true, error: null });

      await expect(p.waitFor('00000000-0000-4000-8000-00000000dead', 50)).resolves.toBeNull();
      await expect(p.waitForPosition(head + 1000, 50)).resolves.toBe(false);
    } finally {
      await p.close();
    }
  });

  it('leaves its WAL checkpoints on the checkpoint thread after its catch-up (the catch-up raises the bound for itself only)', async () => {
    await recordJob(store, { jobId: '00000000-0000-4000-8000-0000000000c1', owner: 'alice', spec: { command: ['true'] } });
    const p = new JobsProjection({ path: join(dir.path, 'read.sqlite') });
    p.start(store);
    try {
      await expect(p.waitForPosition(await store.headPosition(), 10_000)).resolves.toBe(true);
      expect(p['db'].pragma('wal_autocheckpoint', { simple: true })).toBe(SAFETY_CHECKPOINT_PAGES);
      expect(p['checkpoints'].background).toBe(true);
    } finally {
      await p.close();
    }
  });

  it('tells change listeners of every event with the view it left, even when one batch holds several (pending, queued, running)', async () => {
    const jobId = '00000000-0000-4000-8000-000000000002';
    // Recorded before the projection starts, so its catch-up applies them as one batch.
    await recordJob(store, { jobId, owner: 'alice', spec: { command: ['true'] } });
    await recordCommand(store, jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-1', now: new Date().toISOString() } });
    const head = await store.headPosition();
    const p = new JobsProjection({ path: join(dir.path, 'read.sqlite') });
    const seen: { status: JobStatus; event: string; position: number }[] = [];
    p.onAnyChange((view, change) => seen.push({ status: view.status, event: change.type, position: change.position }));
    p.start(store);
    try {
      await expect(p.waitForPosition(head, 10_000)).resolves.toBe(true);
      expect(seen.map(({ status, event }) => [status, event])).toEqual([
        ['pending', 'JobSubmitted'],
        ['queued', 'JobQueued'],
        ['running', 'JobDispatched'],
      ]);
      expect(seen.map((s) => s.position)).toEqual([...seen.map((s) => s.position)].sort((a, b) => a - b));
    } finally {
      await p.close();
    }
  });

  it('lists 250 jobs with filters, every order, and keyset paging with no duplicate and no gap', async () => {
    const owners = ['alice', 'bob', 'carol'];
    const base = Date.parse('2025-01-01T00:00:00.000Z');
    const expected: { id: string; owner: string; priority: Priority; status: JobStatus; at: number }[] = [];
    for (let i = 0; i < 250; i++) {
      const owner = owners[i % 3];
      const priority = PRIORITIES[Math.floor(i / 3) % 3];
      // Several jobs share a timestamp, so the id tie-break is exercised.
      const at = base + Math.floor(i / 4) * 1000;
      const kind = i % 5;
      const until = kind === 0 ? 'running' : kind === 1 ? { exitCode: 0 } : kind === 2 ? { exitCode: 3 } : kind === 3 ? 'cancelled' : 'queued';
      const id = await recordJob(store, { owner, spec: { command: ['true'], priority }, now: new Date(at).toISOString(), until });
      const status: JobStatus = kind === 0 ? 'running' : kind === 1 ? 'succeeded' : kind === 2 ? 'failed' : kind === 3 ? 'cancelled' : 'queued';
      expected.push({ id, owner, priority, status, at });
    }
    const p = await JobsProjection.rebuild(store, join(dir.path, 'read.sqlite'));
    try {
      const sorted = (order: JobOrder, rows = expected) => {
        const key = (r: (typeof expected)[number]) => (order.endsWith('priority') ? [RANK[r.priority], r.at, r.id] : [r.at, r.id]);
        const cmp = (a: (typeof expected)[number], b: (typeof expected)[number]) => {
          const ka = key(a);
          const kb = key(b);
          for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
          return 0;
        };
        const asc = [...rows].sort(cmp).map((r) => r.id);
        return order.startsWith('-') ? asc.reverse() : asc;
      };

      for (const order of JOB_ORDERS) {
        for (const limit of [1, 7, 20, 100]) {
          const { ids, totals, pages } = allPages(p, { order, limit });
          expect(new Set(ids).size).toBe(ids.length);
          expect(ids).toEqual(sorted(order));
          expect([...totals]).toEqual([250]);
          expect(pages).toBe(Math.ceil(250 / limit));
        }
      }
      expect(p.list().items).toHaveLength(20);
      expect(p.list({ limit: 1000 }).items).toHaveLength(100);

      const filters: [ListJobsQuery, (r: (typeof expected)[number]) => boolean][] = [
        [{ owner: 'bob' }, (r) => r.owner === 'bob'],
        [{ status: ['running'] }, (r) => r.status === 'running'],
        [{ status: ['succeeded', 'failed'] }, (r) => r.status === 'succeeded' || r.status === 'failed'],
        [{ priority: ['high'] }, (r) => r.priority === 'high'],
        [{ owner: 'carol', status: ['queued'], priority: ['low', 'normal'] }, (r) => r.owner === 'carol' && r.status === 'queued' && r.priority !== 'high'],
      ];
      for (const [filter, match] of filters) {
        for (const order of ['-submittedAt', 'priority'] as JobOrder[]) {
          const want = sorted(order, expected.filter(match));
          expect(want.length).toBeGreaterThan(0);
          const { ids, totals } = allPages(p, { ...filter, order, limit: 9 });
          expect(ids).toEqual(want);
          expect([...totals]).toEqual([want.length]);
        }
      }
      expect(p.list({ owner: 'nobody' })).toEqual({ items: [], total: 0, nextCursor: null });

      const counts = (rows: typeof expected) => {
        const c: Record<JobStatus, number> = { pending: 0, queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, timed_out: 0 };
        for (const r of rows) c[r.status]++;
        return c;
      };
      expect(p.countByStatus()).toEqual(counts(expected));
      expect(p.countByStatus('bob')).toEqual(counts(expected.filter((r) => r.owner === 'bob')));
      expect(p.countByStatus('nobody')).toEqual(counts([]));

      const first = p.list({ order: '-priority', limit: 5 });
      expect(() => p.list({ order: 'submittedAt', cursor: first.nextCursor! })).toThrow(ValidationError);
      for (const bad of ['%%%', 'bm90IGpzb24', Buffer.from('["-priority",1]').toString('base64url'), Buffer.from('["-priority","x",1,"a"]').toString('base64url')]) {
        expect(() => p.list({ order: '-priority', cursor: bad })).toThrow(ValidationError);
      }
    } finally {
      await p.close();
    }
  });

  it('keeps its checkpoint across a reopen and continues without applying an event twice', async () => {
    const path = join(dir.path, 'read.sqlite');
    const a = await recordJob(store, { owner: 'alice', until: { exitCode: 0 } });
    const p1 = new JobsProjection({ path });
    p1.start(store);
    const head1 = await store.headPosition();
    await expect(p1.waitForPosition(head1, 10_000)).resolves.toBe(true);
    await p1.close();

    const b = await recordJob(store, { owner: 'bob', until: 'running' });
    await recordCommand(store, a, { type: 'PurgeJob', data: { actor: { id: 'admin', admin: true }, now: new Date().toISOString() } });
    const head2 = await store.headPosition();

    const p2 = new JobsProjection({ path });
    try {
      expect(p2.position).toBe(head1);
      const events = await store.readAll({ after: head1 });
      // Only what was appended while it was closed is read again.
      await expect(p2.catchUp(store)).resolves.toBe(events.length);
      expect(p2.position).toBe(head2);
      expect(p2.get(a)).toMatchObject({ status: 'succeeded', purged: true });
      expect(p2.get(b)).toMatchObject({ status: 'running' });
      p2.start(store);
      const c = await recordJob(store, { owner: 'carol' });
      await expect(p2.waitFor(c, 10_000)).resolves.toMatchObject({ owner: 'carol' });
      const fresh = await JobsProjection.rebuild(store, join(dir.path, 'again.sqlite'));
      await p2.waitForPosition(await store.headPosition(), 10_000);
      expect(p2.dump()).toEqual(fresh.dump());
      await fresh.close();
    } finally {
      await p2.close();
    }
  });

  it('rebuilds from position 0 into a new file exactly what the live projection holds', async () => {
    const live = new JobsProjection({ path: join(dir.path, 'live.sqlite'), cacheSize: 10 });
    live.start(store);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) {
        const until = i % 4 === 0 ? 'running' : i % 4 === 1 ? { exitCode: i % 3, logBytes: i } : i % 4 === 2 ? 'cancelled' : 'queued';
        ids.push(await recordJob(store, { owner: `o${i % 4}`, spec: { command: `echo ${i}`, priority: PRIORITIES[i % 3] }, idempotencyKey: i % 2 ? `key-${i}` : undefined, until }));
      }
      // Events of a stream that is not a job's are skipped but still move the checkpoint.
      await store.appendToStream('audit-1', [{ id: '00000000-0000-4000-8000-0000000000aa', type: 'Noted', data: {}, metadata: {} }], 'any');
      const head = await store.headPosition();
      await expect(live.waitForPosition(head, 10_000)).resolves.toBe(true);
      const rebuilt = await JobsProjection.rebuild(store, join(dir.path, 'rebuilt.sqlite'));
      try {
        const a = live.dump();
        expect(a.position).toBe(head);
        expect(a.jobs).toHaveLength(60);
        expect(a.idempotency).toHaveLength(30);
        expect(rebuilt.dump()).toEqual(a);
      } finally {
        await rebuilt.close();
      }
      // Rebuilding over an existing file starts from scratch, not from its checkpoint.
      const again = await JobsProjection.rebuild(store, join(dir.path, 'rebuilt.sqlite'));
      expect(again.dump()).toEqual(live.dump());
      await again.close();
    } finally {
      await live.close();
    }
  });
});
