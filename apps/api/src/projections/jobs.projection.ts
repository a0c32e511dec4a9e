import Database from 'better-sqlite3';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  JOB_STATUSES,
  JOB_STREAM_PREFIX,
  UnknownEventError,
  ValidationError,
  decodeJobEvent,
  isTerminal,
  type JobStatus,
  type JobView,
  type Priority,
} from '../../../../libs/contracts/src';
import { PRIORITY_RANK, evolveJobView } from '../../../../libs/domain/src';
import type { EventStore, RecordedEvent, Subscription } from '../../../../libs/event-store/src/event-store.port';
import { checkpointInBackground, type BackgroundCheckpoints } from '../../../../libs/event-store/src/sqlite.checkpointer';

export interface JobsProjectionOptions {
  /** SQLite file of the read model (created with its folder), or ':memory:'. */
  path: string;
  /** Views kept in memory between batches, so a busy job is not re-read and re-parsed (default 20,000). */
  cacheSize?: number;
  /** Events read per query while catching up (default 5,000). */
  readBatchSize?: number;
  /** Most events applied in one transaction while live (default 5,000). */
  maxBatch?: number;
  /** Pause before re-subscribing after the store's subscription failed (default 1,000 ms). */
  retryDelayMs?: number;
  /** Told about skipped unknown events and subscription failures (default: silent). */
  onWarning?: (message: string, error?: unknown) => void;
}

export { JOB_ORDERS, type JobOrder } from '../../../../libs/contracts/src/job-view';
import type { JobOrder } from '../../../../libs/contracts/src/job-view';

export interface ListJobsQuery {
  status?: JobStatus[];
  priority?: Priority[];
  owner?: string;
  /** Jobs whose latest attempt ran (or runs) on one of these executors. */
  executor?: string[];
  /** Submitted at or after this instant (epoch ms). */
  submittedFrom?: number;
  /** Submitted before this instant (epoch ms). */
  submittedTo?: number;
  /** Default 20, at most 100. */
  limit?: number;
  /** Opaque, from a previous page's nextCursor (same order). */
  cursor?: string;
  /** Default '-submittedAt'. */
  order?: JobOrder;
}

export interface JobsPage {
  items: JobView[];
  /** Rows matching the filters, all pages together. */
  total: number;
  nextCursor: string | null;
}

/** Every row, sorted, so two projections can be compared for equality. */
export interface JobsProjectionDump {
  position: number;
  jobs: { id: string; owner: string; status: string; priority: number; submittedAt: number; finishedAt: number | null; executor: string | null; view: string }[];
  idempotency: { owner: string; key: string; jobId: string }[];
}

export interface ProjectionHealth {
  /** Last applied store position (-1 before the first event). */
  position: number;
  /** Subscribed and past the initial catch-up. */
  live: boolean;
  /** Why the subscription is down, while it retries. */
  error: string | null;
}

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;
/** Most buckets one timeline answers with. */
export const MAX_TIMELINE_BUCKETS = 1_000;

export interface TimelineQuery {
  /** Epoch ms, inclusive; the first bucket starts here. */
  from: number;
  /** Epoch ms, exclusive. */
  to: number;
  bucketMs: number;
  owner?: string;
}

/** Jobs submitted and finished (by terminal status) in each bucket of [from, to). */
export interface TimelineBucket {
  /** Start of the bucket (epoch ms). */
  start: number;
  submitted: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  timedOut: number;
}

/*
 * Bump when the tables or the view fold (evolveJobView) change: a file of another version is emptied and rebuilt from
 * position 0 of the store (the read model is derived, so nothing is lost).
 */
const SCHEMA_VERSION = 5;

