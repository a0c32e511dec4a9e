import { Worker } from 'node:worker_threads';
import type { SqliteDatabase } from './sqlite.connection';

/*
 * WAL checkpoints off the writing thread. SQLite checkpoints inline by default: the commit that
 * takes the WAL past 1,000 pages copies them into the database file and fsyncs the WAL and the
 * file, inside the append's call, on the event loop that also serves the bus. Measured on a
 * `jobline dev` stack at 300 tiny jobs/s (issue 12): about 26 WAL pages per job over the event
 * store and the read model, so an inline checkpoint every 40 jobs or so, each holding the loop
 * 2–4 ms on two fsyncs (108 of them in the main thread for 1,100 jobs, strace).
 *
 * One worker thread per process, started with the first file and ended a moment after the
 * last: its own connection to each registered file runs a PASSIVE checkpoint (copies what no
 * reader still needs, never blocks a writer or a reader) whenever another connection committed
 * since its last look (`PRAGMA data_version`), every `intervalMs`. The writer's own
 * checkpoint stays on at SAFETY_CHECKPOINT_PAGES: under a write load that never pauses a
 * passive checkpoint may not catch up, and the WAL only restarts once one has; that bound
 * keeps the WAL finite, and what it copies is mostly done already. If the thread cannot open a
 * file, or ends unexpectedly, the writers are given SQLite's inline checkpoint back: slower,
 * never less durable (synchronous=NORMAL either way; a checkpoint is not a commit).
 */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.driver);
