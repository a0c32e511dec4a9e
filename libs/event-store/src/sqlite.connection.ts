import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { INLINE_CHECKPOINTS, checkpointInBackground, type BackgroundCheckpoints } from './sqlite.checkpointer';

export type SqliteDatabase = Database.Database;

export interface SqliteConnectionOptions {
  /** File path, or ':memory:'. Missing parent folders are created. */
  path: string;
  /**
   * How long a write waits for another process holding the file's write lock before
   * failing with SQLITE_BUSY. Default 5000.
   */
  busyTimeoutMs?: number;
  /**
   * Whether the WAL checkpoints of a file this process writes run on the process's
   * checkpoint thread (sqlite.checkpointer.ts) instead of inside the commits. Default true.
   */
  backgroundCheckpoints?: boolean;
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

/** A connection its opener closes, with its WAL checkpoints handed to the process's checkpoint thread. */
export interface OwnedSqlite {
  readonly db: SqliteDatabase;
  readonly checkpoints: BackgroundCheckpoints;
  /** Gives the file back to the checkpoint thread, then closes the connection. */
  close(): Promise<void>;
}

/** openSqlite for a connection that writes the file: its checkpoints run off the calling thread (unless `backgroundCheckpoints: false`). */
export function openSqliteWriter(options: SqliteConnectionOptions): OwnedSqlite {
  const db = openSqlite(options);
  const checkpoints: BackgroundCheckpoints =
    options.backgroundCheckpoints === false ? INLINE_CHECKPOINTS : checkpointInBackground(db, options.path);
  let closing: Promise<void> | undefined;
  return {
    db,
    checkpoints,
    close: () =>
      (closing ??= (async () => {
        await checkpoints.release();
        if (db.open) db.close();
      })()),
  };
}
