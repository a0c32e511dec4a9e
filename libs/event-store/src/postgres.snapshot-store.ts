import type { Snapshot, SnapshotStore } from './event-store.port';
import { PostgresDatabase, type PostgresConnectionOptions } from './postgres.connection';

/**
 * Its own pool (`connectionString`, …; closed by `close()`), or a `database` shared with the
 * event store (`postgresEventStore.database`; its owner closes it).
 */
export type PostgresSnapshotStoreOptions = PostgresConnectionOptions | { database: PostgresDatabase };

/**
 * Snapshots in the shared PostgreSQL schema (`snapshots`: key, position, state as json).
 * Saves from several instances race safely: one statement keeps the later position.
 */
export class PostgresSnapshotStore implements SnapshotStore {
  private readonly database: PostgresDatabase;
  private readonly ownsDatabase: boolean;
  private readonly table: string;

  constructor(options: PostgresSnapshotStoreOptions) {
    this.ownsDatabase = !('database' in options);
    this.database = 'database' in options ? options.database : new PostgresDatabase(options);
    this.table = this.database.table('snapshots');
  }

  async load<T = unknown>(key: string): Promise<Snapshot<T> | undefined> {
    await this.ready();
    const rows = await this.database.query<{ position: string; state: T; saved_at: string }>(
      `SELECT position::text, state, to_char(saved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS saved_at
         FROM ${this.table} WHERE key = $1`,
      [key],
    );
    if (rows.length === 0) return undefined;
    return { position: Number(rows[0].position), state: rows[0].state, savedAt: rows[0].saved_at };
  }

  async save(key: string, position: number, state: unknown): Promise<boolean> {
    if (!Number.isSafeInteger(position) || position < -1) {
      throw new TypeError(`snapshot position must be an integer >= -1, not ${String(position)}`);
    }
    const json = JSON.stringify(state);
    if (json === undefined) throw new TypeError('a snapshot state must be a JSON value');
    await this.ready();
    const rows = await this.database.query(
      `INSERT INTO ${this.table} (key, position, state, saved_at) VALUES ($1, $2, $3::json, clock_timestamp())
       ON CONFLICT (key) DO UPDATE SET position = excluded.position, state = excluded.state, saved_at = excluded.saved_at
       WHERE ${this.table}.position <= excluded.position
       RETURNING 1`,
      [key, position, json],
    );
    return rows.length > 0;
  }

  async delete(key: string): Promise<void> {
    await this.ready();
    await this.database.query(`DELETE FROM ${this.table} WHERE key = $1`, [key]);
  }

  /** Closes the pool if this store opened it; a shared `database` is left to its owner. */
  async close(): Promise<void> {
    if (this.ownsDatabase) await this.database.close();
  }

  private ready(): Promise<void> {
    if (this.database.closed) return Promise.reject(new Error('PostgresSnapshotStore is closed'));
    return this.database.ensure(
      'snapshots',
      `CREATE TABLE IF NOT EXISTS ${this.table} (
         key      text        PRIMARY KEY,
         position bigint      NOT NULL,
         state    json        NOT NULL,
         saved_at timestamptz NOT NULL
       )`,
    );
  }
}
