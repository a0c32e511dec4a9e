import { decodeJobEvent, type JobSpec, type JobView, type StoredJobEvent } from '../../../libs/contracts/src';
import { evolveJobView, type JobCommand } from '../../../libs/domain/src';
import type { CheckpointStore, EventStore, Subscription } from '../../../libs/event-store/src/event-store.port';
import type { JobCommandHandler } from './job-command.handler';
import type { KeyedMutex } from './keyed-mutex';
import type { Logger } from './logger';

/** The retention policy: how long finished jobs are kept, globally and per owner. */
export interface RetentionPolicy {
  /** Finished jobs older than this (ms since they finished) are purged; null: kept (unless their owner's age says otherwise). */
  maxAgeMs: number | null;
  /** Per-owner ages, overriding maxAgeMs (null: that owner's jobs are kept). */
  ownerMaxAgeMs?: Readonly<Record<string, number | null>>;
  /** Time between sweeps (default 1 hour). */
  intervalMs?: number;
}

export interface RetentionOptions {
  eventStore: EventStore;
  checkpoints: CheckpointStore;
  handler: JobCommandHandler;
  logger: Logger;
  policy: RetentionPolicy;
  /** Deletes what a purge removes (a job's logs and artifacts); deleting what is gone already is no error. */
  deleteJobData: (jobId: string, attempts: number) => Promise<void>;
  /** The bundle store: what is stored, and removing one. */
  bundles: { list(): Promise<string[]>; delete(digest: string): Promise<void> };
  /** Held per bundle digest while one is removed, and by whoever records a bundle (JobPackaged). */
  bundleGate: KeyedMutex;
  clock?: () => Date;
  /** Whether this orchestrator may act now (default always): with several, only the leader sweeps, and stops mid-sweep when it no longer leads. */
  acting?: () => boolean;
}

export interface SweepResult {
  /** Jobs purged by this sweep, each with the policy that purged it (the actor of its JobPurged). */
  purged: { jobId: string; actor: string }[];
  /** Bundles removed from the bundle store (no job that is not purged references them). */
  bundlesRemoved: string[];
  /** Jobs whose logs and artifacts were deleted again after a JobPurged of the policy (a sweep cut short before its deletion). */
  repaired: string[];
}

/** Checkpoint of the position up to which every JobPurged of the policy has had its data deleted. */
export const RETENTION_CLEANUP_CHECKPOINT = 'retention-cleanup';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const NO_SPEC = Object.freeze({}) as JobSpec;

/**
 * The retention policy, run by the orchestrator: finished jobs past their age are purged the
 * way DELETE purges (the decider's PurgeJob, recorded first with `retention:global` or
 * `retention:owner:<owner>` as the actor, then their logs and artifacts deleted); then bundles
 * that no job left unpurged references are removed. History is never removed.
 *
 * Its view of the jobs is the job-view fold of the store from position 0, built in the
 * background (start-up does not wait for it); a sweep waits until it has caught up with the
 * store's head. The first sweep runs once it has, then one every interval. A sweep cut short between recording JobPurged and deleting is repaired by the
 * next one: JobPurged events of the policy after the cleanup checkpoint are deleted again.
 */
export class Retention {
  /** Every job not purged yet, as the job view (terminal jobs without their spec). */
  private readonly jobs = new Map<string, JobView>();
  /** JobPurged of the policy whose deletion is not known to be done: job → attempts. */
  private readonly pendingCleanup = new Map<string, number>();
  /** Deleted by this process before the fold saw their JobPurged. */
  private readonly cleanedEarly = new Set<string>();
  private subscription: Subscription | null = null;
  private loop: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private position = -1;
  private cleanupCheckpoint = -1;
  private waiters: { position: number; resolve: () => void }[] = [];
  private sweeping: Promise<SweepResult> | null = null;
  private stopped = false;
  private readonly clock: () => Date;

  constructor(private readonly o: RetentionOptions) {
    this.clock = o.clock ?? (() => new Date());
  }

