/// <reference types="jest" />
import { randomUUID } from 'node:crypto';
import type { SnapshotStore } from './event-store.port';

export interface ClosableSnapshotStore extends SnapshotStore {
  close(): Promise<void>;
}

export interface SnapshotConformanceSubject {
  store: SnapshotStore;
  /** Another instance on the same database, as another process would open it; the suite closes it. */
  openAnother(): Promise<ClosableSnapshotStore>;
  cleanup(): Promise<void>;
}

/** The behaviour of the SnapshotStore port, run by each implementation's int-spec. */
export function describeSnapshotStoreConformance(name: string, factory: () => Promise<SnapshotConformanceSubject>): void {
  describe(`${name} (SnapshotStore conformance)`, () => {
    let subject: SnapshotConformanceSubject;
    let store: SnapshotStore;
    let key: string;
    const others: ClosableSnapshotStore[] = [];

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
      key = `snapshot-${randomUUID()}`;
    });
    afterEach(async () => {
      for (const other of others.splice(0)) await other.close();
      await subject.cleanup();
    });

    it('loads undefined for a key never saved', async () => {
      expect(await store.load(key)).toBeUndefined();
    });

    it('round-trips a JSON state with its position and an ISO save time', async () => {
      const state = { jobs: { a: { status: 'queued', attempt: 1 } }, order: ['a', 'b'], note: 'héllo ✓', none: null };

      expect(await store.save(key, 41, state)).toBe(true);
      const loaded = await store.load<typeof state>(key);

      expect(loaded).toEqual({ position: 41, state, savedAt: expect.any(String) });
      expect(new Date(loaded!.savedAt).toISOString()).toBe(loaded!.savedAt);
      expect(await store.save(key, 41, { replaced: true })).toBe(true);
      expect((await store.load(key))?.state).toEqual({ replaced: true });
    });

    it('never replaces a snapshot of a later position; delete clears the way', async () => {
      await store.save(key, 100, { n: 100 });

      expect(await store.save(key, 99, { n: 99 })).toBe(false);
      expect(await store.load(key)).toMatchObject({ position: 100, state: { n: 100 } });

      await store.delete(key);
      expect(await store.load(key)).toBeUndefined();
      expect(await store.save(key, 5, { n: 5 })).toBe(true);
      expect(await store.load(key)).toMatchObject({ position: 5, state: { n: 5 } });
      await store.delete(`${key}-missing`);
    });

    it('refuses a bad position or a state that is not JSON, and saves nothing', async () => {
      await expect(store.save(key, 1.5, {})).rejects.toThrow(TypeError);
      await expect(store.save(key, -2, {})).rejects.toThrow(TypeError);
      await expect(store.save(key, 1, undefined)).rejects.toThrow(TypeError);
      await expect(store.save(key, 1, { big: 1n })).rejects.toThrow(TypeError);
      expect(await store.load(key)).toBeUndefined();
    });

    it('two instances saving at once keep the latest position', async () => {
      const other = await subject.openAnother();
      others.push(other);

      const saves = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : other).save(key, i, { i }));
      await Promise.all(saves);

      expect(await other.load(key)).toMatchObject({ position: 19, state: { i: 19 } });
      expect(await store.load(key)).toMatchObject({ position: 19, state: { i: 19 } });
    });
  });
}
