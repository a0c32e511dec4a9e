import { createHash } from 'node:crypto';
import { ANY, BACKWARDS, END, StreamNotFoundError, type KurrentDBClient, type ResolvedEvent } from '@kurrent/kurrentdb-client';
import type { ChainCheckpoint, ChainCheckpointStore } from './chain-checkpoint';
import { EventStoreDbEventStore } from './esdb.event-store';
import type { EventStore } from './event-store.port';
import type { PostgresDatabase } from './postgres.connection';
import { PostgresEventStore } from './postgres.event-store';
import type { SqliteDatabase } from './sqlite.connection';
import { SqliteEventStore } from './sqlite.event-store';

/** The checkpoint store that lives beside this event store's events; undefined for a store it does not know. */
export function chainCheckpointStoreFor(eventStore: EventStore): ChainCheckpointStore | undefined {
  if (eventStore instanceof SqliteEventStore) return new SqliteChainCheckpointStore({ db: eventStore.database });
  if (eventStore instanceof PostgresEventStore) return new PostgresChainCheckpointStore({ database: eventStore.database });
  if (eventStore instanceof EventStoreDbEventStore) return new EventStoreDbChainCheckpointStore({ client: eventStore.client });
  return undefined;
}

/** Signed checkpoints in the SQLite events file (`{ db: sqliteEventStore.database }`). */
export class SqliteChainCheckpointStore implements ChainCheckpointStore {
  constructor(private readonly options: { db: SqliteDatabase }) {
    options.db.exec('CREATE TABLE IF NOT EXISTS chain_checkpoints (position INTEGER NOT NULL, key_id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (position, key_id)) WITHOUT ROWID');
  }

  async save(checkpoint: ChainCheckpoint): Promise<void> {
    this.options.db
      .prepare('INSERT INTO chain_checkpoints (position, key_id, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING')
      .run(checkpoint.position, checkpoint.keyId, JSON.stringify(checkpoint));
  }

  async list(): Promise<ChainCheckpoint[]> {
    const rows = this.options.db.prepare('SELECT body FROM chain_checkpoints ORDER BY position, key_id').pluck().all() as string[];
    return rows.map((r) => JSON.parse(r) as ChainCheckpoint);
  }

  async latest(): Promise<ChainCheckpoint | undefined> {
    const row = this.options.db.prepare('SELECT body FROM chain_checkpoints ORDER BY position DESC LIMIT 1').pluck().get() as string | undefined;
    return row === undefined ? undefined : (JSON.parse(row) as ChainCheckpoint);
  }
}

/** Signed checkpoints in the PostgreSQL schema of the events (`{ database: postgresEventStore.database }`). */
export class PostgresChainCheckpointStore implements ChainCheckpointStore {
  private readonly table: string;

  constructor(private readonly options: { database: PostgresDatabase }) {
    this.table = options.database.table('chain_checkpoints');
  }

  async save(checkpoint: ChainCheckpoint): Promise<void> {
    await this.ready();
    await this.options.database.query(`INSERT INTO ${this.table} (position, key_id, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [
      checkpoint.position,
      checkpoint.keyId,
      JSON.stringify(checkpoint),
    ]);
  }

  async list(): Promise<ChainCheckpoint[]> {
    await this.ready();
    const rows = await this.options.database.query<{ body: string }>(`SELECT body FROM ${this.table} ORDER BY position, key_id`);
    return rows.map((r) => JSON.parse(r.body) as ChainCheckpoint);
  }

  async latest(): Promise<ChainCheckpoint | undefined> {
    await this.ready();
    const rows = await this.options.database.query<{ body: string }>(`SELECT body FROM ${this.table} ORDER BY position DESC LIMIT 1`);
    return rows.length === 0 ? undefined : (JSON.parse(rows[0].body) as ChainCheckpoint);
  }

  private ready(): Promise<void> {
    return this.options.database.ensure(
      'chain_checkpoints',
      `CREATE TABLE IF NOT EXISTS ${this.table} (position bigint NOT NULL, key_id text NOT NULL, body text NOT NULL, PRIMARY KEY (position, key_id))`,
    );
  }
}

/** The stream of signed checkpoints on EventStoreDB: a `$` (system) stream, so it is never part of $all as the port reads it, nor of the chain. */
export const CHAIN_CHECKPOINT_STREAM = '$jobline-chain-checkpoints';

/** Event type of a checkpoint in CHAIN_CHECKPOINT_STREAM. */
export const CHAIN_CHECKPOINT_EVENT = 'ChainCheckpoint';

/**
 * Signed checkpoints in the EventStoreDB the events are in (`{ client: esdbEventStore.client }`),
 * one event each in stream `$jobline-chain-checkpoints` (a system stream: the connection's user
 * must be allowed to write it, as admins are). The event id is derived from position and key,
 * so saving one again is answered by the server as the same append.
 */
export class EventStoreDbChainCheckpointStore implements ChainCheckpointStore {
  /** latest() looks at this many of the newest checkpoints (several signers may have saved out of order around a handover). */
  private static readonly latestWindow = 100;
  private readonly stream: string;

  constructor(private readonly options: { client: KurrentDBClient; stream?: string }) {
    this.stream = options.stream ?? CHAIN_CHECKPOINT_STREAM;
  }

  async save(checkpoint: ChainCheckpoint): Promise<void> {
    await this.options.client.appendToStream(
      this.stream,
      [{ id: checkpointEventId(checkpoint), contentType: 'application/json', type: CHAIN_CHECKPOINT_EVENT, data: { ...checkpoint }, metadata: {} }],
      { streamState: ANY },
    );
  }

  async list(): Promise<ChainCheckpoint[]> {
    return byPosition(await this.read({}));
  }

  async latest(): Promise<ChainCheckpoint | undefined> {
    const newest = byPosition(await this.read({ direction: BACKWARDS, fromRevision: END, maxCount: EventStoreDbChainCheckpointStore.latestWindow }));
    return newest[newest.length - 1];
  }

  private async read(options: Parameters<KurrentDBClient['readStream']>[1]): Promise<ChainCheckpoint[]> {
    const found: ChainCheckpoint[] = [];
    try {
      for await (const resolved of this.options.client.readStream(this.stream, options) as AsyncIterable<ResolvedEvent>) {
        const data = resolved.event?.type === CHAIN_CHECKPOINT_EVENT ? resolved.event.data : undefined;
        // Anything else in the stream is no checkpoint (the verifier would count a malformed one as ignored).
        if (data && typeof data === 'object' && !Array.isArray(data) && !(data instanceof Uint8Array)) found.push(data as unknown as ChainCheckpoint);
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return [];
      throw error;
    }
    return found;
  }
}

/** A UUID from position and key id, so the same checkpoint saved twice is one event. */
function checkpointEventId(checkpoint: ChainCheckpoint): string {
  const hex = createHash('sha256').update(`${checkpoint.position}:${checkpoint.keyId}`).digest('hex');
  // RFC 4122 layout, version 5 style (name-based), variant 10.
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** By position then key id, one per (position, key), as the SQL stores list them. */
function byPosition(checkpoints: ChainCheckpoint[]): ChainCheckpoint[] {
  const unique = new Map<string, ChainCheckpoint>();
  for (const c of checkpoints) {
    const key = `${c.position}:${c.keyId}`;
    if (!unique.has(key)) unique.set(key, c);
  }
  return [...unique.values()].sort((a, b) => a.position - b.position || (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : 0));
}
