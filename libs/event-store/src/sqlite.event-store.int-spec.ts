import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../testing/src/temp-dir';
import { describeEventStoreConformance } from './event-store.conformance';
import { WrongExpectedRevisionError, type NewEvent, type RecordedEvent } from './event-store.port';
import { verifyStore, verifyStream } from './chain-verifier';
import { SqliteCheckpointStore } from './sqlite.checkpoint-store';
import { openSqlite } from './sqlite.connection';
import { SqliteEventStore } from './sqlite.event-store';
import { SqliteSnapshotStore } from './sqlite.snapshot-store';
import { describeSnapshotStoreConformance } from './snapshot-store.conformance';

describeEventStoreConformance('SqliteEventStore', async () => {
  const dir = tempDir('jobline-event-store-');
  const path = join(dir.path, 'events.db');
  // A small batch makes the catch-up span many reads, which is where a gap would hide.
  const store = new SqliteEventStore({ path, readBatchSize: 64 });
  return {
    store,
    // Another connection to the file, as another process has; it sees the first one's appends by polling.
    openAnother: async () => new SqliteEventStore({ path, readBatchSize: 64, pollIntervalMs: 10 }),
    cleanup: async () => {
      await store.close();
      dir.remove();
    },
  };
});

describeSnapshotStoreConformance('SqliteSnapshotStore', async () => {
  const dir = tempDir('jobline-snapshots-');
  const path = join(dir.path, 'snapshots.db');
  const store = new SqliteSnapshotStore({ path });
  return {
    store,
    openAnother: async () => new SqliteSnapshotStore({ path }),
    cleanup: async () => {
      await store.close();
      dir.remove();
    },
  };
});

