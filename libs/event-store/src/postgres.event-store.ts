import type { Client, Notification } from 'pg';
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
import { contentHash } from './event-chain';
import { bisectRecordedAt } from './recorded-time';
import { PostgresDatabase, isConnectionError, retryDelayMs, type PostgresConnectionOptions } from './postgres.connection';

export interface PostgresEventStoreTuning {
  /**
   * How often a waiting subscription checks for new events when no notification came
   * (NOTIFY wakes it at once; this is the fallback while the listening connection is
   * down or a notification is lost). Default 500.
   */
  pollIntervalMs?: number;
  /** Events read per query while a subscription catches up. Default 1000. */
  readBatchSize?: number;
}

/**
 * Its own pool (`connectionString`, …; closed by `close()`), or a `database` shared with
 * the checkpoint and snapshot stores (its owner closes it).
 */
export type PostgresEventStoreOptions = PostgresEventStoreTuning & (PostgresConnectionOptions | { database: PostgresDatabase });

/** Key class of the lock that orders appends (`JLN\2`); the second int is a hash of the schema. */
const APPEND_LOCK_CLASS = 0x4a4c4e02;

/*
 * Ordering. A sequence hands out values when a transaction asks, but transactions commit in
 * their own order: with two appends in flight, position 8 can become visible before 7, and a
 * subscriber that has read 8 would never see 7. So every append runs in one function that
 * first takes a transaction-scoped advisory lock (one per schema) and keeps it until its
 * commit: positions are taken, written and made visible one append at a time, every
 * snapshot sees a prefix of the log, and `position > cursor` never skips. The lock is held
 * for one function call and the commit (no client round trip in between). Positions start
 * at 1 and strictly increase; a failed append can leave a hole, never a reordering.
 * (Rejected: filtering reads by pg_snapshot_xmin lets appends commit concurrently, but any
 * long transaction on the server, in any database, would then stall every subscriber.)
 *
 * The unique (stream_id, revision) constraint is the concurrency guard should anything
 * bypass the function; event ids are unique, so a repeated append (a retry after a lost
 * connection) is recognised and answered with the first result. `data` and `metadata` are
 * `json`, which keeps the exact text written (jsonb would reorder keys).
 */
