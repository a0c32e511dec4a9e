import type { Statement } from 'better-sqlite3';
import type { CheckpointStore } from './event-store.port';
import { openSqliteWriter, type OwnedSqlite, type SqliteConnectionOptions, type SqliteDatabase } from './sqlite.connection';

/**
 * Either a file of its own (`{ path }`, closed by `close()`), or a handle shared with
 * other tables (`{ db }`, e.g. `sqliteEventStore.database` or a read model's database,
 * so a projection can save its rows and its checkpoint in one transaction; the owner
 * closes it).
 */
export type SqliteCheckpointStoreOptions = SqliteConnectionOptions | { db: SqliteDatabase };

export class SqliteCheckpointStore implements CheckpointStore {
  private readonly db: SqliteDatabase;
  /** Its own file (`{ path }`), or null on a handle shared with other tables. */
  private readonly owned: OwnedSqlite | null;
  private readonly selectOne: Statement<unknown[], unknown>;
  private readonly upsert: Statement<unknown[], unknown>;

  constructor(options: SqliteCheckpointStoreOptions) {
    this.owned = 'db' in options ? null : openSqliteWriter(options);
    this.db = 'db' in options ? options.db : this.owned!.db;
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID',
    );
    this.selectOne = this.db.prepare('SELECT position FROM checkpoints WHERE name = ?').pluck();
    this.upsert = this.db.prepare(
      'INSERT INTO checkpoints (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position',
    );
  }

  /** The saved position, or -1 (before the first event) when none was saved. */
  async load(name: string): Promise<number> {
    return (this.selectOne.get(name) as number | undefined) ?? -1;
  }

  async save(name: string, position: number): Promise<void> {
    this.upsert.run(name, position);
  }

  /** Closes the file if this store opened it; a shared `{ db }` is left to its owner. */
  async close(): Promise<void> {
    await this.owned?.close();
  }
}
