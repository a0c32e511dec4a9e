import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';

/** The bucket and key of the orchestrators' lease. */
export const LEADER_BUCKET = 'jobline_leader';
export const LEADER_KEY = 'orchestrator';

/** What the lease entry says: who holds it, which run of it, since when (for people reading the bucket). */
export interface LeaseHolder {
  id: string;
  instance: string;
  since: string;
}

export interface LeaderLeaseOptions {
  nc: NatsConnection;
  /** This candidate's name (JOBLINE_ORCHESTRATOR_ID). */
  id: string;
  /** How long the lease lasts after a renewal (JOBLINE_LEADER_LEASE_MS). */
  leaseMs: number;
  /** Told true when this candidate starts acting as the leader, false when it must stop; must not throw. */
  onChange: (leader: boolean) => void;
  /** Replicas of the bucket's stream (as the other streams: JOBLINE_STREAM_REPLICAS). */
  replicas?: number;
  /** Told about a failed step (the bus down...); the lease goes on trying. */
  onError?: (err: Error) => void;
  /** A monotonic clock in ms (tests may drive it). */
  monotonic?: () => number;
}

/**
 * A leader lease in NATS KV, its revision the fencing token. The holder renews every quarter
 * of the lease with a compare-and-set on the revision it last wrote; a candidate that sees the
 * same revision for a whole lease (by its own monotonic clock, from when it first saw it)
 * replaces it with a compare-and-set on that revision, so of several candidates exactly one
 * wins and the old holder's next renewal fails.
 *
 * The holder acts only while its own clock says the lease is valid: until `sent + leaseMs −
 * margin`, where `sent` is when it *sent* its last successful renewal (a margin of a fifth of
 * the lease for clock rate and scheduling). A candidate takes over no earlier than a whole
 * lease after it *saw* that renewal, which came after it was sent: so the two never act at
 * the same time, even when the holder was paused (SIGSTOP, a frozen VM) and wakes up still
 * believing it leads — its clock tells it the lease is over before it can act.
 * A holder that stops releases the lease (a delete with its revision): a candidate then takes
 * over at its next look, not a lease later. The key has no TTL: nothing depends on the
 * server's clock or its expiry timers (NATS 2.9 has no per-key TTL).
 */
export class LeaderLease {
  private kv: KV | null = null;
  private readonly instance = randomUUID();
  private readonly mono: () => number;
  private readonly marginMs: number;
  private held = false;
  /** The revision this holder last wrote (its fencing token). */
  private revision = 0;
  private validUntil = 0;
  /** A candidate's view: the last revision seen and when it was first seen. */
  private seenRevision = -1;
  private seenAt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stepping: Promise<void> | null = null;
  private stopped = false;
  private holderNow: LeaseHolder | null = null;

  constructor(private readonly o: LeaderLeaseOptions) {
    if (!(o.leaseMs >= 100)) throw new Error('LeaderLease: leaseMs must be at least 100');
    this.mono = o.monotonic ?? (() => performance.now());
    this.marginMs = Math.ceil(o.leaseMs / 5);
  }

  /** Opens (or creates) the bucket and takes the first step; the lease then runs on its own. */
  async start(): Promise<void> {
    this.kv = await new Kvm(this.o.nc).create(LEADER_BUCKET, { history: 1, replicas: this.o.replicas ?? 1 });
    await this.step();
    this.schedule();
  }

  /** Whether this candidate may act as the leader now: it holds the lease and its clock says the lease is valid. */
  isLeader(): boolean {
    return this.held && this.mono() < this.validUntil;
  }

  /** The fencing token of the current term (0 when not leading). */
  get term(): number {
    return this.isLeader() ? this.revision : 0;
  }

  /** Who held the lease at the last look (null: nobody). */
  get holder(): LeaseHolder | null {
    return this.holderNow;
  }

  /** Stops renewing; a holder stops acting first, then releases the lease so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.stepping;
    if (this.held) {
      this.demote();
      try {
        await this.kv?.delete(LEADER_KEY, { previousSeq: this.revision });
      } catch {
        // Taken over meanwhile, or the bus is down: a standby takes over after a lease.
      }
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    // A holder renews every quarter lease; a candidate looks more often, so it takes over soon after a lease ran out.
    const every = this.held ? this.o.leaseMs / 4 : Math.min(this.o.leaseMs / 8, 250);
    this.timer = setTimeout(() => {
      this.stepping = this.step().finally(() => {
        this.stepping = null;
        this.schedule();
      });
    }, every);
    this.timer.unref?.();
  }

  private async step(): Promise<void> {
    const kv = this.kv!;
    // The clock first: a holder woken from a pause stops before anything else.
    if (this.held && this.mono() >= this.validUntil) this.demote();
    try {
      if (this.held) {
        const sent = this.mono();
        this.revision = await kv.update(LEADER_KEY, this.value(), this.revision);
        this.validUntil = sent + this.o.leaseMs - this.marginMs;
        return;
      }
      const e = await kv.get(LEADER_KEY);
      if (!e || e.operation !== 'PUT') {
        // Nobody holds it (never held, or released): take it, whoever else tries at the same time.
        const sent = this.mono();
        const rev = e ? await kv.update(LEADER_KEY, this.value(), e.revision) : await kv.create(LEADER_KEY, this.value());
        return this.promote(rev, sent);
      }
      this.holderNow = parseHolder(e.string());
      if (e.revision !== this.seenRevision) {
        this.seenRevision = e.revision;
        this.seenAt = this.mono();
        return;
      }
      if (this.mono() - this.seenAt < this.o.leaseMs) return;
      // Not renewed for a whole lease since we saw it: replace exactly that revision.
      const sent = this.mono();
      const rev = await kv.update(LEADER_KEY, this.value(), e.revision);
      this.promote(rev, sent);
    } catch (err) {
      if (this.held && isWrongRevision(err)) {
        // Someone replaced our lease: we are no longer the leader.
        this.demote();
        return;
      }
      // Lost a race to take it, or the bus is down: look again at the next step.
      if (!isWrongRevision(err)) this.o.onError?.(err as Error);
    }
  }

  private value(): string {
    return JSON.stringify({ id: this.o.id, instance: this.instance, since: new Date().toISOString() } satisfies LeaseHolder);
  }

  private promote(revision: number, sent: number): void {
    this.held = true;
    this.revision = revision;
    this.validUntil = sent + this.o.leaseMs - this.marginMs;
    this.holderNow = { id: this.o.id, instance: this.instance, since: new Date().toISOString() };
    this.seenRevision = -1;
    this.o.onChange(true);
  }

  private demote(): void {
    if (!this.held) return;
    this.held = false;
    this.validUntil = 0;
    this.seenRevision = -1;
    this.o.onChange(false);
  }
}

/** JetStream's "wrong last sequence" (10071; 10164 when the sequence is unknown): a compare-and-set lost. */
function isWrongRevision(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 10071 || code === 10164) return true;
  return /wrong last sequence/i.test(err instanceof Error ? err.message : String(err));
}

function parseHolder(text: string): LeaseHolder | null {
  try {
    const v = JSON.parse(text) as Partial<LeaseHolder>;
    return typeof v.id === 'string' && typeof v.instance === 'string' && typeof v.since === 'string' ? (v as LeaseHolder) : null;
  } catch {
    return null;
  }
}
