import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type SqliteDatabase = Database.Database;

export interface SqliteConnectionOptions {
  /** File path, or ':memory:'. Missing parent folders are created. */
  path: string;
  /**
   * How long a write waits for another process holding the file's write lock before
   * failing with SQLITE_BUSY. Default 5000.
   */
  busyTimeoutMs?: number;
}

/**
 * Opens a SQLite file tuned for an append-heavy log shared by several processes:
 * WAL lets readers run beside the single writer, and synchronous=NORMAL keeps commits
 * off fsync (a power loss may drop the last commits, never corrupt the file).
 */
export function openSqlite(options: SqliteConnectionOptions): SqliteDatabase {
  if (options.path !== ':memory:' && !options.path.startsWith('file:')) {
    mkdirSync(dirname(options.path), { recursive: true });
  }
  const db = new Database(options.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
  return db;
}
