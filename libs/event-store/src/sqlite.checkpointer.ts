import { Worker } from 'node:worker_threads';
import type { SqliteDatabase } from './sqlite.connection';

/*
 * Runs in a worker thread with its own connection. A PASSIVE checkpoint copies WAL frames
 * into the database file and fsyncs it without blocking writers, so the appending thread
 * never waits on a disk flush (an inline checkpoint costs ~10-20 ms on slow disks).
 */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path);
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch { /* busy or closing: try next tick */ }
}, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Under a sustained write load a passive checkpoint never catches up with the writer, so
 * the WAL could not restart; SQLite's own checkpoint stays on at this many pages (~40 MB)
 * as the bound, and rarely has anything left to copy.
 */
const SAFETY_CHECKPOINT_PAGES = 10_000;
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export interface BackgroundCheckpointer {
  stop(): Promise<void>;
}

/** Moves WAL checkpoints of `db` (opened on `path`) off the calling thread. */
export function startBackgroundCheckpointer(db: SqliteDatabase, path: string, intervalMs: number): BackgroundCheckpointer {
  db.pragma(`wal_autocheckpoint = ${SAFETY_CHECKPOINT_PAGES}`);
  db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { driver: require.resolve('better-sqlite3'), path, intervalMs },
  });
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('error', () => {
    // Without the worker, SQLite's default inline checkpointing takes over again.
    if (db.open) db.pragma('wal_autocheckpoint = 1000');
  });
  let stopping: Promise<void> | undefined;
  return {
    stop: () => {
      stopping ??= (async () => {
        worker.postMessage('stop');
        const timeout = setTimeout(() => void worker.terminate(), 5_000);
        await exited;
        clearTimeout(timeout);
      })();
      return stopping;
    },
  };
}