function schemaSql(db: PostgresDatabase): string {
  const events = db.table('events');
  const lock = `pg_advisory_xact_lock(${APPEND_LOCK_CLASS}, hashtext('${db.schema}'))`;
  const sequence = `pg_get_serial_sequence('${events}', 'position')`;
  return `
CREATE TABLE IF NOT EXISTS ${events} (
  position    bigint      GENERATED ALWAYS AS IDENTITY (START WITH 1 CACHE 1) PRIMARY KEY,
  id          text        NOT NULL,
  stream_id   text        NOT NULL,
  revision    bigint      NOT NULL,
  type        text        NOT NULL,
  data        json        NOT NULL,
  metadata    json        NOT NULL,
  recorded_at timestamptz NOT NULL,
  stream_hash text,
  chain_hash  text,
  CONSTRAINT events_id_unique UNIQUE (id),
  CONSTRAINT events_stream_revision_unique UNIQUE (stream_id, revision)
);
-- A table created before the hash chain: its rows stay unchained, new ones are linked. Only
-- then: ALTER TABLE takes an exclusive lock even when the column exists, and would wait for
-- every open transaction on the table at each process start.
DO $mig$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                  WHERE table_schema = '${db.schema}' AND table_name = 'events' AND column_name = 'chain_hash') THEN
    ALTER TABLE ${events} ADD COLUMN IF NOT EXISTS stream_hash text, ADD COLUMN IF NOT EXISTS chain_hash text;
  END IF;
END
$mig$;
-- The function without content hashes would append unchained events: it must not stay callable.
DROP FUNCTION IF EXISTS ${db.table('append_events')}(text, bigint, text[], text[], json[], json[]);

CREATE OR REPLACE FUNCTION ${db.table('append_events')}(
  p_stream text, p_expected bigint, p_ids text[], p_types text[], p_data json[], p_metadata json[], p_content text[],
  OUT next_revision bigint, OUT last_position bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  v_count     bigint := cardinality(p_ids);
  v_current   bigint;
  v_stream_hash text;
  v_chain_hash text;
  v_position  bigint;
  v_hit_stream text;
  v_hit_revision bigint;
  v_stored_ids text[];
  v_now       timestamptz;
BEGIN
  PERFORM ${lock};
  -- Taken after the lock: in READ COMMITTED each statement sees every append committed before it.
  v_now := clock_timestamp();

  SELECT e.stream_id, e.revision INTO v_hit_stream, v_hit_revision FROM ${events} e WHERE e.id = p_ids[1];
  IF FOUND THEN
    SELECT array_agg(e.id ORDER BY e.revision) INTO v_stored_ids FROM ${events} e
      WHERE e.stream_id = p_stream AND e.revision >= v_hit_revision AND e.revision < v_hit_revision + v_count;
    IF v_hit_stream = p_stream AND v_stored_ids = p_ids THEN
      next_revision := v_hit_revision + v_count - 1;
      SELECT e.position INTO last_position FROM ${events} e WHERE e.stream_id = p_stream AND e.revision = next_revision;
      RETURN;
    END IF;
    RAISE EXCEPTION 'event % is already recorded in stream % at revision %', p_ids[1], v_hit_stream, v_hit_revision
      USING ERRCODE = 'JL002';
  END IF;

  SELECT e.revision, e.stream_hash INTO v_current, v_stream_hash FROM ${events} e WHERE e.stream_id = p_stream ORDER BY e.revision DESC LIMIT 1;
  IF NOT FOUND THEN
    v_current := -1;
  END IF;
  IF p_expected IS NOT NULL AND p_expected <> v_current THEN
    RAISE EXCEPTION 'wrong expected revision' USING ERRCODE = 'JL001', DETAIL = v_current::text;
  END IF;
  IF cardinality(p_content) IS DISTINCT FROM v_count THEN
    RAISE EXCEPTION 'one content hash per event is required' USING ERRCODE = 'JL003';
  END IF;

  -- The hash chain (event-chain.ts): the links are taken under the lock, so the log's previous
  -- event is the one with the highest position, and each position is known before its row is written.
  SELECT e.chain_hash INTO v_chain_hash FROM ${events} e ORDER BY e.position DESC LIMIT 1;
  FOR i IN 1..v_count LOOP
    v_position := nextval(${sequence});
    v_stream_hash := encode(sha256(convert_to(coalesce(v_stream_hash, '') || ':' || (v_current + i)::text || ':' || p_content[i], 'UTF8')), 'hex');
    v_chain_hash := encode(sha256(convert_to(coalesce(v_chain_hash, '') || ':' || v_position::text || ':' || v_stream_hash, 'UTF8')), 'hex');
    INSERT INTO ${events} (position, id, stream_id, revision, type, data, metadata, recorded_at, stream_hash, chain_hash)
      OVERRIDING SYSTEM VALUE
      VALUES (v_position, p_ids[i], p_stream, v_current + i, p_types[i], p_data[i], p_metadata[i], v_now, v_stream_hash, v_chain_hash);
  END LOOP;
  last_position := v_position;
  next_revision := v_current + v_count;
  -- Delivered at commit, after the rows are visible.
  PERFORM pg_notify('${notifyChannel(db)}', last_position::text);
END
$fn$;
`;
}

function notifyChannel(db: PostgresDatabase): string {
  return `jobline_events_${db.schema.toLowerCase()}`;
}

type EventRow = [
  position: string,
  id: string,
  streamId: string,
  revision: string,
  type: string,
  data: unknown,
  metadata: Record<string, unknown>,
  recordedAt: string,
  streamHash: string | null,
  chainHash: string | null,
];

const COLUMNS = `position, id, stream_id, revision, type, data, metadata,
  to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), stream_hash, chain_hash`;

/**
 * The shared event store on PostgreSQL: any number of processes (orchestrators, APIs) on
 * any number of machines may append and subscribe at once. Construct with
 * `new PostgresEventStore({ connectionString, schema? })`; the schema, table and append
 * function are created on first use. Subscriptions are woken by LISTEN/NOTIFY, with a poll
 * of the head as the fallback, and retry reads through lost connections.
 */
