import type { Statement } from 'better-sqlite3';
import type { Snapshot, SnapshotStore } from './event-store.port';
import { openSqliteWriter, type OwnedSqlite, type SqliteConnectionOptions, type SqliteDatabase } from './sqlite.connection';

/**
 * Either a file of its own (`{ path }`, closed by `close()`), or a handle shared with other
 * tables (`{ db }`, e.g. `sqliteEventStore.database`; the owner closes it).
 */
export type SqliteSnapshotStoreOptions = SqliteConnectionOptions | { db: SqliteDatabase };

/** Snapshots in SQLite (`snapshots`: key, position, state as JSON text); a save keeps the later position. */
export class SqliteSnapshotStore implements SnapshotStore {
  private readonly db: SqliteDatabase;
  /** Its own file (`{ path }`), or null on a handle shared with other tables. */
  private readonly owned: OwnedSqlite | null;
  private readonly selectOne: Statement<unknown[], unknown>;
  private readonly upsert: Statement<unknown[], unknown>;
  private readonly remove: Statement<unknown[], unknown>;

  constructor(options: SqliteSnapshotStoreOptions) {
    this.owned = 'db' in options ? null : openSqliteWriter(options);
    this.db = 'db' in options ? options.db : this.owned!.db;
    this.db.exec(
      `CREATE TABLE IF NOT EXISTS snapshots (
         key TEXT PRIMARY KEY, position INTEGER NOT NULL, state TEXT NOT NULL, saved_at TEXT NOT NULL
       ) WITHOUT ROWID`,
    );
    this.selectOne = this.db.prepare('SELECT position, state, saved_at FROM snapshots WHERE key = ?').raw();
    // The WHERE of the upsert leaves a snapshot of a later position in place; changes says which.
    this.upsert = this.db.prepare(
      `INSERT INTO snapshots (key, position, state, saved_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET position = excluded.position, state = excluded.state, saved_at = excluded.saved_at
       WHERE snapshots.position <= excluded.position`,
    );
    this.remove = this.db.prepare('DELETE FROM snapshots WHERE key = ?');
  }

  async load<T = unknown>(key: string): Promise<Snapshot<T> | undefined> {
    const row = this.selectOne.get(key) as [position: number, state: string, savedAt: string] | undefined;
    return row ? { position: row[0], state: JSON.parse(row[1]) as T, savedAt: row[2] } : undefined;
  }

  async save(key: string, position: number, state: unknown): Promise<boolean> {
    if (!Number.isSafeInteger(position) || position < -1) {
      throw new TypeError(`snapshot position must be an integer >= -1, not ${String(position)}`);
    }
    const json = JSON.stringify(state);
    if (json === undefined) throw new TypeError('a snapshot state must be a JSON value');
    return this.upsert.run(key, position, json, new Date().toISOString()).changes > 0;
  }

  async delete(key: string): Promise<void> {
    this.remove.run(key);
  }

  /** Closes the file if this store opened it; a shared `{ db }` is left to its owner. */
  async close(): Promise<void> {
    await this.owned?.close();
  }
}
