import type { Statement } from 'better-sqlite3';
import {
  WrongExpectedRevisionError,
  type AppendResult,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type ReadAllOptions,
  type RecordedEvent,
  type Subscription,
} from './event-store.port';
import { openSqliteWriter, type OwnedSqlite, type SqliteConnectionOptions, type SqliteDatabase } from './sqlite.connection';
import { chainLink, contentHash, streamLink } from './event-chain';
import { bisectRecordedAt } from './recorded-time';

export interface SqliteEventStoreOptions extends SqliteConnectionOptions {
  /**
   * How often a waiting subscription checks the file for events appended by OTHER
   * processes (appends through this instance wake subscriptions at once). Default 50.
   */
  pollIntervalMs?: number;
  /** Events read per query while a subscription catches up. Default 1000. */
  readBatchSize?: number;
  /**
   * Rows of the latest appends made through this instance, kept for the live subscriptions:
   * each one otherwise queries the file again after every append. At most this many (default
   * 1024; 0 keeps none) and this many bytes of data and metadata (default 4 MiB).
   */
  recentRows?: number;
  recentBytes?: number;
  /**
   * The first append of a turn of the event loop commits at once; the appends made after it in
   * the same turn are committed together, in one write transaction, each in a savepoint of its
   * own (its expected revision checked on its own; one that fails writes nothing and fails
   * alone), once the turn's other work is done (default true). False: each append commits
   * before appendToStream returns.
   */
  groupCommit?: boolean;
}

interface PendingAppend {
  streamId: string;
  events: readonly NewEvent[];
  expected: ExpectedRevision;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

type AppendOutcome = { ok: true; result: AppendResult } | { ok: false; error: unknown };

/*
 * `position` is the rowid: SQLite has one writer at a time and assigns it inside the write
 * transaction, so commits become visible in position order and a reader that has seen
 * position p has seen everything below it. AUTOINCREMENT keeps a position from ever
 * being reused. The unique (stream_id, revision) index is both the concurrency guard and
 * the read path of a stream. stream_hash and chain_hash are the event's links in the hash
 * chain (event-chain.ts), written in the same transaction as the row: NULL only for events
 * recorded before the chain existed (the columns are added to an older file on open).
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position    INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT    NOT NULL UNIQUE,
  stream_id   TEXT    NOT NULL,
  revision    INTEGER NOT NULL,
  type        TEXT    NOT NULL,
  data        TEXT    NOT NULL,
  metadata    TEXT    NOT NULL,
  recorded_at TEXT    NOT NULL,
  stream_hash TEXT,
  chain_hash  TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_revision ON events (stream_id, revision);
`;

const COLUMNS = 'position, id, stream_id, revision, type, data, metadata, recorded_at, stream_hash, chain_hash';

type EventRow = [
  position: number,
  id: string,
  streamId: string,
  revision: number,
  type: string,
  data: string,
  metadata: string,
  recordedAt: string,
  streamHash: string | null,
  chainHash: string | null,
];

type AnyStatement = Statement<unknown[], unknown>;

/**
 * The embedded event store: one SQLite file (WAL), shareable by several processes.
 * Construct with `new SqliteEventStore({ path })`; the file and its schema are created
 * on first use. Subscriptions see appends made through this instance immediately and
 * appends made by other processes within `pollIntervalMs`.
 */
export class SqliteEventStore implements EventStore {
  /** Both links are written in the append, under the lock that orders it. */
  readonly globalChain = 'stored' as const;
  private readonly db: SqliteDatabase;
  private readonly file: OwnedSqlite;
  private readonly pollIntervalMs: number;
  private readonly readBatchSize: number;
  private readonly lastOfStream: AnyStatement;
  private readonly findById: AnyStatement;
  private readonly streamIdsFrom: AnyStatement;
  private readonly insert: AnyStatement;
  private readonly selectStream: AnyStatement;
  private readonly selectAfter: AnyStatement;
  private readonly selectHead: AnyStatement;
  private readonly selectFirstFrom: AnyStatement;
  private readonly lastLink: AnyStatement;
  private readonly nextPosition: AnyStatement;
  private readonly appendTx: ReturnType<SqliteDatabase['transaction']>;
  private readonly groupTx: ReturnType<SqliteDatabase['transaction']>;
  private readonly groupCommit: boolean;
  /** Appends waiting for this turn's group commit, in call order. */
  private pending: PendingAppend[] = [];
  /** An append has committed at once in this turn of the event loop: the next ones join a group commit. */
  private committedThisTurn = false;
  private readonly subscriptions = new Set<SqliteSubscription>();
  /** Subscriptions that found nothing new, with the resolver that wakes each one. */
  private readonly waiting = new Map<SqliteSubscription, () => void>();
  private pollTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /**
   * The rows of this instance's latest appends, at consecutive positions: nobody else inserted
   * between them (a position is the head + 1 under the write lock, so another process's row
   * would leave a gap, and the run starts again after it). A subscription reading inside this
   * range is served from here; anywhere else it queries the file.
   */
  private recent: EventRow[] = [];
  private recentSize = 0;
  private readonly recentRows: number;
  private readonly recentBytes: number;
  /** Rows inserted by the append transaction running now; kept once it has committed. */
  private inserted: EventRow[] = [];
  /**
   * The highest position known to be in the file: this instance's latest commit, or the head the
   * poll last read. While it is the last recent row, a subscription that has read up to it has
   * nothing new to find in the file (another process's later append is found by the poll).
   */
  private knownHead = -1;