export class PostgresEventStore implements EventStore {
  /** Both links are written in the append, under the lock that orders it. */
  readonly globalChain = 'stored' as const;
  readonly database: PostgresDatabase;
  private readonly ownsDatabase: boolean;
  private readonly pollIntervalMs: number;
  private readonly readBatchSize: number;
  private readonly sql: {
    append: string;
    last: string;
    stream: string;
    after: string;
    head: string;
    firstFrom: string;
  };
  private readonly subscriptions = new Set<PostgresSubscription>();
  /** Subscriptions that found nothing new, with the resolver that wakes each one. */
  private readonly waiting = new Map<PostgresSubscription, () => void>();
  /** Highest position this instance knows was committed (appends, notifications, polls). */
  private knownHead = -1;
  private pollTimer: NodeJS.Timeout | undefined;
  private listener: Listener | undefined;
  private closed = false;

  constructor(options: PostgresEventStoreOptions) {
    this.ownsDatabase = !('database' in options);
    this.database = 'database' in options ? options.database : new PostgresDatabase(options);
    this.pollIntervalMs = Math.max(1, options.pollIntervalMs ?? 500);
    this.readBatchSize = Math.max(1, Math.trunc(options.readBatchSize ?? 1000));
    const events = this.database.table('events');
    this.sql = {
      append: `SELECT next_revision::text, last_position::text FROM ${this.database.table('append_events')}($1, $2, $3::text[], $4::text[], $5::json[], $6::json[], $7::text[])`,
      last: `SELECT revision::text, position::text FROM ${events} WHERE stream_id = $1 ORDER BY revision DESC LIMIT 1`,
      stream: `SELECT ${COLUMNS} FROM ${events} WHERE stream_id = $1 ORDER BY revision`,
      after: `SELECT ${COLUMNS} FROM ${events} WHERE position > $1 ORDER BY position LIMIT $2`,
      head: `SELECT COALESCE(max(position), -1)::text AS head FROM ${events}`,
      // The same millisecond text readAll reports, so positionAt and recordedAt agree to the millisecond.
      // ORDER BY the column, not the text alias of the same name (which would sort '10' before '2').
      firstFrom: `SELECT e.position::text AS pos, to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "recordedAt"
        FROM ${events} e WHERE e.position >= $1 ORDER BY e.position LIMIT 1`,
    };
  }

  /** Creates the schema, table and append function if missing (every call does it first anyway). */
  async ready(): Promise<void> {
    this.assertOpen();
    await this.database.ensure('events', schemaSql(this.database));
  }