const files = new Map();
function tick() {
  for (const f of files.values()) {
    try {
      const version = f.db.pragma('data_version', { simple: true });
      if (version === f.version) continue;
      const [row] = f.db.pragma('wal_checkpoint(PASSIVE)');
      // Busy (another process's checkpoint): look again next tick.
      f.version = row && row.busy === 0 ? version : -1;
    } catch {
      f.version = -1;
    }
  }
}
const timer = setInterval(tick, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m.op === 'add') {
    try {
      const db = new Database(m.path, { fileMustExist: true });
      db.pragma('busy_timeout = 0');
      files.set(m.key, { db, version: -1 });
      parentPort.postMessage({ id: m.id, ok: true });
    } catch {
      parentPort.postMessage({ id: m.id, ok: false });
    }
  } else if (m.op === 'remove') {
    const f = files.get(m.key);
    files.delete(m.key);
    try { if (f) f.db.close(); } catch {}
    parentPort.postMessage({ id: m.id, ok: true });
  } else if (m.op === 'stop') {
    clearInterval(timer);
    for (const f of files.values()) { try { f.db.close(); } catch {} }
    files.clear();
    parentPort.close();
  }
});
`;

/** The writer's own checkpoint while the thread does the work: the WAL's bound (~40 MB of 4 KiB pages). */
export const SAFETY_CHECKPOINT_PAGES = 10_000;
/** SQLite's default, given back when the thread is not there. */
const INLINE_CHECKPOINT_PAGES = 1_000;
/** A WAL left larger than this after a restart is truncated to it. */
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
/** How often the thread looks for commits to checkpoint (default). */
export const CHECKPOINT_INTERVAL_MS = 100;
/** How long the thread outlives its last file (a store closed and opened again keeps it). */
const IDLE_STOP_MS = 1_000;
/** How long a release waits for the thread to close its connection. */
const REPLY_TIMEOUT_MS = 5_000;

export interface BackgroundCheckpoints {
  /** Whether the thread checkpoints this file (false: SQLite's inline checkpoint, as without one). */
  readonly background: boolean;
  /** Hands the file back (the thread closes its connection first); call before closing `db`. */
  release(): Promise<void>;
}

/** A writer whose checkpoints stay SQLite's own, inline (a memory database, or `backgroundCheckpoints: false`). */
export const INLINE_CHECKPOINTS: BackgroundCheckpoints = { background: false, release: async () => undefined };

interface Reply {
  id: number;
  ok: boolean;
}

/** One file's writers in this process, and the thread's connection to it (by `key`: a file handed back and registered again gets a connection of its own, whatever order the thread's replies come in). */
interface Registered {
  key: number;
  dbs: Set<SqliteDatabase>;
}

class CheckpointThread {
  private readonly worker: Worker;
  private readonly waiting = new Map<number, (reply: Reply | null) => void>();
  private readonly files = new Map<string, Registered>();
  private nextId = 0;
  private nextKey = 0;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private ended = false;

  constructor(
    intervalMs: number,
    private readonly onEnd: (thread: CheckpointThread) => void,
  ) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver: require.resolve('better-sqlite3'), intervalMs } });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.(r);
    });
    this.worker.on('error', () => this.end());
    this.worker.on('exit', () => this.end());
  }

  get alive(): boolean {
    return !this.ended;
  }

  register(db: SqliteDatabase, path: string): BackgroundCheckpoints {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    let entry = this.files.get(path);
    if (!entry) {
      const added: Registered = { key: this.nextKey++, dbs: new Set() };
      void this.ask({ op: 'add', key: added.key, path }).then((r) => {
        if (r?.ok) return;
        // Refused (or no answer): its writers checkpoint inline, and the next writer of the file asks again.
        if (this.files.get(path) === added) this.files.delete(path);
        for (const d of added.dbs) inline(d);
      });
      entry = added;
      this.files.set(path, entry);
    }
    entry.dbs.add(db);
    db.pragma(`wal_autocheckpoint = ${SAFETY_CHECKPOINT_PAGES}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
    const registered = entry;
    let released: Promise<void> | undefined;
    const handle: BackgroundCheckpoints = {
      get background() {
        return !released && registered.dbs.has(db) && db.open && db.pragma('wal_autocheckpoint', { simple: true }) === SAFETY_CHECKPOINT_PAGES;
      },
      release: () => (released ??= this.release(db, path, registered)),
    };
    return handle;
  }

  private async release(db: SqliteDatabase, path: string, entry: Registered): Promise<void> {
    entry.dbs.delete(db);
    if (entry.dbs.size > 0) return;
    if (this.files.get(path) === entry) this.files.delete(path);
    await this.ask({ op: 'remove', key: entry.key });
    if (this.files.size === 0 && !this.ended) {
      this.idleTimer = setTimeout(() => this.stop(), IDLE_STOP_MS);
      this.idleTimer.unref();
    }
  }

  private ask(message: { op: 'add'; key: number; path: string } | { op: 'remove'; key: number }): Promise<Reply | null> {
    if (this.ended) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise<Reply | null>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(null);
      }, REPLY_TIMEOUT_MS);
      timer.unref();
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.worker.postMessage({ ...message, id });
    });
  }

  private stop(): void {
    if (this.files.size > 0 || this.ended) return;
    this.worker.postMessage({ op: 'stop' });
  }

  /** The thread is gone (stopped, failed or terminated): every writer checkpoints inline again. */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const entry of this.files.values()) for (const db of entry.dbs) inline(db);
    for (const w of this.waiting.values()) w(null);
    this.waiting.clear();
    this.onEnd(this);
  }

  /** Tests: the thread ending unexpectedly. */
  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

function inline(db: SqliteDatabase): void {
  if (db.open) db.pragma(`wal_autocheckpoint = ${INLINE_CHECKPOINT_PAGES}`);
}

let thread: CheckpointThread | null = null;

/**
 * Moves the WAL checkpoints of `db`, a writer's connection on the file `path`, to the
 * process's checkpoint thread. A memory database (or a `file:` URI) is left as it is.
 */
export function checkpointInBackground(db: SqliteDatabase, path: string, intervalMs = CHECKPOINT_INTERVAL_MS): BackgroundCheckpoints {
  if (db.memory || path === ':memory:' || path.startsWith('file:')) return INLINE_CHECKPOINTS;
  if (!thread?.alive) {
    thread = new CheckpointThread(intervalMs, (ended) => {
      if (thread === ended) thread = null;
    });
  }
  return thread.register(db, path);
}

/** Tests: ends the process's checkpoint thread as a crash would (the registered writers fall back to inline checkpoints). */
export async function terminateCheckpointThreadForTests(): Promise<void> {
  await thread?.terminate();
}