  constructor(options: SqliteEventStoreOptions) {
    this.pollIntervalMs = options.pollIntervalMs ?? 50;
    this.readBatchSize = Math.max(1, options.readBatchSize ?? 1000);
    this.recentRows = Math.max(0, Math.trunc(options.recentRows ?? 1024));
    this.recentBytes = Math.max(0, options.recentBytes ?? 4 * 1024 * 1024);
    this.file = openSqliteWriter(options);
    this.db = this.file.db;
    this.db.exec(SCHEMA);
    addChainColumns(this.db);
    this.lastOfStream = this.db
      .prepare('SELECT revision, position, stream_hash FROM events WHERE stream_id = ? ORDER BY revision DESC LIMIT 1')
      .raw();
    this.lastLink = this.db.prepare('SELECT chain_hash FROM events ORDER BY position DESC LIMIT 1').pluck();
    // AUTOINCREMENT's counter, so a position is never reused even after the newest rows were deleted.
    this.nextPosition = this.db
      .prepare("SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), COALESCE((SELECT MAX(position) FROM events), 0)) + 1")
      .pluck();
    this.findById = this.db.prepare('SELECT stream_id, revision FROM events WHERE id = ?').raw();
    this.streamIdsFrom = this.db
      .prepare('SELECT id, position FROM events WHERE stream_id = ? AND revision >= ? ORDER BY revision LIMIT ?')
      .raw();
    this.insert = this.db.prepare(
      'INSERT INTO events (position, id, stream_id, revision, type, data, metadata, recorded_at, stream_hash, chain_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.selectStream = this.db.prepare(`SELECT ${COLUMNS} FROM events WHERE stream_id = ? ORDER BY revision`).raw();
    this.selectAfter = this.db
      .prepare(`SELECT ${COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?`)
      .raw();
    this.selectHead = this.db.prepare('SELECT COALESCE(MAX(position), -1) FROM events').pluck();
    this.selectFirstFrom = this.db.prepare('SELECT position, recorded_at AS recordedAt FROM events WHERE position >= ? ORDER BY position LIMIT 1');
    this.appendTx = this.db.transaction(
      (streamId: string, events: readonly NewEvent[], expected: ExpectedRevision): AppendResult =>
        this.appendInTransaction(streamId, events, expected),
    );
    // appendTx inside it runs as a SAVEPOINT: a failed append is rolled back alone.
    this.groupTx = this.db.transaction((group: readonly PendingAppend[]): AppendOutcome[] =>
      group.map((p): AppendOutcome => {
        // An error that made SQLite roll back the whole transaction: nothing more runs, and its commit fails them all.
        if (!this.db.inTransaction) return { ok: false, error: new Error('the group commit was rolled back') };
        const mark = this.inserted.length;
        try {
          return { ok: true, result: this.appendTx(p.streamId, p.events, p.expected) as AppendResult };
        } catch (error) {
          this.inserted.length = mark;
          return { ok: false, error };
        }
      }),
    );
    this.groupCommit = options.groupCommit ?? true;
  }

  /**
   * The underlying handle, for tables that must live beside the events (e.g. a
   * SqliteCheckpointStore built with `{ db }`). Closed by `close()`.
   */
  get database(): SqliteDatabase {
    return this.db;
  }

  async appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    this.assertOpen();
    // Inside a transaction of the caller's (on `database`): at once, as a savepoint of it.
    if (!this.groupCommit || this.db.inTransaction) return this.appendNow(streamId, events, expected);
    // The first append of a turn commits at once: a lone append (a job at a time) waits for
    // nothing. Those that follow it in the same turn (a burst) share a commit at its end.
    if (this.pending.length === 0 && !this.committedThisTurn) {
      this.committedThisTurn = true;
      setImmediate(() => (this.committedThisTurn = false));
      return this.appendNow(streamId, events, expected);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ streamId, events, expected, resolve, reject });
      // After the turn's other callbacks, so that the appends they make share the commit.
      if (this.pending.length === 1) setImmediate(() => this.commitPending());
    });
  }

  private appendNow(streamId: string, events: readonly NewEvent[], expected: ExpectedRevision): AppendResult {
    // IMMEDIATE takes the write lock before reading the stream's revision, so another
    // process cannot slip an append in between the check and the insert.
    this.inserted = [];
    let result: AppendResult;
    try {
      result = this.appendTx.immediate(streamId, events, expected) as AppendResult;
    } catch (err) {
      this.inserted = [];
      throw err;
    }
    this.committed(events.length > 0 ? result.position : -1);
    return result;
  }

  /** Commits the appends waiting, one write transaction (IMMEDIATE, as a single append) with a savepoint each. */
  private commitPending(): void {
    const group = this.pending;
    this.pending = [];
    if (group.length === 0) return;
    if (this.closed) {
      for (const p of group) p.reject(new Error('SqliteEventStore is closed'));
      return;
    }
    if (group.length === 1) {
      const [p] = group;
      let result: AppendResult;
      try {
        result = this.appendNow(p.streamId, p.events, p.expected);
      } catch (err) {
        p.reject(err);
        return;
      }
      p.resolve(result);
      return;
    }
    this.inserted = [];
    let outcomes: AppendOutcome[];
    try {
      outcomes = this.groupTx.immediate(group) as AppendOutcome[];
    } catch (err) {
      // Not committed (the lock, the commit itself): none of them is stored.
      this.inserted = [];
      for (const p of group) p.reject(err);
      return;
    }
    let head = -1;
    for (let i = 0; i < group.length; i++) {
      const o = outcomes[i];
      if (o.ok && group[i].events.length > 0 && o.result.position > head) head = o.result.position;
    }
    this.committed(head);
    for (let i = 0; i < group.length; i++) {
      const o = outcomes[i];
      if (o.ok) group[i].resolve(o.result);
      else group[i].reject(o.error);
    }
  }

  /** After a commit: its rows become recent rows, and the subscriptions behind `head` (its last position, -1 if it stored nothing) wake. */
  private committed(head: number): void {
    // Committed (not a savepoint of someone's enclosing transaction, which could still roll back): the rows are the file's.
    if (this.inserted.length > 0 && !this.db.inTransaction) this.keepRecent(this.inserted);
    this.inserted = [];
    if (head < 0) return;
    if (head > this.knownHead) this.knownHead = head;
    this.wake(head);
  }

  async readStream(streamId: string): Promise<RecordedEvent[]> {
    this.assertOpen();
    return toRecordedEvents(this.selectStream.all(streamId) as EventRow[]);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    this.assertOpen();
    const limit = options.maxCount === undefined ? -1 : Math.max(0, Math.trunc(options.maxCount));
    if (limit === 0) return [];
    return this.readAfter(options.after ?? -1, limit);
  }

  subscribeToAll(options: { after?: number } = {}): Subscription {
    this.assertOpen();
    const subscription = new SqliteSubscription(options.after ?? -1, this.readBatchSize, {
      read: (after, limit) => this.readLive(after, limit),
      waitForAppend: (sub) => this.waitForAppend(sub),
      release: (sub) => this.release(sub),
    });
    this.subscriptions.add(subscription);
    return subscription;
  }

  async headPosition(): Promise<number> {
    this.assertOpen();
    return this.selectHead.get() as number;
  }

  /** recorded_at is written by this process's clock inside the write lock (IMMEDIATE): it never goes back along positions. */
  async positionAt(instant: Date): Promise<number> {
    this.assertOpen();
    return bisectRecordedAt(instant, this.selectHead.get() as number, async (from) => this.selectFirstFrom.get(from) as { position: number; recordedAt: string } | undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Appends already asked for are committed (or fail) before the file closes.
    this.commitPending();
    for (const subscription of [...this.subscriptions]) subscription.end();
    this.closed = true;
    this.stopPolling();
    await this.file.close();
  }

  private appendInTransaction(streamId: string, events: readonly NewEvent[], expected: ExpectedRevision): AppendResult {
    const last = this.lastOfStream.get(streamId) as [revision: number, position: number, streamHash: string | null] | undefined;
    const current = last ? last[0] : -1;
    if (events.length > 0) {
      const retried = this.findRetriedAppend(streamId, events);
      if (retried) return retried;
    }
    if (!revisionMatches(expected, current)) {
      throw new WrongExpectedRevisionError(streamId, expected, last ? current : 'no_stream');
    }
    if (events.length === 0) return { nextExpectedRevision: current, position: last ? last[1] : -1 };
    const recordedAt = new Date().toISOString();
    let revision = current;
    // Under the write lock (IMMEDIATE): nobody else can append between these reads and the inserts.
    let position = (this.nextPosition.get() as number) - 1;
    let prevStream = last ? last[2] : null;
    let prevChain = (this.lastLink.get() as string | null | undefined) ?? null;
    for (const event of events) {
      revision += 1;
      position += 1;
      const data = toJson(event.data);
      const metadata = toJson(event.metadata ?? {});
      // Hashed as it will be read back (JSON.parse of the stored text), not as passed in.
      const content = contentHash({ id: event.id, streamId, type: event.type, data: JSON.parse(data), metadata: JSON.parse(metadata) as Record<string, unknown> });
      const streamHash = streamLink(prevStream, revision, content);
      const chainHash = chainLink(prevChain, position, streamHash);
      this.insert.run(position, event.id, streamId, revision, event.type, data, metadata, recordedAt, streamHash, chainHash);
      if (this.recentRows > 0 && this.recentBytes > 0) this.inserted.push([position, event.id, streamId, revision, event.type, data, metadata, recordedAt, streamHash, chainHash]);
      prevStream = streamHash;
      prevChain = chainHash;
    }
    return { nextExpectedRevision: revision, position };
  }

  /**
   * A writer that crashed or timed out after its commit retries with the same event ids;
   * answering with the original result keeps the retry from failing or duplicating.
   */
  private findRetriedAppend(streamId: string, events: readonly NewEvent[]): AppendResult | undefined {
    const hit = this.findById.get(events[0].id) as [streamId: string, revision: number] | undefined;
    if (!hit) return undefined;
    const [storedStream, fromRevision] = hit;
    if (storedStream === streamId) {
      const stored = this.streamIdsFrom.all(streamId, fromRevision, events.length) as [id: string, position: number][];
      if (stored.length === events.length && stored.every(([id], i) => id === events[i].id)) {
        return { nextExpectedRevision: fromRevision + events.length - 1, position: stored[stored.length - 1][1] };
      }
    }
    throw new Error(`event ${events[0].id} is already recorded in stream ${storedStream} at revision ${fromRevision}`);
  }

  private readAfter(after: number, limit: number): RecordedEvent[] {
    return toRecordedEvents(this.selectAfter.all(after, limit) as EventRow[]);
  }

  /**
   * A subscription's read: from the recent rows when `after` falls inside them (each
   * subscription still parses its own copy of each event), else from the file. At the last
   * recent row, with no later head known, there is nothing to read: the subscription waits, and
   * is woken by this instance's next append or by the poll once another process's append is in
   * the file (the poll's head then sends the next read to the file). Every subscriber asked the
   * file once more after each append, to find nothing: 5 % of the orchestrator's CPU.
   */
  private readLive(after: number, limit: number): RecordedEvent[] {
    const rows = this.recent;
    if (rows.length > 0) {
      const first = rows[0][0];
      const last = rows[rows.length - 1][0];
      if (after >= first - 1 && after < last) {
        const from = after + 1 - first;
        return toRecordedEvents(rows.slice(from, Math.min(rows.length, from + limit)));
      }
      if (after === last && this.knownHead <= last) return [];
    }
    return this.readAfter(after, limit);
  }

  /** Adds committed rows to the recent ones (starting them again after a gap), then trims the oldest to half the limits once over them. */
  private keepRecent(rows: EventRow[]): void {
    const tail = this.recent;
    if (tail.length === 0 || rows[0][0] !== tail[tail.length - 1][0] + 1) {
      this.recent = [];
      this.recentSize = 0;
    }
    for (const row of rows) {
      this.recent.push(row);
      this.recentSize += rowSize(row);
    }
    if (this.recent.length <= this.recentRows && this.recentSize <= this.recentBytes) return;
    let drop = 0;
    while (drop < this.recent.length && (this.recent.length - drop > this.recentRows / 2 || this.recentSize > this.recentBytes / 2)) {
      this.recentSize -= rowSize(this.recent[drop]);
      drop++;
    }
    this.recent = this.recent.slice(drop);
  }

  private waitForAppend(subscription: SqliteSubscription): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.set(subscription, resolve);
      this.startPolling();
    });
  }

  /** Wakes the waiting subscriptions that are behind `head`. */
  private wake(head: number): void {
    for (const [subscription, resolve] of this.waiting) {
      if (subscription.cursor < head) {
        this.waiting.delete(subscription);
        resolve();
      }
    }
    if (this.waiting.size === 0) this.stopPolling();
  }

  private release(subscription: SqliteSubscription): void {
    this.subscriptions.delete(subscription);
    const resolve = this.waiting.get(subscription);
    this.waiting.delete(subscription);
    resolve?.();
    if (this.waiting.size === 0) this.stopPolling();
  }

  private startPolling(): void {
    if (this.pollTimer || this.closed) return;
    // Only runs while someone awaits an event, so an idle store costs nothing; reading the
    // head (not PRAGMA data_version) means a commit that landed just before the timer
    // started is not missed.
    this.pollTimer = setInterval(() => {
      if (this.closed) return;
      const head = this.selectHead.get() as number;
      if (head > this.knownHead) this.knownHead = head;
      this.wake(head);
    }, this.pollIntervalMs);
  }

  private stopPolling(): void {
    if (!this.pollTimer) return;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('SqliteEventStore is closed');
  }
}