/*
 * submitted_at is epoch ms, so ordering never depends on how a timestamp was spelled.
 * Priority orders break ties by submission time, then id, all in the same direction, so
 * one row-value comparison is the keyset and one index serves both directions.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id           TEXT    PRIMARY KEY,
  owner        TEXT    NOT NULL,
  status       TEXT    NOT NULL,
  priority     INTEGER NOT NULL,
  submitted_at INTEGER NOT NULL,
  finished_at  INTEGER,
  executor     TEXT,
  view         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at, id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_executor_submitted ON jobs (executor, submitted_at, id);
CREATE INDEX IF NOT EXISTS jobs_owner_submitted ON jobs (owner, submitted_at, id);
CREATE INDEX IF NOT EXISTS jobs_status_submitted ON jobs (status, submitted_at, id);
CREATE INDEX IF NOT EXISTS jobs_priority ON jobs (priority, submitted_at, id);
CREATE TABLE IF NOT EXISTS idempotency (
  owner  TEXT NOT NULL,
  key    TEXT NOT NULL,
  job_id TEXT NOT NULL,
  PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (
  id       INTEGER PRIMARY KEY CHECK (id = 0),
  position INTEGER NOT NULL
);
INSERT OR IGNORE INTO checkpoint (id, position) VALUES (0, -1);
`;

type Statement = Database.Statement<unknown[], unknown>;
type Listener = (view: JobView) => void;

/** The event that changed a job (what a global listener is told with the view as that event left it). */
export interface JobChange {
  type: string;
  position: number;
  occurredAt: string;
}
type AnyListener = (view: JobView, change: JobChange) => void;

interface OrderSpec {
  columns: string[];
  desc: boolean;
}
const ORDER_SPECS: Record<JobOrder, OrderSpec> = {
  '-submittedAt': { columns: ['submitted_at', 'id'], desc: true },
  submittedAt: { columns: ['submitted_at', 'id'], desc: false },
  '-priority': { columns: ['priority', 'submitted_at', 'id'], desc: true },
  priority: { columns: ['priority', 'submitted_at', 'id'], desc: false },
};

/**
 * The jobs read model: JobViews folded from the event store into SQLite, with the
 * checkpoint written in the same transaction as the rows it covers, so a restart
 * continues exactly where the last commit ended (no event applied twice or skipped).
 * Events are applied in batches (one transaction per batch); a bounded map of hot views
 * saves re-reading and re-parsing rows that are about to change again.
 */
export class JobsProjection {
  private readonly db: Database.Database;
  private readonly checkpoints: BackgroundCheckpoints;
  private readonly cache = new Map<string, JobView>();
  private readonly cacheSize: number;
  private readonly readBatchSize: number;
  private readonly maxBatch: number;
  private readonly retryDelayMs: number;
  private readonly warn: (message: string, error?: unknown) => void;
  private readonly selectView: Statement;
  private readonly upsertJob: Statement;
  private readonly insertKey: Statement;
  private readonly selectKey: Statement;
  private readonly saveCheckpoint: Statement;
  private readonly countAll: Statement;
  private readonly countOfOwner: Statement;
  private readonly listStatements = new Map<string, { page: Statement; count: Statement }>();
  private readonly applyTx: (views: Map<string, JobView>, keys: [string, string, string][], position: number) => void;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly anyListeners = new Set<AnyListener>();
  private positionWaiters: { position: number; resolve: (ok: boolean) => void }[] = [];
  private checkpoint: number;
  private subscription: Subscription | null = null;
  private running = false;
  private live = false;
  private lastError: string | null = null;
  private loop: Promise<void> | null = null;
  private wakeRetry: (() => void) | null = null;

  /** The SQLite file (null in memory). */
  readonly file: string | null;

