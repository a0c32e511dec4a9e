import { Lifecycle } from '../../../libs/domain/src';
import type { SnapshotStore } from '../../../libs/event-store/src/event-store.port';
import type { Logger } from './logger';

export interface LifecycleCheckpointOptions {
  /** Where snapshots are kept (the event store's own database); absent: none, every start folds from position 0. */
  snapshots?: SnapshotStore;
  /** The snapshot's key, e.g. `lifecycle:scheduler`. */
  name: string;
  /** A snapshot after this many store positions since the last one (default 10,000). */
  every?: number;
  logger: Logger;
}

/** The default distance, in store positions, between two snapshots of a lifecycle fold. */
export const LIFECYCLE_SNAPSHOT_EVERY = 10_000;

/**
 * Snapshots of one lifecycle fold (libs/domain/src/lifecycle.ts) with the store position they
 * are of, so a start folds only what came after. A snapshot of another version, or one that
 * cannot be read, is ignored (the fold starts from position 0), never misread; a failed save is
 * logged and the fold goes on (the next one, or a start from further back, makes up for it).
 */
export class LifecycleCheckpoint {
  private readonly every: number;
  private lastSaved = -1;
  private saving: Promise<void> = Promise.resolve();

  constructor(private readonly o: LifecycleCheckpointOptions) {
    this.every = Math.max(1, o.every ?? LIFECYCLE_SNAPSHOT_EVERY);
  }

  /** The fold as of the saved snapshot, or an empty one (position -1). */
  async load(): Promise<Lifecycle> {
    if (!this.o.snapshots) return new Lifecycle();
    try {
      const snap = await this.o.snapshots.load(this.o.name);
      if (!snap) return new Lifecycle();
      const fold = Lifecycle.fromSnapshot(snap.state, snap.position);
      if (!fold) {
        this.o.logger.warn(`lifecycle: snapshot ${this.o.name} is of another version or shape; folding from position 0`);
        return new Lifecycle();
      }
      this.lastSaved = fold.position;
      return fold;
    } catch (err) {
      this.o.logger.warn(`lifecycle: snapshot ${this.o.name} not loaded (${(err as Error).message}); folding from position 0`);
      return new Lifecycle();
    }
  }

  /** Saves a snapshot when the fold got `every` positions past the last one (in the background, one at a time). */
  maybeSave(fold: Lifecycle): void {
    if (fold.position - this.lastSaved >= this.every) void this.save(fold);
  }

  /** Saves a snapshot of the fold as it is now; resolves once it (and any earlier one) is stored or refused. */
  save(fold: Lifecycle): Promise<void> {
    const snapshots = this.o.snapshots;
    if (!snapshots || fold.position <= this.lastSaved) return this.saving;
    // Open jobs are immutable values: the list taken now is the state as of this position, whatever comes later.
    const position = fold.position;
    const state = fold.toSnapshot();
    this.lastSaved = position;
    this.saving = this.saving.then(() =>
      snapshots.save(this.o.name, position, state).then(
        () => undefined,
        (err: unknown) => this.o.logger.warn(`lifecycle: snapshot ${this.o.name} at ${position} not saved: ${(err as Error).message}`),
      ),
    );
    return this.saving;
  }
}
