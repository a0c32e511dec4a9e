import type { CheckpointStore } from './event-store.port';
import { PostgresDatabase, type PostgresConnectionOptions } from './postgres.connection';

/**
 * Its own pool (`connectionString`, …; closed by `close()`), or a `database` shared with the
 * event store (`postgresEventStore.database`; its owner closes it).
 */
export type PostgresCheckpointStoreOptions = PostgresConnectionOptions | { database: PostgresDatabase };

/**
 * Checkpoints in the shared PostgreSQL schema, for consumers that run on several machines
 * and must agree on where they got to (a relay, an outbox). A read model kept in a local
 * SQLite file keeps its checkpoint beside its rows instead (SqliteCheckpointStore with `{ db }`).
 */
export class PostgresCheckpointStore implements CheckpointStore {
  private readonly database: PostgresDatabase;
  private readonly ownsDatabase: boolean;
  private readonly table: string;

  constructor(options: PostgresCheckpointStoreOptions) {
    this.ownsDatabase = !('database' in options);
    this.database = 'database' in options ? options.database : new PostgresDatabase(options);
    this.table = this.database.table('checkpoints');
  }

  /** The saved position, or -1 (before the first event) when none was saved. */
  async load(name: string): Promise<number> {
    await this.ready();
    const rows = await this.database.query<{ position: string }>(`SELECT position::text FROM ${this.table} WHERE name = $1`, [name]);
    return rows.length > 0 ? Number(rows[0].position) : -1;
  }

  /** Overwrites the saved position (a rebuild saves lower ones). */
  async save(name: string, position: number): Promise<void> {
    if (!Number.isSafeInteger(position) || position < -1) {
      throw new TypeError(`checkpoint position must be an integer >= -1, not ${String(position)}`);
    }
    await this.ready();
    await this.database.query(
      `INSERT INTO ${this.table} (name, position, saved_at) VALUES ($1, $2, clock_timestamp())
       ON CONFLICT (name) DO UPDATE SET position = excluded.position, saved_at = excluded.saved_at`,
      [name, position],
    );
  }

  /** Closes the pool if this store opened it; a shared `database` is left to its owner. */
  async close(): Promise<void> {
    if (this.ownsDatabase) await this.database.close();
  }

  private ready(): Promise<void> {
    if (this.database.closed) return Promise.reject(new Error('PostgresCheckpointStore is closed'));
    return this.database.ensure(
      'checkpoints',
      `CREATE TABLE IF NOT EXISTS ${this.table} (
         name     text        PRIMARY KEY,
         position bigint      NOT NULL,
         saved_at timestamptz NOT NULL
       )`,
    );
  }
}
