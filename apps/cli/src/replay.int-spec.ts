import Database from 'better-sqlite3';
import { join } from 'node:path';
import { SqliteEventStore } from '../../../libs/event-store/src';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { JobsProjection } from '../../api/src/projections/jobs.projection';
import { recordJob } from '../../api/src/testing/job-history';
import { replay } from './replay';

describe('jobline replay (against a real SQLite store)', () => {
  let dir: TempDir;
  beforeEach(() => (dir = tempDir('jobline-replay-test-')));
  afterEach(() => dir.remove());

  /** How many events the store holds, asked of SQLite itself. */
  const storedCount = (path: string) => {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT COUNT(*) FROM events').pluck().get() as number;
    } finally {
      db.close();
    }
  };

  it('prints the number of events the store holds (it said one more: positions start at 1)', async () => {
    const events = join(dir.path, 'events.db');
    const store = new SqliteEventStore({ path: events });
    await recordJob(store, { owner: 'alice', until: { exitCode: 0 } });
    await recordJob(store, { owner: 'bob', until: 'cancelled' });
    await recordJob(store, { owner: 'bob' });
    const live = await JobsProjection.rebuild(store, join(dir.path, 'read-models.db'));
    await live.close();
    await store.close();

    const result = await replay({ dataDir: dir.path });
    expect(result.events).toBe(storedCount(events));
    expect(result.jobs).toBe(3);
    expect(result.problems).toEqual([]);
    expect(result.liveMatches).toBe(true);
  });

  it('counts 0 events for an empty store', async () => {
    const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    await store.close();
    const result = await replay({ dataDir: dir.path });
    expect(result).toMatchObject({ events: 0, jobs: 0, problems: [], liveMatches: null });
  });
});
