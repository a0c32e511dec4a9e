import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../testing/src/temp-dir';
import { checkpointInBackground, SAFETY_CHECKPOINT_PAGES, terminateCheckpointThreadForTests } from './sqlite.checkpointer';
import { openSqlite } from './sqlite.connection';
import { SqliteEventStore } from './sqlite.event-store';

/** 80 commits of one 2 KB event: about 40 pages of rows, 400 WAL frames, well under SQLite's own 1,000-frame checkpoint. */
async function appendSome(store: SqliteEventStore): Promise<void> {
  const data = { blob: 'x'.repeat(2000) };
  for (let i = 0; i < 80; i++) await store.appendToStream(`job-${randomUUID()}`, [{ id: randomUUID(), type: 'JobSubmitted', data, metadata: {} }], 'no_stream');
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

describe('WAL checkpoints on the checkpoint thread', () => {
  let dir: TempDir;
  let path: string;
  beforeEach(() => {
    dir = tempDir('jobline-checkpointer-');
    path = join(dir.path, 'events.db');
  });
  afterEach(() => dir.remove());

  it('copies a writer’s commits into the file long before SQLite’s own checkpoint would, and closes its connection before the writer closes', async () => {
    const store = new SqliteEventStore({ path });
    expect(store.database.pragma('wal_autocheckpoint', { simple: true })).toBe(SAFETY_CHECKPOINT_PAGES);
    const before = statSync(path).size;
    await appendSome(store);
    // Only a checkpoint writes pages into the database file itself; the writer's would come at 10,000 pages.
    expect(await until(() => statSync(path).size > before + 20 * 4096, 5000)).toBe(true);
    await store.close();
    // The last connection's close checkpoints and removes the WAL: the thread's connection was closed first.
    expect(existsSync(`${path}-wal`)).toBe(false);
  });

  it('checkpoints a file opened again while its previous writer is still being handed back', async () => {
    const first = new SqliteEventStore({ path });
    const closing = first.close();
    const again = new SqliteEventStore({ path });
    await closing;
    const before = statSync(path).size;
    await appendSome(again);
    expect(await until(() => statSync(path).size > before + 20 * 4096, 5000)).toBe(true);
    await again.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
  });

  it('without it (backgroundCheckpoints: false) the commits stay in the WAL', async () => {
    const store = new SqliteEventStore({ path, backgroundCheckpoints: false });
    expect(store.database.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    const before = statSync(path).size;
    await appendSome(store);
    await new Promise((r) => setTimeout(r, 500));
    expect(statSync(path).size).toBe(before);
    await store.close();
  });

  it('gives a writer SQLite’s inline checkpoint back when the thread ends, and a later file gets a new thread', async () => {
    const store = new SqliteEventStore({ path });
    await terminateCheckpointThreadForTests();
    expect(await until(() => store.database.pragma('wal_autocheckpoint', { simple: true }) === 1000, 2000)).toBe(true);
    await appendSome(store);
    await store.close();

    const other = new SqliteEventStore({ path: join(dir.path, 'other.db') });
    const before = statSync(join(dir.path, 'other.db')).size;
    await appendSome(other);
    expect(await until(() => statSync(join(dir.path, 'other.db')).size > before + 20 * 4096, 5000)).toBe(true);
    await other.close();
  });

  it('gives a writer the inline checkpoint back when the thread cannot open its file', async () => {
    const db = openSqlite({ path });
    const missing = join(dir.path, 'not-there', 'x.db');
    const checkpoints = checkpointInBackground(db, missing);
    expect(await until(() => db.pragma('wal_autocheckpoint', { simple: true }) === 1000, 2000)).toBe(true);
    expect(checkpoints.background).toBe(false);
    // A writer of the same file registered after the refusal is asked for again, and gets the inline checkpoint too.
    const later = openSqlite({ path });
    const laterCheckpoints = checkpointInBackground(later, missing);
    expect(await until(() => later.pragma('wal_autocheckpoint', { simple: true }) === 1000, 2000)).toBe(true);
    expect(laterCheckpoints.background).toBe(false);
    await laterCheckpoints.release();
    later.close();
    await checkpoints.release();
    db.close();
  });

  it('leaves a memory database as it is', async () => {
    const db = openSqlite({ path: ':memory:' });
    const checkpoints = checkpointInBackground(db, ':memory:');
    expect(checkpoints.background).toBe(false);
    await checkpoints.release();
    db.close();
  });
});
