import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnavailableError } from '../../../../libs/contracts/src';
import type { EventStore } from '../../../../libs/event-store/src/event-store.port';
import { JobsProjection } from '../projections/jobs.projection';

export interface PastStatesOptions {
  /** States kept ready for more questions about the same instant (paging), newest use last out. Default 4. */
  cacheSize?: number;
  /** Where their read-model files go (a folder of its own is made in it, removed by close()). Default: the OS temp folder. */
  dir?: string;
  /**
   * Builds waiting or running at most (default 8): each folds the log from position 0, so a
   * question about yet another instant beyond that is refused (503, try again) rather than queued.
   */
  maxPendingBuilds?: number;
}

/** The system as the store stood at an instant: the last position it had recorded then, and the read model folded up to it. */
export interface PastState {
  /** The newest position the store had recorded at the instant (-1: none yet). */
  position: number;
  /** The jobs read model (the live one's code and tables) built from position 0 up to `position`; not subscribed. */
  projection: JobsProjection;
}

interface Entry {
  ready: Promise<JobsProjection>;
  users: number;
  evicted: boolean;
}

/**
 * The whole system at a past instant, from the store alone. The instant names a prefix of the
 * log (EventStore.positionAt: what the store had recorded by then), and that prefix is folded
 * by the same JobsProjection, with the same evolveJobView, as the live read model: a past
 * listing has the live one's filters, order, paging and owner rules because it is the same code
 * on other rows. A prefix never changes once recorded, so a state is kept by its position
 * (the next page, or another question about the same instant, costs one positionAt), and two instants
 * with nothing recorded between them share one. Builds run one at a time.
 */
export class PastStates {
  private readonly cacheSize: number;
  private readonly root: string;
  private readonly entries = new Map<number, Entry>();
  private queue: Promise<unknown> = Promise.resolve();
  private built = 0;
  private pending = 0;
  private readonly maxPending: number;
  private closed = false;

  constructor(
    private readonly store: EventStore,
    options: PastStatesOptions = {},
  ) {
    this.cacheSize = Math.max(1, options.cacheSize ?? 4);
    this.maxPending = Math.max(1, options.maxPendingBuilds ?? 8);
    this.root = mkdtempSync(join(options.dir ?? tmpdir(), 'jobline-past-'));
  }

  /** Runs `read` on the state at `atMs` (epoch ms); the state stays open until it returns. */
  async at<T>(atMs: number, read: (state: PastState) => T | Promise<T>): Promise<T> {
    if (this.closed) throw new Error('PastStates is closed');
    const position = await this.store.positionAt(new Date(atMs)).catch(storeFailure);
    const entry = this.entry(position);
    entry.users += 1;
    try {
      const projection = await entry.ready.catch(storeFailure);
      // The question itself (a bad cursor...) answers as it would on the live read model.
      return await read({ position, projection });
    } finally {
      entry.users -= 1;
      if (entry.evicted && entry.users === 0) void this.dispose(entry);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const entry of all) {
      entry.evicted = true;
      await this.dispose(entry);
    }
    rmSync(this.root, { recursive: true, force: true });
  }

  private entry(position: number): Entry {
    const hit = this.entries.get(position);
    if (hit) {
      // Map order is the LRU order.
      this.entries.delete(position);
      this.entries.set(position, hit);
      return hit;
    }
    if (this.pending >= this.maxPending) {
      throw new UnavailableError(`${this.pending} past states are being built already: ask again shortly (or about an instant asked for before)`);
    }
    this.pending += 1;
    const path = join(this.root, `at-${position}-${this.built++}.db`);
    // A job's events sit close together in the log, so a small cache of hot views serves a rebuild.
    const build = this.queue
      .then(() => JobsProjection.rebuild(this.store, path, { until: position, cacheSize: 1_000 }))
      .finally(() => (this.pending -= 1));
    this.queue = build.catch(() => undefined);
    const entry: Entry = { ready: build, users: 0, evicted: false };
    // A failed build is not kept: the next question tries again.
    build.catch(() => {
      if (this.entries.get(position) === entry) this.entries.delete(position);
      rmSync(path, { force: true });
    });
    this.entries.set(position, entry);
    while (this.entries.size > this.cacheSize) {
      const [oldest, old] = this.entries.entries().next().value as [number, Entry];
      this.entries.delete(oldest);
      old.evicted = true;
      if (old.users === 0) void this.dispose(old);
    }
    return entry;
  }

  private async dispose(entry: Entry): Promise<void> {
    let projection: JobsProjection;
    try {
      projection = await entry.ready;
    } catch {
      return;
    }
    const file = projection.file;
    await projection.close();
    if (file) for (const suffix of ['', '-wal', '-shm']) rmSync(file + suffix, { force: true });
  }
}

/** The store could not be read (a connection lost, a closed store): say so, without its internals. */
function storeFailure(err: unknown): never {
  if (err instanceof UnavailableError) throw err;
  throw new UnavailableError('the event store could not be read to rebuild that instant; try again shortly');
}