  constructor(options: JobsProjectionOptions) {
    this.file = options.path === ':memory:' ? null : options.path;
    this.cacheSize = Math.max(0, options.cacheSize ?? 20_000);
    this.readBatchSize = Math.max(1, options.readBatchSize ?? 5_000);
    this.maxBatch = Math.max(1, options.maxBatch ?? 5_000);
    this.retryDelayMs = options.retryDelayMs ?? 1_000;
    this.warn = options.onWarning ?? (() => undefined);
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    // A projection is rebuildable: losing the last commits to a power cut costs a short replay.
    this.db.pragma('synchronous = NORMAL');
    // Its WAL checkpoints (and their fsyncs) on the process's checkpoint thread, not inside applyBatch's commits.
    this.checkpoints = checkpointInBackground(this.db, options.path);
    this.migrate();
    this.db.exec(SCHEMA);
    this.selectView = this.db.prepare('SELECT view FROM jobs WHERE id = ?').pluck();
    this.upsertJob = this.db.prepare(
      `INSERT INTO jobs (id, owner, status, priority, submitted_at, finished_at, executor, view) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, priority = excluded.priority, finished_at = excluded.finished_at,
         executor = excluded.executor, view = excluded.view`,
    );
    // The first submission with a key owns it; a later one reusing it must not take it over.
    this.insertKey = this.db.prepare('INSERT OR IGNORE INTO idempotency (owner, key, job_id) VALUES (?, ?, ?)');
    this.selectKey = this.db.prepare('SELECT job_id FROM idempotency WHERE owner = ? AND key = ?').pluck();
    this.saveCheckpoint = this.db.prepare('UPDATE checkpoint SET position = ? WHERE id = 0');
    this.countAll = this.db.prepare('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status');
    this.countOfOwner = this.db.prepare('SELECT status, COUNT(*) AS n FROM jobs WHERE owner = ? GROUP BY status');
    this.checkpoint = this.db.prepare('SELECT position FROM checkpoint WHERE id = 0').pluck().get() as number;
    this.applyTx = this.db.transaction((views: Map<string, JobView>, keys: [string, string, string][], position: number) => {
      for (const v of views.values()) {
        const finishedAt = v.finishedAt !== null && isTerminal(v.status) ? epochMs(v.finishedAt) : null;
        this.upsertJob.run(v.id, v.owner, v.status, PRIORITY_RANK[v.priority] ?? 1, epochMs(v.submittedAt), finishedAt, v.executor, JSON.stringify(v));
      }
      for (const k of keys) this.insertKey.run(k[0], k[1], k[2]);
      this.saveCheckpoint.run(position);
    });
  }

  /**
   * A fresh projection built from position 0 of `store` into `targetPath` (replaced if it
   * exists); not subscribed. With `until`, only the events up to that position: the read model
   * as it stood when the store's log ended there.
   */
  static async rebuild(store: EventStore, targetPath: string, options: Omit<JobsProjectionOptions, 'path'> & { until?: number } = {}): Promise<JobsProjection> {
    if (targetPath !== ':memory:') for (const suffix of ['', '-wal', '-shm']) rmSync(targetPath + suffix, { force: true });
    const projection = new JobsProjection({ ...options, path: targetPath });
    // A half-built file is thrown away, never resumed, so it need not survive a power cut:
    // skipping every fsync until it is complete is safe here.
    projection.db.pragma('synchronous = OFF');
    try {
      await projection.catchUp(store, options.until);
    } catch (err) {
      await projection.close();
      throw err;
    } finally {
      if (projection.db.open) projection.db.pragma('synchronous = NORMAL');
    }
    return projection;
  }

  /** Last applied store position (the checkpoint); -1 before the first event. */
  get position(): number {
    return this.checkpoint;
  }

  health(): ProjectionHealth {
    return { position: this.checkpoint, live: this.live, error: this.lastError };
  }