describe('SqliteEventStore on a file', () => {
  let dir: TempDir;
  let path: string;
  const opened: Array<{ close(): Promise<void> }> = [];
  const open = (options: { pollIntervalMs?: number; recentRows?: number; recentBytes?: number; groupCommit?: boolean } = {}): SqliteEventStore => {
    const store = new SqliteEventStore({ path, ...options });
    opened.push(store);
    return store;
  };

  beforeEach(() => {
    dir = tempDir('jobline-event-store-');
    path = join(dir.path, 'nested', 'events.db');
  });
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    dir.remove();
  });

  it('starts empty at head -1 and numbers the first event 1', async () => {
    const store = open();
    expect(await store.headPosition()).toBe(-1);
    expect(await store.readAll()).toEqual([]);

    expect(await store.appendToStream('job-1', [event('A')], 'no_stream')).toEqual({ nextExpectedRevision: 0, position: 1 });
    expect(await store.readAll({ after: 0 })).toHaveLength(1);
    expect(await store.headPosition()).toBe(1);
  });

  it('a file written before the hash chain: old events verify as unchained, new ones are linked after them', async () => {
    const legacy = openSqlite({ path });
    legacy.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL,
      revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, recorded_at TEXT NOT NULL)`);
    const insert = legacy.prepare('INSERT INTO events (id, stream_id, revision, type, data, metadata, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    insert.run(randomUUID(), 'job-1', 0, 'A', '{}', '{}', new Date().toISOString());
    insert.run(randomUUID(), 'job-2', 0, 'A', '{}', '{}', new Date().toISOString());
    legacy.close();

    const store = open();
    await store.appendToStream('job-1', [event('B')], 0);
    await store.appendToStream('job-3', [event('A')], 'no_stream');
    const all = await store.readAll();
    expect(all.map((e) => e.chain === undefined)).toEqual([true, true, false, false]);
    expect(await verifyStore(store)).toMatchObject({ intact: true, events: 4, unchained: 2 });
    expect(await verifyStream(store, 'job-1')).toMatchObject({ intact: true, events: 2, unchained: 1 });
  });

  it('survives a reopen: data persists, positions and revisions continue', async () => {
    const first = open();
    const written = [event('A', { n: 1 }, { actor: 'alice' }), event('B', { n: 2 })];
    await first.appendToStream('job-1', written, 'no_stream');
    const before = await first.readAll();
    await first.close();

    const second = open();
    expect(await second.readAll()).toEqual(before);
    const next = await second.appendToStream('job-1', [event('C')], 1);
    expect(next).toEqual({ nextExpectedRevision: 2, position: before[1].position + 1 });
    await expect(second.appendToStream('job-1', [event('D')], 'no_stream')).rejects.toBeInstanceOf(WrongExpectedRevisionError);
  });

  it('a second instance on the same file, as another process would, sees appends through its subscription by polling', async () => {
    const writer = open();
    const reader = open({ pollIntervalMs: 10 });
    await writer.appendToStream('job-1', [event('Before')], 'no_stream');
    const subscription = reader.subscribeToAll();
    const iterator = subscription[Symbol.asyncIterator]();
    const seen = [(await iterator.next()).value as RecordedEvent];
    // The reader is now idle and waiting, so only its poll of the file can notice these.
    const pending = iterator.next();
    for (let i = 0; i < 3; i++) await writer.appendToStream(`job-${i + 2}`, [event('Live'), event('Live')], 'no_stream');
    await writer.appendToStream('job-1', [event('Last')], 0);

    const timer = setTimeout(() => void subscription.close(), 20_000);
    for (let next = await pending; !next.done; next = await iterator.next()) {
      seen.push(next.value);
      if (seen.length === 8) break;
    }
    clearTimeout(timer);
    await subscription.close();

    expect(seen.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(seen.map((e) => e.type)).toEqual(['Before', 'Live', 'Live', 'Live', 'Live', 'Live', 'Live', 'Last']);
  });

  it('a subscription kept live from its own appends also gets, in place, what another instance appended in between, each event as the file has it', async () => {
    const mine = open({ pollIntervalMs: 10 });
    const other = open();
    const subscription = mine.subscribeToAll();
    const iterator = subscription[Symbol.asyncIterator]();
    const timer = setTimeout(() => void subscription.close(), 10_000);
    const seen: RecordedEvent[] = [];
    const take = async (n: number) => {
      for (let i = 0; i < n; i++) seen.push((await iterator.next()).value as RecordedEvent);
    };
    // Own appends (served from the recent rows), another's in between (a gap in them: read from the file), own again.
    await mine.appendToStream('job-a', [event('Mine1'), event('Mine2')], 'no_stream');
    await take(1);
    await other.appendToStream('job-b', [event('Other1')], 'no_stream');
    await mine.appendToStream('job-a', [event('Mine3')], 1);
    await take(3);
    await other.appendToStream('job-b', [event('Other2')], 0);
    await mine.appendToStream('job-a', [event('Mine4')], 2);
    await take(2);
    clearTimeout(timer);
    await subscription.close();

    expect(seen.map((e) => e.type)).toEqual(['Mine1', 'Mine2', 'Other1', 'Mine3', 'Other2', 'Mine4']);
    expect(seen.map((e) => e.position)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(seen).toEqual(await other.readAll());
  });

  it('a subscription caught up with its own appends (it no longer asks the file) still gets what another instance appends after them, by polling', async () => {
    const mine = open({ pollIntervalMs: 10 });
    const other = open();
    const subscription = mine.subscribeToAll();
    const iterator = subscription[Symbol.asyncIterator]();
    const timer = setTimeout(() => void subscription.close(), 10_000);
    const seen: RecordedEvent[] = [];
    const take = async (n: number) => {
      for (let i = 0; i < n; i++) seen.push((await iterator.next()).value as RecordedEvent);
    };
    await mine.appendToStream('job-a', [event('Mine1')], 'no_stream');
    await take(1);
    // Waiting at its own last row: only the poll can find these, and nothing more comes from this instance meanwhile.
    const pending = iterator.next();
    await other.appendToStream('job-b', [event('Other1')], 'no_stream');
    await other.appendToStream('job-b', [event('Other2')], 0);
    seen.push((await pending).value as RecordedEvent);
    await take(1);
    await mine.appendToStream('job-a', [event('Mine2')], 0);
    await take(1);
    await other.appendToStream('job-b', [event('Other3')], 1);
    await take(1);
    clearTimeout(timer);
    await subscription.close();

    expect(seen.map((e) => e.type)).toEqual(['Mine1', 'Other1', 'Other2', 'Mine2', 'Other3']);
    expect(seen).toEqual(await other.readAll());
  });

  it('a subscription far behind the few recent rows kept (trimmed by count, or by size) reads the rest from the file, in order', async () => {
    for (const limits of [{ recentRows: 4 }, { recentBytes: 300 }]) {
      const store = open(limits);
      const start = await store.headPosition();
      for (let i = 0; i < 10; i++) await store.appendToStream(`job-${randomUUID()}`, [event(`E${i}`, { i, pad: 'x'.repeat(40) })], 'no_stream');
      const subscription = store.subscribeToAll({ after: start });
      const timer = setTimeout(() => void subscription.close(), 10_000);
      const seen: RecordedEvent[] = [];
      for await (const e of subscription) {
        seen.push(e);
        if (seen.length === 10) break;
      }
      clearTimeout(timer);
      expect(seen.map((e) => e.type)).toEqual(Array.from({ length: 10 }, (_, i) => `E${i}`));
      expect(seen).toEqual(await store.readAll({ after: start }));
    }
  });

  it('two instances appending to one stream with the same expected revision: exactly one wins', async () => {
    const a = open();
    const b = open();
    await a.appendToStream('job-1', [event('Created')], 'no_stream');

    const outcomes = await Promise.allSettled([
      a.appendToStream('job-1', [event('FromA')], 0),
      b.appendToStream('job-1', [event('FromB')], 0),
    ]);

    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(await b.readStream('job-1')).toHaveLength(2);
  });

  it('answers a retried append with the same event ids with the first result and writes nothing', async () => {
    const store = open();
    const batch = [event('A'), event('B')];
    const first = await store.appendToStream('job-1', batch, 'no_stream');

    expect(await store.appendToStream('job-1', batch, 'no_stream')).toEqual(first);
    expect(await store.readAll()).toHaveLength(2);
    await expect(store.appendToStream('job-2', [batch[0]], 'no_stream')).rejects.toThrow(/already recorded/);
  });

  it('writes nothing when an append fails midway', async () => {
    const store = open();
    const unserializable = event('Bad', { big: 1n });

    await expect(store.appendToStream('job-1', [event('A'), unserializable], 'no_stream')).rejects.toThrow(TypeError);

    expect(await store.readAll()).toEqual([]);
    expect((await store.appendToStream('job-1', [event('A')], 'no_stream')).position).toBe(1);
  });

  it('commits the appends of one turn together, each checked on its own: one that fails writes nothing and fails alone, the chain links them in order', async () => {
    const store = open();
    await store.appendToStream('job-1', [event('Created')], 'no_stream');

    const outcomes = await Promise.allSettled([
      store.appendToStream('job-2', [event('A'), event('B')], 'no_stream'),
      store.appendToStream('job-1', [event('Stale')], 5),
      store.appendToStream('job-1', [event('Next')], 0),
      store.appendToStream('job-3', [event('C'), event('Bad', { big: 1n })], 'no_stream'),
      store.appendToStream('job-2', [event('D')], 1),
    ]);

    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedRevisionError);
    expect((outcomes[3] as PromiseRejectedResult).reason).toBeInstanceOf(TypeError);
    expect(outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []))).toEqual([
      { nextExpectedRevision: 1, position: 3 },
      { nextExpectedRevision: 1, position: 4 },
      { nextExpectedRevision: 2, position: 5 },
    ]);
    expect((await store.readAll()).map((e) => `${e.position} ${e.streamId} ${e.type}`)).toEqual(['1 job-1 Created', '2 job-2 A', '3 job-2 B', '4 job-1 Next', '5 job-2 D']);
    expect(await verifyStore(store)).toMatchObject({ intact: true, events: 5, unchained: 0 });
    // What a subscription is handed from the recent rows is what the file holds.
    const live: RecordedEvent[] = [];
    for await (const e of store.subscribeToAll()) if (live.push(e) === 5) break;
    expect(live).toEqual(await store.readAll());
  });

  it('the first append of a turn commits at once; the next ones of that turn wait for its end and commit together', async () => {
    const store = open();
    // A turn of its own (the store's own set-up is behind us).
    await new Promise((r) => setImmediate(r));
    const first = store.appendToStream('job-1', [event('A')], 'no_stream');
    // Committed before appendToStream returned: in the file, seen by another connection.
    const other = open();
    expect((await other.readAll()).map((e) => e.type)).toEqual(['A']);
    const second = store.appendToStream('job-2', [event('B')], 'no_stream');
    const third = store.appendToStream('job-3', [event('C')], 'no_stream');
    expect((await other.readAll()).map((e) => e.type)).toEqual(['A']);
    await Promise.all([first, second, third]);
    expect((await other.readAll()).map((e) => e.type)).toEqual(['A', 'B', 'C']);
    // The next turn's first append is at once again.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    void store.appendToStream('job-4', [event('D')], 'no_stream');
    expect((await other.readAll()).map((e) => e.type)).toEqual(['A', 'B', 'C', 'D']);
  });

  it('one commit for the appends of one turn: the WAL grows by far fewer pages than with a commit each', async () => {
    const walFrames = async (groupCommit: boolean): Promise<number> => {
      const store = new SqliteEventStore({ path: join(dir.path, `wal-${groupCommit}.db`), groupCommit });
      opened.push(store);
      await store.appendToStream('warm-up', [event('A')], 'no_stream');
      store.database.pragma('wal_checkpoint(TRUNCATE)');
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.appendToStream(`job-${i}`, [event('A'), event('B')], 'no_stream')));
      const [{ log }] = store.database.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>;
      return log;
    };
    const grouped = await walFrames(true);
    const each = await walFrames(false);
    expect(grouped).toBeGreaterThan(0);
    expect(grouped * 3).toBeLessThan(each);
  });

  it('close() commits the appends already asked for', async () => {
    const store = open();
    const appended = store.appendToStream('job-1', [event('A')], 'no_stream');
    await store.close();
    await expect(appended).resolves.toEqual({ nextExpectedRevision: 0, position: 1 });
    const reopened = open();
    expect(await reopened.readAll()).toHaveLength(1);
  });

  it('close() ends every open subscription', async () => {
    const store = open();
    const iterators = [store.subscribeToAll(), store.subscribeToAll()].map((s) => s[Symbol.asyncIterator]());
    const pending = iterators.map((it) => it.next());

    await store.close();

    expect(await Promise.all(pending)).toEqual([
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
    await expect(store.appendToStream('job-1', [event('A')], 'any')).rejects.toThrow(/closed/);
  });
});

describe('SqliteCheckpointStore', () => {
  let dir: TempDir;
  beforeEach(() => {
    dir = tempDir('jobline-checkpoints-');
  });
  afterEach(() => dir.remove());

  it('loads -1 when nothing was saved, then the last saved position, across a reopen', async () => {
    const path = join(dir.path, 'checkpoints.db');
    const first = new SqliteCheckpointStore({ path });
    expect(await first.load('projection')).toBe(-1);
    await first.save('projection', 10);
    await first.save('projection', 42);
    await first.save('relay', 7);
    expect(await first.load('projection')).toBe(42);
    await first.close();

    const second = new SqliteCheckpointStore({ path });
    expect([await second.load('projection'), await second.load('relay'), await second.load('other')]).toEqual([42, 7, -1]);
    await second.close();
  });

  it('shares the event store database handle and leaves closing it to the store', async () => {
    const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    const checkpoints = new SqliteCheckpointStore({ db: store.database });
    await checkpoints.save('relay', 3);
    await checkpoints.close();

    expect(await checkpoints.load('relay')).toBe(3);
    await store.close();
    expect(store.database.open).toBe(false);
  });
});

function event(type: string, data: unknown = {}, metadata: Record<string, unknown> = {}): NewEvent {
  return { id: randomUUID(), type, data, metadata };
}