interface SubscriptionSource {
  read(after: number, limit: number): RecordedEvent[];
  waitForAppend(subscription: SqliteSubscription): Promise<void>;
  release(subscription: SqliteSubscription): void;
}

/**
 * Pull-based: it always reads the file from its own cursor, so catch-up and live are the
 * same loop and an append racing the catch-up can neither be skipped nor delivered twice.
 * One consumer per subscription.
 */
class SqliteSubscription implements Subscription {
  private ended = false;

  constructor(
    /** Position of the last event handed out. */
    public cursor: number,
    private readonly batchSize: number,
    private readonly source: SubscriptionSource,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordedEvent, void, undefined> {
    try {
      while (!this.ended) {
        const batch = this.source.read(this.cursor, this.batchSize);
        if (batch.length === 0) {
          await this.source.waitForAppend(this);
          continue;
        }
        for (const event of batch) {
          if (this.ended) return;
          this.cursor = event.position;
          yield event;
        }
      }
    } finally {
      this.end();
    }
  }

  async close(): Promise<void> {
    this.end();
  }

  /** Ends iteration; a consumer awaiting the next event gets `done`. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.source.release(this);
  }
}

/** What a kept row holds, roughly: its data and metadata text. */
function rowSize(row: EventRow): number {
  return row[5].length + row[6].length;
}

function revisionMatches(expected: ExpectedRevision, current: number): boolean {
  if (expected === 'any') return true;
  if (expected === 'no_stream') return current === -1;
  return expected === current;
}

function toJson(value: unknown): string {
  // JSON.stringify(undefined) is undefined; the column is NOT NULL.
  return JSON.stringify(value) ?? 'null';
}

function toRecordedEvents(rows: EventRow[]): RecordedEvent[] {
  const events = new Array<RecordedEvent>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    const event: RecordedEvent = {
      id: row[1],
      streamId: row[2],
      revision: row[3],
      position: row[0],
      type: row[4],
      data: JSON.parse(row[5]),
      metadata: JSON.parse(row[6]) as Record<string, unknown>,
      recordedAt: row[7],
    };
    if (row[8] !== null && row[9] !== null) event.chain = { streamHash: row[8], chainHash: row[9] };
    events[i] = event;
  }
  return events;
}

/** A file written before the chain existed gets the two link columns (its old rows stay unchained). */
function addChainColumns(db: SqliteDatabase): void {
  const columns = new Set((db.prepare('PRAGMA table_info(events)').all() as Array<{ name: string }>).map((c) => c.name));
  for (const column of ['stream_hash', 'chain_hash']) {
    if (columns.has(column)) continue;
    try {
      db.exec(`ALTER TABLE events ADD COLUMN ${column} TEXT`);
    } catch (error) {
      // Another process opening the same file added it first.
      if (!/duplicate column/i.test((error as Error).message)) throw error;
    }
  }
}
