import type { ChainCheckpoint, ChainCheckpointStore } from './chain-checkpoint';
import type { EventStore } from './event-store.port';
import type { PostgresDatabase } from './postgres.connection';
import { PostgresEventStore } from './postgres.event-store';
import type { SqliteDatabase } from './sqlite.connection';
import { SqliteEventStore } from './sqlite.event-store';

/** The checkpoint store that lives beside this event store's events; undefined where there is none (EventStoreDB). */
export function chainCheckpointStoreFor(eventStore: EventStore): ChainCheckpointStore | undefined {
  if (eventStore instanceof SqliteEventStore) return new SqliteChainCheckpointStore({ db: eventStore.database });
  if (eventStore instanceof PostgresEventStore) return new PostgresChainCheckpointStore({ database: eventStore.database });
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