  /**
   * Catches up with readAll pages (the fast path for a rebuild), then follows the store's
   * subscription from the checkpoint until stop(). Retries after a failed subscription.
   */
  start(store: EventStore): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run(store);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.live = false;
    this.wakeRetry?.();
    await this.subscription?.close();
    await this.loop;
    this.loop = null;
  }

  async close(): Promise<void> {
    await this.stop();
    for (const w of this.positionWaiters) w.resolve(false);
    this.positionWaiters = [];
    await this.checkpoints.release();
    if (this.db.open) this.db.close();
  }

  /** Applies every stored event after the checkpoint (up to position `until`, if given), page by page; returns how many were applied. */
  async catchUp(store: EventStore, until = Number.POSITIVE_INFINITY): Promise<number> {
    let read = 0;
    // Checkpointing the WAL costs an fsync; during a bulk catch-up doing it every 64 MiB
    // instead of every 4 MiB triples the rebuild rate, at no cost in durability.
    // Given back as it was after: the checkpoint thread's bound (sqlite.checkpointer.ts), or SQLite's 1,000 without it.
    const autocheckpoint = this.db.pragma('wal_autocheckpoint', { simple: true }) as number;
    this.db.pragma('wal_autocheckpoint = 16384');
    try {
      for (;;) {
        if (this.checkpoint >= until) return read;
        const page = await store.readAll({ after: this.checkpoint, maxCount: this.readBatchSize });
        const upTo = page.length > 0 && page[page.length - 1].position > until ? page.filter((r) => r.position <= until) : page;
        if (upTo.length === 0) return read;
        this.applyBatch(upTo);
        read += upTo.length;
        if (upTo.length < this.readBatchSize) return read;
      }
    } finally {
      // Unless it was changed meanwhile (the checkpoint thread ended: SQLite's inline checkpoint again).
      if (this.db.open && this.db.pragma('wal_autocheckpoint', { simple: true }) === 16384) this.db.pragma(`wal_autocheckpoint = ${autocheckpoint}`);
    }
  }

  get(id: string): JobView | null {
    const hot = this.cache.get(id);
    if (hot) return hot;
    const json = this.selectView.get(id) as string | undefined;
    if (json === undefined) return null;
    const view = JSON.parse(json) as JobView;
    this.remember(id, view);
    return view;
  }

  findByIdempotencyKey(owner: string, key: string): JobView | null {
    const jobId = this.selectKey.get(owner, key) as string | undefined;
    return jobId === undefined ? null : this.get(jobId);
  }

  /** The job as soon as it is visible here, or null after timeoutMs. Woken by the apply loop, no polling. */
  waitFor(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobView | null> {
    const now = this.get(jobId);
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const off = this.onChange(jobId, (view) => {
        clearTimeout(timer);
        off();
        resolve(view);
      });
      const giveUp = () => {
        clearTimeout(timer);
        off();
        resolve(null);
      };
      const timer = setTimeout(giveUp, timeoutMs);
      // Aborted (e.g. the submission was refused): stop waiting at once.
      signal?.addEventListener('abort', giveUp, { once: true });
    });
  }

  /** True once the checkpoint reaches `position`, false after timeoutMs. */
  waitForPosition(position: number, timeoutMs: number): Promise<boolean> {
    if (this.checkpoint >= position) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        position,
        resolve: (ok: boolean) => {
          clearTimeout(timer);
          resolve(ok);
        },
      };
      const timer = setTimeout(() => {
        this.positionWaiters = this.positionWaiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.positionWaiters.push(waiter);
    });
  }

  /** Calls `listener` with every new view of the job committed from now on; returns the unsubscribe. */
  onChange(jobId: string, listener: Listener): () => void {
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(jobId) === set) this.listeners.delete(jobId);
    };
  }

  /**
   * Calls `listener` for every job event committed from now on, in store order, with the view
   * as that event left it: a job submitted, queued and dispatched in one batch is told as
   * pending, queued, then running (never sampled once per batch). Returns the unsubscribe.
   */
  onAnyChange(listener: AnyListener): () => void {
    this.anyListeners.add(listener);
    return () => void this.anyListeners.delete(listener);
  }

  list(query: ListJobsQuery = {}): JobsPage {
    const order = query.order ?? '-submittedAt';
    const spec = ORDER_SPECS[order];
    const limit = Math.min(MAX_LIMIT, Math.max(1, query.limit ?? DEFAULT_LIMIT));
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.owner !== undefined) {
      where.push('owner = ?');
      params.push(query.owner);
    }
    if (query.status?.length) {
      where.push(`status IN (${query.status.map(() => '?').join(', ')})`);
      params.push(...query.status);
    }
    if (query.priority?.length) {
      where.push(`priority IN (${query.priority.map(() => '?').join(', ')})`);
      params.push(...query.priority.map((p) => PRIORITY_RANK[p]));
    }
    if (query.executor?.length) {
      where.push(`executor IN (${query.executor.map(() => '?').join(', ')})`);
      params.push(...query.executor);
    }
    if (query.submittedFrom !== undefined) {
      where.push('submitted_at >= ?');
      params.push(query.submittedFrom);
    }
    if (query.submittedTo !== undefined) {
      where.push('submitted_at < ?');
      params.push(query.submittedTo);
    }
    const after = query.cursor === undefined ? null : decodeCursor(query.cursor, order);
    const statements = this.listStatementsFor(order, where, after !== null);
    const total = statements.count.get(...params) as number;
    const rows = statements.page.all(...params, ...(after ?? []), limit + 1) as { view: string; priority: number; submitted_at: number; id: string }[];
    const more = rows.length > limit;
    if (more) rows.length = limit;
    const last = rows[rows.length - 1];
    return {
      items: rows.map((r) => JSON.parse(r.view) as JobView),
      total,
      nextCursor: more && last ? encodeCursor(order, spec.columns.map((c) => last[c as keyof typeof last])) : null,
    };
  }

  /**
   * Executors with attempts on them (jobs `running`: dispatched or started), by id: how many
   * attempts of every owner, and the jobs of `owner` (undefined: every owner's), oldest
   * submission first. A job's executor is that of its current attempt (JobDispatched).
   */
  executorLoad(owner?: string): { id: string; running: number; jobs: JobView[] }[] {
    const rows = this.db
      .prepare("SELECT executor, owner, view FROM jobs WHERE status = 'running' AND executor IS NOT NULL ORDER BY executor, submitted_at, id")
      .all() as { executor: string; owner: string; view: string }[];
    const out: { id: string; running: number; jobs: JobView[] }[] = [];
    for (const r of rows) {
      let last = out[out.length - 1];
      if (!last || last.id !== r.executor) out.push((last = { id: r.executor, running: 0, jobs: [] }));
      last.running += 1;
      if (owner === undefined || r.owner === owner) last.jobs.push(JSON.parse(r.view) as JobView);
    }
    return out;
  }

  /** How many jobs are in each status, all owners' or one owner's (every status present, 0 when none). */
  countByStatus(owner?: string): Record<JobStatus, number> {
    const rows = (owner === undefined ? this.countAll.all() : this.countOfOwner.all(owner)) as { status: JobStatus; n: number }[];
    const counts = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
    for (const r of rows) counts[r.status] = r.n;
    return counts;
  }

  /**
   * Throughput over time: per bucket of [from, to), the jobs submitted in it and the jobs
   * that reached each terminal status in it (by finishedAt). Every bucket is present.
   */
  timeline(query: TimelineQuery): TimelineBucket[] {
    const { from, to, bucketMs } = query;
    const n = Math.ceil((to - from) / bucketMs);
    if (!(bucketMs > 0) || !(to > from) || n > MAX_TIMELINE_BUCKETS) throw new ValidationError(`invalid timeline: from must be before to, with at most ${MAX_TIMELINE_BUCKETS} buckets`, [{ path: 'bucket', message: `from < to and at most ${MAX_TIMELINE_BUCKETS} buckets` }]);
    const buckets: TimelineBucket[] = Array.from({ length: n }, (_, i) => ({ start: from + i * bucketMs, submitted: 0, succeeded: 0, failed: 0, cancelled: 0, timedOut: 0 }));
    // Numbers are bound as REAL: the CAST makes the bucket index an integer (a floor: the difference is never negative).
    const owner = query.owner === undefined ? '' : 'AND owner = ?';
    const args = (...a: number[]) => (query.owner === undefined ? a : [...a, query.owner]);
    const submitted = this.db
      .prepare(`SELECT CAST((submitted_at - ?) / ? AS INTEGER) AS b, COUNT(*) AS n FROM jobs WHERE submitted_at >= ? AND submitted_at < ? ${owner} GROUP BY b`)
      .all(...args(from, bucketMs, from, to)) as { b: number; n: number }[];
    for (const r of submitted) buckets[r.b].submitted = r.n;
    const finished = this.db
      .prepare(`SELECT CAST((finished_at - ?) / ? AS INTEGER) AS b, status, COUNT(*) AS n FROM jobs WHERE finished_at >= ? AND finished_at < ? ${owner} GROUP BY b, status`)
      .all(...args(from, bucketMs, from, to)) as { b: number; status: JobStatus; n: number }[];
    for (const r of finished) {
      const key = r.status === 'timed_out' ? 'timedOut' : r.status;
      if (key === 'succeeded' || key === 'failed' || key === 'cancelled' || key === 'timedOut') buckets[r.b][key] = r.n;
    }
    return buckets;
  }

  dump(): JobsProjectionDump {
    return {
      position: this.checkpoint,
      jobs: this.db
        .prepare('SELECT id, owner, status, priority, submitted_at AS submittedAt, finished_at AS finishedAt, executor, view FROM jobs ORDER BY id')
        .all() as JobsProjectionDump['jobs'],
      idempotency: this.db
        .prepare('SELECT owner, key, job_id AS jobId FROM idempotency ORDER BY owner, key')
        .all() as JobsProjectionDump['idempotency'],
    };
  }

  private async run(store: EventStore): Promise<void> {
    while (this.running) {
      try {
        await this.catchUp(store);
        if (!this.running) return;
        this.subscription = store.subscribeToAll({ after: this.checkpoint });
        this.live = true;
        this.lastError = null;
        await this.follow(this.subscription);
      } catch (err) {
        this.live = false;
        this.lastError = err instanceof Error ? err.message : String(err);
        this.warn('jobs projection: subscription failed, retrying', err);
      } finally {
        await this.subscription?.close().catch(() => undefined);
        this.subscription = null;
      }
      if (this.running) await new Promise<void>((r) => {
        const t = setTimeout(r, this.retryDelayMs);
        this.wakeRetry = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /**
   * Applies whatever the subscription has ready as one batch: events that arrive without
   * waiting on I/O (the next macrotask) join the current transaction.
   */
  private async follow(subscription: Subscription): Promise<void> {
    const it = subscription[Symbol.asyncIterator]();
    const IDLE = Symbol('idle');
    let next = it.next();
    while (this.running) {
      const first = await next;
      if (first.done) return;
      const batch: RecordedEvent[] = [first.value];
      next = it.next();
      let idle = false;
      const idlePromise = new Promise<typeof IDLE>((r) => setImmediate(() => ((idle = true), r(IDLE))));
      while (batch.length < this.maxBatch && !idle) {
        const r = await Promise.race([next, idlePromise]);
        if (r === IDLE) break;
        if (r.done) {
          this.applyBatch(batch);
          return;
        }
        batch.push(r.value);
        next = it.next();
      }
      this.applyBatch(batch);
    }
  }

  private applyBatch(records: RecordedEvent[]): void {
    const dirty = new Map<string, JobView>();
    const changes: { view: JobView; change: JobChange }[] = [];
    const keys: [string, string, string][] = [];
    let position = this.checkpoint;
    for (const rec of records) {
      if (rec.position <= position) continue;
      position = rec.position;
      if (!rec.streamId.startsWith(JOB_STREAM_PREFIX)) continue;
      let event;
      try {
        event = decodeJobEvent(rec);
      } catch (err) {
        if (!(err instanceof UnknownEventError)) throw err;
        this.warn(`jobs projection: skipped ${rec.type} at position ${rec.position}: ${err.message}`);
        continue;
      }
      const id = rec.streamId.slice(JOB_STREAM_PREFIX.length);
      const before = event.type === 'JobSubmitted' ? null : (dirty.get(id) ?? this.get(id));
      const after = evolveJobView(before, event);
      if (!after) continue;
      dirty.set(id, after);
      if (this.anyListeners.size > 0) changes.push({ view: after, change: { type: event.type, position: rec.position, occurredAt: event.metadata.occurredAt } });
      if (event.type === 'JobSubmitted' && event.data.idempotencyKey !== undefined) {
        keys.push([event.data.owner, event.data.idempotencyKey, event.data.jobId]);
      }
    }
    if (position === this.checkpoint) return;
    this.applyTx(dirty, keys, position);
    this.checkpoint = position;
    for (const [id, view] of dirty) this.remember(id, view);
    if (this.listeners.size > 0) {
      for (const [id, view] of dirty) {
        const set = this.listeners.get(id);
        if (!set) continue;
        for (const l of [...set]) {
          try {
            l(view);
          } catch (err) {
            this.warn(`jobs projection: a listener of ${id} threw`, err);
          }
        }
      }
    }
    for (const { view, change } of changes) {
      for (const l of [...this.anyListeners]) {
        try {
          l(view, change);
        } catch (err) {
          this.warn('jobs projection: a change listener threw', err);
        }
      }
    }
    if (this.positionWaiters.length > 0) {
      const done = this.positionWaiters.filter((w) => w.position <= position);
      if (done.length) {
        this.positionWaiters = this.positionWaiters.filter((w) => w.position > position);
        for (const w of done) w.resolve(true);
      }
    }
  }

  /** A file written by another schema version is emptied: catching up from -1 rebuilds it. */
  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version === SCHEMA_VERSION) return;
    const hasTables = this.db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('jobs', 'idempotency', 'checkpoint')").pluck().get() as number;
    if (hasTables > 0) {
      this.warn(`jobs projection: read model of schema version ${version}, this build uses ${SCHEMA_VERSION}: rebuilding it from position 0`);
      this.db.exec('DROP TABLE IF EXISTS jobs; DROP TABLE IF EXISTS idempotency; DROP TABLE IF EXISTS checkpoint;');
    }
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }

  private remember(id: string, view: JobView): void {
    if (this.cacheSize === 0) return;
    // Re-inserting moves the key to the back: Map order is the LRU order.
    this.cache.delete(id);
    this.cache.set(id, view);
    if (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private listStatementsFor(order: JobOrder, where: string[], withCursor: boolean): { page: Statement; count: Statement } {
    const spec = ORDER_SPECS[order];
    const key = `${order}|${where.join('&')}|${withCursor}`;
    let s = this.listStatements.get(key);
    if (!s) {
      const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
      const keyset = withCursor
        ? `(${spec.columns.join(', ')}) ${spec.desc ? '<' : '>'} (${spec.columns.map(() => '?').join(', ')})`
        : '';
      const pageWhere = [...where, ...(keyset ? [keyset] : [])];
      const dir = spec.desc ? 'DESC' : 'ASC';
      s = {
        count: this.db.prepare(`SELECT COUNT(*) FROM jobs ${filter}`).pluck(),
        page: this.db.prepare(
          `SELECT id, priority, submitted_at, view FROM jobs ${pageWhere.length ? `WHERE ${pageWhere.join(' AND ')}` : ''}
           ORDER BY ${spec.columns.map((c) => `${c} ${dir}`).join(', ')} LIMIT ?`,
        ),
      };
      this.listStatements.set(key, s);
    }
    return s;
  }
}

function epochMs(iso: string): number {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : 0;
}

function encodeCursor(order: JobOrder, values: unknown[]): string {
  return Buffer.from(JSON.stringify([order, ...values])).toString('base64url');
}

/** The sort key after which the next page starts; a cursor that is not one of ours for this order is a 400. */
function decodeCursor(cursor: string, order: JobOrder): unknown[] {
  const bad = () => new ValidationError('invalid cursor', [{ path: 'cursor', message: 'not a cursor of this listing (or of another order)' }]);
  if (!/^[A-Za-z0-9_-]{1,512}$/.test(cursor)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const columns = ORDER_SPECS[order].columns;
  if (!Array.isArray(parsed) || parsed.length !== columns.length + 1 || parsed[0] !== order) throw bad();
  const values = parsed.slice(1);
  columns.forEach((c, i) => {
    const ok = c === 'id' ? typeof values[i] === 'string' : Number.isSafeInteger(values[i]);
    if (!ok) throw bad();
  });
  return values;
}