  /** True when some age is set (else the policy keeps everything and never runs). */
  static enabled(policy: RetentionPolicy | undefined): boolean {
    return !!policy && (policy.maxAgeMs !== null || Object.values(policy.ownerMaxAgeMs ?? {}).some((a) => a !== null));
  }

  async start(): Promise<void> {
    this.cleanupCheckpoint = await this.o.checkpoints.load(RETENTION_CLEANUP_CHECKPOINT);
    this.subscription = this.o.eventStore.subscribeToAll({ after: -1 });
    this.loop = this.consume(this.subscription);
    const run = () => {
      if (!this.sweeping && !this.stopped) void this.sweep().catch((err) => this.o.logger.warn(`retention: sweep failed, next one in ${this.intervalMs} ms: ${(err as Error).message}`));
    };
    this.timer = setInterval(run, this.intervalMs);
    this.timer.unref?.();
    // A first sweep once the fold has caught up: restarts more frequent than the interval must not starve the policy.
    void this.caughtUp().then(run, () => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.subscription?.close();
    await this.loop;
    // A sweep waiting for the fold is let go; seeing `stopped`, it removes nothing more.
    for (const w of this.waiters.splice(0)) w.resolve();
    await this.sweeping?.catch(() => undefined);
  }

  /** With several orchestrators only the leader sweeps. */
  private acting(): boolean {
    return this.o.acting?.() ?? true;
  }

  private get intervalMs(): number {
    return this.o.policy.intervalMs ?? 3_600_000;
  }

  /** The policy that applies to an owner's jobs: its age and its name (the actor of JobPurged). */
  policyFor(owner: string): { maxAgeMs: number | null; actor: string } {
    const own = this.o.policy.ownerMaxAgeMs ?? {};
    if (Object.prototype.hasOwnProperty.call(own, owner)) return { maxAgeMs: own[owner], actor: `retention:owner:${owner}` };
    return { maxAgeMs: this.o.policy.maxAgeMs, actor: 'retention:global' };
  }

  /** One sweep now (the timer runs them every interval); concurrent calls share one sweep. */
  sweep(): Promise<SweepResult> {
    if (!this.acting()) return Promise.resolve({ purged: [], bundlesRemoved: [], repaired: [] });
    this.sweeping ??= this.sweepNow().finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async sweepNow(): Promise<SweepResult> {
    const result: SweepResult = { purged: [], bundlesRemoved: [], repaired: [] };
    await this.caughtUp();
    if (this.stopped || !this.acting()) return result;
    const foldedTo = this.position;

    // Deletions a previous sweep recorded but may not have finished (a crash, a bus outage).
    for (const [jobId, attempts] of [...this.pendingCleanup]) {
      if (this.stopped || !this.acting()) return result;
      try {
        await this.o.deleteJobData(jobId, attempts);
        this.pendingCleanup.delete(jobId);
        result.repaired.push(jobId);
      } catch (err) {
        this.o.logger.warn(`retention: job ${jobId}: logs and artifacts not deleted yet, retried next sweep: ${(err as Error).message}`);
      }
    }

    const nowMs = this.clock().getTime();
    const expired = [...this.jobs.values()].filter((v) => {
      if (!TERMINAL.has(v.status) || v.purged || !v.finishedAt) return false;
      const { maxAgeMs } = this.policyFor(v.owner);
      return maxAgeMs !== null && nowMs - Date.parse(v.finishedAt) > maxAgeMs;
    });
    for (const v of expired) {
      if (this.stopped || !this.acting()) return result;
      const { actor } = this.policyFor(v.owner);
      try {
        // Recorded first (the decider's rule: finished, purged once), then the data deleted.
        // A policy acts with admin rights: it may purge any owner's job.
        const purge: JobCommand = { type: 'PurgeJob', data: { actor: { id: actor, admin: true }, now: this.clock().toISOString() } };
        const handled = await this.o.handler.execute(v.id, purge, { actor, causationId: 'last-event' });
        if (handled.events.length === 0) continue;
        result.purged.push({ jobId: v.id, actor });
        const attempts = handled.job.attempt;
        try {
          await this.o.deleteJobData(v.id, attempts);
          if (!this.pendingCleanup.delete(v.id)) this.cleanedEarly.add(v.id);
        } catch (err) {
          this.pendingCleanup.set(v.id, attempts);
          this.o.logger.warn(`retention: job ${v.id}: purged, but its logs and artifacts are not deleted yet (retried next sweep): ${(err as Error).message}`);
        }
      } catch (err) {
        this.o.logger.warn(`retention: job ${v.id} not purged: ${(err as Error).message}`);
      }
    }

    result.bundlesRemoved = await this.removeUnreferencedBundles();
    if (this.pendingCleanup.size === 0 && foldedTo > this.cleanupCheckpoint) {
      await this.o.checkpoints.save(RETENTION_CLEANUP_CHECKPOINT, foldedTo);
      this.cleanupCheckpoint = foldedTo;
    }
    if (result.purged.length || result.bundlesRemoved.length || result.repaired.length) {
      this.o.logger.log(`retention: purged ${result.purged.length} job(s), removed ${result.bundlesRemoved.length} unreferenced bundle(s)${result.repaired.length ? `, finished the deletion of ${result.repaired.length}` : ''}`);
    }
    return result;
  }

  /**
   * Bundles no unpurged job references. None is removed while a job is being packaged (its
   * bundle may be one of them); each removal holds the digest's gate and first catches up with
   * the store, so a JobPackaged recorded meanwhile keeps its bundle.
   */
  private async removeUnreferencedBundles(): Promise<string[]> {
    const removed: string[] = [];
    if (this.packaging()) return removed;
    const stored = await this.o.bundles.list();
    for (const digest of stored) {
      if (this.stopped) break;
      if (this.referenced().has(digest)) continue;
      await this.o.bundleGate.run(digest, async () => {
        await this.caughtUp();
        if (this.stopped || this.packaging() || this.referenced().has(digest)) return;
        await this.o.bundles.delete(digest);
        removed.push(digest);
      });
    }
    return removed;
  }

  private referenced(): Set<string> {
    const out = new Set<string>();
    for (const v of this.jobs.values()) if (v.bundleDigest) out.add(v.bundleDigest);
    return out;
  }

  private packaging(): boolean {
    for (const v of this.jobs.values()) if (v.status === 'pending') return true;
    return false;
  }

  /** Resolves once the fold has every event stored when it was called. */
  private async caughtUp(): Promise<void> {
    const head = await this.o.eventStore.headPosition();
    if (this.position >= head || this.stopped) return;
    await new Promise<void>((resolve) => this.waiters.push({ position: head, resolve }));
  }

  private async consume(sub: Subscription): Promise<void> {
    try {
      for await (const rec of sub) {
        try {
          this.apply(decodeJobEvent(rec));
        } catch (err) {
          this.o.logger.warn(`retention: event at ${rec.position} not folded: ${(err as Error).message}`);
        }
        this.position = rec.position;
        if (this.waiters.length) {
          const ready = this.waiters.filter((w) => w.position <= this.position);
          this.waiters = this.waiters.filter((w) => w.position > this.position);
          for (const w of ready) w.resolve();
        }
      }
    } catch (err) {
      if (!this.stopped) this.o.logger.error(`retention: reading the store stopped: ${(err as Error).message}`);
    }
  }

  private apply(e: StoredJobEvent): void {
    const jobId = e.metadata.jobId;
    if (e.type === 'JobPurged') {
      const v = this.jobs.get(jobId);
      this.jobs.delete(jobId);
      if (e.position > this.cleanupCheckpoint && String(e.metadata.actor).startsWith('retention:') && !this.cleanedEarly.delete(jobId)) {
        this.pendingCleanup.set(jobId, v?.attempt ?? 0);
      }
      return;
    }
    const before = e.type === 'JobSubmitted' ? null : (this.jobs.get(jobId) ?? null);
    if (!before && e.type !== 'JobSubmitted') return;
    const after = evolveJobView(before, e);
    if (!after) return;
    // A finished job keeps what the policy needs; its spec (most of its memory) is dropped.
    this.jobs.set(jobId, TERMINAL.has(after.status) && after.spec !== NO_SPEC ? { ...after, spec: NO_SPEC } : after);
  }
}
