import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteEventStore } from '../../../../libs/event-store/src';
import { eventually, tempDir, type TempDir } from '../../../../libs/testing/src';
import { JobsProjection } from '../projections/jobs.projection';
import { recordJob } from '../testing/job-history';
import { PastStates } from './past-states';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PastStates (real SQLite store and read models)', () => {
  let dir: TempDir;
  let store: SqliteEventStore;
  const instants: number[] = [];

  beforeAll(async () => {
    dir = tempDir('jobline-past-states-');
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    for (const until of ['queued', 'running', { exitCode: 0 }] as const) {
      await recordJob(store, { owner: 'alice', until });
      await pause(3);
      instants.push(Date.now());
      await pause(3);
    }
  });
  afterAll(async () => {
    await store?.close();
    dir?.remove();
  });

  it('the state at the newest instant is the live read model, row for row', async () => {
    const past = new PastStates(store, { dir: dir.path });
    const live = await JobsProjection.rebuild(store, join(dir.path, 'live.db'));
    try {
      const dump = await past.at(Date.now(), ({ projection, position }) => {
        expect(position).toBe(live.position);
        return projection.dump();
      });
      expect(dump).toEqual(live.dump());
    } finally {
      await live.close();
      await past.close();
    }
  });

  it('keeps a state by its position: instants with nothing recorded between share it; a full cache closes the oldest unused one', async () => {
    const past = new PastStates(store, { dir: dir.path, cacheSize: 1 });
    const folder = readdirSync(dir.path).find((f) => f.startsWith('jobline-past-'))!;
    try {
      const first = await past.at(instants[0], (s) => s);
      const again = await past.at(instants[0] - 1, (s) => s);
      expect(again.projection).toBe(first.projection);
      expect(first.projection.list({}).items.map((j) => j.status)).toEqual(['queued']);
      const file = first.projection.file!;
      expect(existsSync(file)).toBe(true);

      // A read still running on the oldest state keeps it open while the cache moves on.
      let release: (() => void) | undefined;
      const held = past.at(instants[0], async ({ projection }) => {
        await new Promise<void>((r) => (release = r));
        return projection.list({}).total;
      });
      await eventually(() => release !== undefined, 5_000, 'the held read to start');
      const second = await past.at(instants[1], (s) => s);
      expect(second.position).toBeGreaterThan(first.position);
      expect(second.projection.list({ order: 'submittedAt' }).items.map((j) => j.status)).toEqual(['queued', 'running']);
      expect(existsSync(file)).toBe(true);
      release!();
      expect(await held).toBe(1);
      // Closing it hands its file back to the checkpoint thread first (a round trip), then removes it.
      await eventually(() => !existsSync(file), 5_000, 'the evicted state\'s file to be removed');

      // Asked again, it is built again.
      const rebuilt = await past.at(instants[0], (s) => s);
      expect(rebuilt.projection).not.toBe(first.projection);
      expect(rebuilt.projection.list({}).total).toBe(1);
    } finally {
      await past.close();
    }
    expect(existsSync(join(dir.path, folder))).toBe(false);
  });

  it('refuses (unavailable) a question about yet another instant while too many builds wait', async () => {
    const past = new PastStates(store, { dir: dir.path, maxPendingBuilds: 1 });
    try {
      const first = past.at(instants[0], (s) => s.position);
      await expect(past.at(instants[1], (s) => s.position)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/being built already/) });
      // The same instant waits for the build under way.
      expect(await past.at(instants[0], (s) => s.position)).toBe(await first);
      expect(await past.at(instants[1], (s) => s.position)).toBeGreaterThan(await first);
    } finally {
      await past.close();
    }
  });

  it('a store that cannot be read is unavailable (503), not an internal error; a bad question stays a bad question', async () => {
    const other = new SqliteEventStore({ path: join(dir.path, 'closed.db') });
    const past = new PastStates(other, { dir: dir.path });
    await other.close();
    try {
      await expect(past.at(Date.now(), () => 1)).rejects.toMatchObject({ code: 'unavailable', message: expect.stringMatching(/event store could not be read/) });
    } finally {
      await past.close();
    }
    const ok = new PastStates(store, { dir: dir.path });
    try {
      await expect(ok.at(Date.now(), ({ projection }) => projection.list({ cursor: 'not-a-cursor' }))).rejects.toMatchObject({ code: 'invalid_argument' });
    } finally {
      await ok.close();
    }
  });

  it('before anything was recorded: position -1 and no jobs', async () => {
    const past = new PastStates(store, { dir: dir.path });
    try {
      expect(await past.at(0, ({ position, projection }) => ({ position, total: projection.list({}).total }))).toEqual({ position: -1, total: 0 });
    } finally {
      await past.close();
    }
    await expect(past.at(0, () => 1)).rejects.toThrow(/closed/);
  });
});