  async appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    const expectedRevision = toExpectedRevision(expected);
    // Serialised before anything is sent, so an unserialisable event writes nothing.
    const ids = events.map((e) => e.id);
    const types = events.map((e) => e.type);
    const data = events.map((e) => toJson(e.data));
    const metadata = events.map((e) => toJson(e.metadata ?? {}));
    // Over the values as they will be read back (the json columns keep this exact text).
    const content = events.map((e, i) =>
      contentHash({ id: e.id, streamId, type: e.type, data: JSON.parse(data[i]), metadata: JSON.parse(metadata[i]) as Record<string, unknown> }),
    );
    await this.ready();
    if (events.length === 0) return this.currentState(streamId, expected, expectedRevision);
    let rows: Array<{ next_revision: string; last_position: string }>;
    try {
      rows = await this.database.query(this.sql.append, [streamId, expectedRevision, ids, types, data, metadata, content]);
    } catch (error) {
      throw await this.translateAppendError(error, streamId, expected);
    }
    const result = { nextExpectedRevision: Number(rows[0].next_revision), position: Number(rows[0].last_position) };
    this.wake(result.position);
    return result;
  }

  async readStream(streamId: string): Promise<RecordedEvent[]> {
    await this.ready();
    return toRecordedEvents((await this.database.queryRows(this.sql.stream, [streamId])) as EventRow[]);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const limit = options.maxCount === undefined ? null : Math.max(0, Math.trunc(options.maxCount));
    if (limit === 0) return [];
    await this.ready();
    return this.readAfter(options.after ?? -1, limit);
  }

  subscribeToAll(options: { after?: number } = {}): Subscription {
    this.assertOpen();
    const subscription = new PostgresSubscription(options.after ?? -1, this.readBatchSize, {
      read: async (after, limit) => {
        await this.ready();
        return this.readAfter(after, limit);
      },
      waitForAppend: (sub) => this.waitForAppend(sub),
      release: (sub) => this.release(sub),
    });
    this.subscriptions.add(subscription);
    return subscription;
  }

  async headPosition(): Promise<number> {
    await this.ready();
    return this.readHead();
  }

  /** recorded_at is the server's clock_timestamp() taken under the append lock: it never goes back along positions. */
  async positionAt(instant: Date): Promise<number> {
    await this.ready();
    return bisectRecordedAt(instant, await this.readHead(), async (from) => {
      const rows = await this.database.query<{ pos: string; recordedAt: string }>(this.sql.firstFrom, [from]);
      return rows.length > 0 ? { position: Number(rows[0].pos), recordedAt: rows[0].recordedAt } : undefined;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const subscription of [...this.subscriptions]) subscription.end();
    this.stopPolling();
    await this.listener?.close();
    this.listener = undefined;
    if (this.ownsDatabase) await this.database.close();
  }

  private async currentState(streamId: string, expected: ExpectedRevision, expectedRevision: number | null): Promise<AppendResult> {
    const rows = await this.database.query<{ revision: string; position: string }>(this.sql.last, [streamId]);
    const current = rows.length > 0 ? Number(rows[0].revision) : -1;
    if (expectedRevision !== null && expectedRevision !== current) {
      throw new WrongExpectedRevisionError(streamId, expected, rows.length > 0 ? current : 'no_stream');
    }
    return { nextExpectedRevision: current, position: rows.length > 0 ? Number(rows[0].position) : -1 };
  }

  private async translateAppendError(error: unknown, streamId: string, expected: ExpectedRevision): Promise<unknown> {
    const { code, detail, constraint } = error as { code?: string; detail?: string; constraint?: string };
    if (code === 'JL001') {
      const actual = Number(detail);
      return new WrongExpectedRevisionError(streamId, expected, actual < 0 ? 'no_stream' : actual);
    }
    if (code === 'JL002') return new Error((error as Error).message);
    if (code === '23505' && constraint === 'events_stream_revision_unique') {
      // Only reachable when something appended without the function's lock.
      const rows = await this.database.query<{ revision: string }>(this.sql.last, [streamId]).catch(() => []);
      return new WrongExpectedRevisionError(streamId, expected, rows.length > 0 ? Number(rows[0].revision) : 'no_stream');
    }
    return error;
  }

  private async readAfter(after: number, limit: number | null): Promise<RecordedEvent[]> {
    const events = toRecordedEvents((await this.database.queryRows(this.sql.after, [after, limit])) as EventRow[]);
    if (events.length > 0) this.noteHead(events[events.length - 1].position);
    return events;
  }

  private async readHead(): Promise<number> {
    const rows = await this.database.query<{ head: string }>(this.sql.head);
    return Number(rows[0].head);
  }

  private waitForAppend(subscription: PostgresSubscription): Promise<void> {
    // Something newer was committed while the empty read ran: read again at once.
    if (this.knownHead > subscription.cursor || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiting.set(subscription, resolve);
      this.startWatching();
    });
  }

  private noteHead(position: number): void {
    if (position > this.knownHead) this.knownHead = position;
  }

  /** Wakes the waiting subscriptions that are behind `head`. */
  private wake(head: number): void {
    this.noteHead(head);
    for (const [subscription, resolve] of this.waiting) {
      if (subscription.cursor < this.knownHead) {
        this.waiting.delete(subscription);
        resolve();
      }
    }
    if (this.waiting.size === 0) this.stopPolling();
  }

  /** Wakes every waiting subscription (once LISTEN is in effect: notifications before it were missed). */
  private wakeAll(): void {
    for (const [subscription, resolve] of this.waiting) {
      this.waiting.delete(subscription);
      resolve();
    }
    this.stopPolling();
  }

  private release(subscription: PostgresSubscription): void {
    this.subscriptions.delete(subscription);
    const resolve = this.waiting.get(subscription);
    this.waiting.delete(subscription);
    resolve?.();
    if (this.waiting.size === 0) this.stopPolling();
    if (this.subscriptions.size === 0 && this.listener) {
      void this.listener.close();
      this.listener = undefined;
    }
  }

  private startWatching(): void {
    if (this.closed) return;
    this.listener ??= new Listener(this.database, notifyChannel(this.database), {
      notified: (position) => this.wake(position),
      listening: () => this.wakeAll(),
    });
    if (this.pollTimer) return;
    // Runs only while someone waits, so an idle store sends nothing.
    this.pollTimer = setInterval(() => {
      if (this.closed) return;
      this.readHead().then(
        (head) => this.wake(head),
        () => undefined, // unreachable server: the next tick tries again
      );
    }, this.pollIntervalMs);
    this.pollTimer.unref();
  }

  private stopPolling(): void {
    if (!this.pollTimer) return;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
  }

  private assertOpen(): void {
    if (this.closed || this.database.closed) throw new Error('PostgresEventStore is closed');
  }
}

