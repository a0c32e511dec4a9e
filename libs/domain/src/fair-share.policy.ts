import { ReadyQueue, type QueuedEntry } from './scheduling.policy';

/** One owner's limits; Infinity where there is none. */
export interface OwnerQuota {
  /** Attempts of the owner dispatched or running at once. */
  maxRunning: number;
  /** Jobs of the owner waiting (submitted, packaging, queued or waiting for a retry) at once: a submit beyond is refused. */
  maxQueued: number;
  /** The owner's share of free slots when several owners wait (relative to the others'). */
  weight: number;
}

/** What JOBLINE_QUOTAS_FILE says (libs/config's QuotasFile): a default, per-owner overrides field by field. */
export interface QuotasSpec {
  default?: Partial<OwnerQuota>;
  owners?: Record<string, Partial<OwnerQuota>>;
  retryAfterSeconds?: number;
}

export const NO_QUOTA: OwnerQuota = Object.freeze({ maxRunning: Infinity, maxQueued: Infinity, weight: 1 });

/** The quota of every owner: its own entry over the default over no limit (weight 1). */
export class Quotas {
  private readonly base: OwnerQuota;
  private readonly owners = new Map<string, OwnerQuota>();
  /** The Retry-After hint of a submit refused over maxQueued (seconds). */
  readonly retryAfterSeconds: number;

  constructor(spec: QuotasSpec = {}) {
    this.base = merge(NO_QUOTA, spec.default);
    for (const [owner, q] of Object.entries(spec.owners ?? {})) this.owners.set(owner, merge(this.base, q));
    this.retryAfterSeconds = spec.retryAfterSeconds ?? 10;
  }

  of(owner: string): OwnerQuota {
    return this.owners.get(owner) ?? this.base;
  }

  /** Whether any owner's queued jobs are limited (else the submit check counts nothing). */
  get limitsQueued(): boolean {
    return this.base.maxQueued !== Infinity || [...this.owners.values()].some((q) => q.maxQueued !== Infinity);
  }
}

function merge(base: OwnerQuota, over: Partial<OwnerQuota> | undefined): OwnerQuota {
  return Object.freeze({
    maxRunning: over?.maxRunning ?? base.maxRunning,
    maxQueued: over?.maxQueued ?? base.maxQueued,
    weight: over?.weight ?? base.weight,
  });
}

/**
 * Whether a new job of an owner that has `waiting` jobs not yet running may be submitted:
 * null when it may, else why not (the owner's maxQueued is reached).
 */
export function queuedQuotaRefusal(owner: string, quota: OwnerQuota, waiting: number): string | null {
  if (waiting < quota.maxQueued) return null;
  return `owner ${owner} has ${waiting} job(s) waiting, its quota is ${quota.maxQueued}: submit again once some have started`;
}

export interface FairShareEntry extends QueuedEntry {
  owner: string;
}

interface OwnerLane {
  queue: ReadyQueue;
  /** Stride scheduling's pass: advanced by 1/weight at each dispatch of the owner. */
  pass: number;
}

const EPSILON = 1e-9;

/**
 * The ready queue of several owners: each owner's own queue by priority (high, normal, low;
 * FIFO within one), and between owners weighted fair share. A free slot goes to the owner,
 * among those with work waiting and below their maxRunning, with the least (running + 1) /
 * weight; ties go to the least stride pass (advanced by 1/weight at each of its dispatches),
 * then by name. So an owner with nothing running always comes before one with something
 * running (nobody starves behind a busy owner), and owners with equal running shares take
 * turns in proportion to their weights. An owner that starts waiting again joins at the
 * current pass of those waiting: idle time is not saved up as credit.
 */
export class FairShareQueue {
  private readonly lanes = new Map<string, OwnerLane>();
  /** Owners with at least one entry queued. */
  private readonly active = new Set<string>();
  private readonly index = new Map<string, string>();
  /** The greatest pass dispatched at so far: where an owner joins when nobody else waits. */
  private clock = 0;

  constructor(private readonly quotas: Quotas = new Quotas()) {}

  get size(): number {
    return this.index.size;
  }

  has(jobId: string): boolean {
    return this.index.has(jobId);
  }

  /** Entries of one owner in the queue. */
  queuedOf(owner: string): number {
    return this.lanes.get(owner)?.queue.size ?? 0;
  }

  push(entry: FairShareEntry): void {
    if (this.index.has(entry.jobId)) this.remove(entry.jobId);
    let lane = this.lanes.get(entry.owner);
    if (!lane) {
      lane = { queue: new ReadyQueue(), pass: 0 };
      this.lanes.set(entry.owner, lane);
    }
    if (!this.active.has(entry.owner)) {
      lane.pass = Math.max(lane.pass, this.currentPass());
      this.active.add(entry.owner);
    }
    lane.queue.push(entry);
    this.index.set(entry.jobId, entry.owner);
  }

  remove(jobId: string): boolean {
    const owner = this.index.get(jobId);
    if (owner === undefined) return false;
    this.index.delete(jobId);
    const lane = this.lanes.get(owner)!;
    lane.queue.remove(jobId);
    if (lane.queue.size === 0) this.active.delete(owner);
    return true;
  }

  /**
   * The next entry to dispatch, removed from the queue: undefined when the queue is empty or
   * every owner waiting is at its maxRunning. `running` holds the owners' attempts dispatched
   * or running; the popped entry's owner is counted one more there, so one map serves a
   * whole round of dispatches.
   */
  pop(running: Map<string, number>): FairShareEntry | undefined {
    let best: { owner: string; lane: OwnerLane; share: number; weight: number } | undefined;
    for (const owner of this.active) {
      const quota = this.quotas.of(owner);
      const r = running.get(owner) ?? 0;
      if (r >= quota.maxRunning) continue;
      const lane = this.lanes.get(owner)!;
      const share = (r + 1) / quota.weight;
      if (!best || share < best.share - EPSILON || (share <= best.share + EPSILON && (lane.pass < best.lane.pass - EPSILON || (lane.pass <= best.lane.pass + EPSILON && owner < best.owner)))) {
        best = { owner, lane, share, weight: quota.weight };
      }
    }
    if (!best) return undefined;
    const entry = best.lane.queue.pop() as FairShareEntry;
    this.index.delete(entry.jobId);
    if (best.lane.queue.size === 0) this.active.delete(best.owner);
    this.clock = Math.max(this.clock, best.lane.pass);
    best.lane.pass += 1 / best.weight;
    running.set(best.owner, (running.get(best.owner) ?? 0) + 1);
    return entry;
  }

  /** The least pass among the owners waiting; the last one dispatched at when none wait. */
  private currentPass(): number {
    let min = Infinity;
    for (const owner of this.active) min = Math.min(min, this.lanes.get(owner)!.pass);
    return min === Infinity ? this.clock : min;
  }
}