/**
 * One LISTEN connection per store instance, shared by its subscriptions. A lost connection
 * is reopened with a growing delay; each time it listens (again), every waiting
 * subscription re-reads, since notifications sent before were not heard.
 */
class Listener {
  private client: Client | undefined;
  private closed = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly database: PostgresDatabase,
    private readonly channel: string,
    private readonly on: { notified(position: number): void; listening(): void },
  ) {
    void this.open();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async open(): Promise<void> {
    let client: Client | undefined;
    try {
      client = await this.database.connectClient();
      if (this.closed) {
        await client.end();
        return;
      }
      client.on('notification', (message: Notification) => {
        const position = Number(message.payload);
        if (message.channel === this.channel && Number.isFinite(position)) this.on.notified(position);
      });
      client.on('error', () => this.lost(client));
      client.on('end', () => this.lost(client));
      await client.query(`LISTEN "${this.channel}"`);
      // Closed while LISTEN was on its way: nobody else would end this connection (it kept the process alive).
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.client = client;
      this.failures = 0;
      // Whatever was appended before LISTEN took effect sent no notification to us.
      this.on.listening();
    } catch {
      await client?.end().catch(() => undefined);
      this.retry();
    }
  }

  private lost(client: Client | undefined): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.retry();
  }

  private retry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.open();
    }, retryDelayMs(this.failures++));
    this.retryTimer.unref();
  }
}

interface SubscriptionSource {
  read(after: number, limit: number): Promise<RecordedEvent[]>;
  waitForAppend(subscription: PostgresSubscription): Promise<void>;
  release(subscription: PostgresSubscription): void;
}

/**
 * Pull-based, like the SQLite one: it reads the table from its own cursor, so catch-up
 * and live are one loop and an append racing the catch-up is neither skipped nor
 * delivered twice. A lost connection is waited out (with a growing delay) rather than
 * ending the subscription; any other error ends it with that error.
 */
class PostgresSubscription implements Subscription {
  private ended = false;
  private wakeFromSleep: (() => void) | undefined;

  constructor(
    /** Position of the last event handed out. */
    public cursor: number,
    private readonly batchSize: number,
    private readonly source: SubscriptionSource,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordedEvent, void, undefined> {
    let failures = 0;
    try {
      while (!this.ended) {
        let batch: RecordedEvent[];
        try {
          batch = await this.source.read(this.cursor, this.batchSize);
          failures = 0;
        } catch (error) {
          if (this.ended) return;
          if (!isConnectionError(error)) throw error;
          await this.sleep(retryDelayMs(failures++));
          continue;
        }
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
    this.wakeFromSleep?.();
    this.source.release(this);
  }

  /** A delay that `end()` cuts short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakeFromSleep = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeFromSleep = done;
    });
  }
}

function toExpectedRevision(expected: ExpectedRevision): number | null {
  if (expected === 'any') return null;
  if (expected === 'no_stream') return -1;
  if (typeof expected === 'number' && Number.isSafeInteger(expected) && expected >= -1) return expected;
  throw new TypeError(`expected revision must be 'no_stream', 'any' or an integer >= -1, not ${JSON.stringify(expected)}`);
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
      revision: Number(row[3]),
      position: Number(row[0]),
      type: row[4],
      data: row[5],
      metadata: row[6],
      recordedAt: row[7],
    };
    if (row[8] !== null && row[9] !== null) event.chain = { streamHash: row[8], chainHash: row[9] };
    events[i] = event;
  }
  return events;
}
