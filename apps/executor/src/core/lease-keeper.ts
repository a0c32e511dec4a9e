/**
 * What an executor knows of its lease, on a monotonic clock (ms): when it last heard that the
 * orchestrator still counts on it, and whether it may have been away (paused, frozen,
 * restarted) since. Pure bookkeeping: the executor feeds it heartbeat ticks and lease replies.
 *
 * - A pause: a heartbeat tick late by more than half the lease (SIGSTOP, a frozen event loop).
 *   A new instance starts as if it had just paused.
 * - Fresh: a lease reply has answered a heartbeat sent at or after the last pause. Until then
 *   no attempt is claimed, so nothing starts before the orchestrator has heard from us again.
 */
export class LeaseKeeper {
  private pausedAt: number;
  private lastTick: number | null = null;
  private answeredSentAt = Number.NEGATIVE_INFINITY;
  private waiters: { after: number; resolve: (ok: boolean) => void }[] = [];

  constructor(
    private leaseMsNow: number,
    private readonly heartbeatMs: number,
    now: number,
  ) {
    this.pausedAt = now;
  }

  /** The lease in force: the executor's option until a reply brings the orchestrator's. */
  get leaseMs(): number {
    return this.leaseMsNow;
  }

  /** Whether a heartbeat sent after the last pause has been answered. */
  get fresh(): boolean {
    return this.answeredSentAt >= this.pausedAt;
  }

  /** When the last pause ended (or the instance started). */
  get lastPauseAt(): number {
    return this.pausedAt;
  }

  /** A heartbeat tick at `now`; returns by how much it was late when that means a pause, else 0. */
  tick(now: number): number {
    const last = this.lastTick;
    this.lastTick = now;
    if (last === null) return 0;
    const late = now - last - this.heartbeatMs;
    if (late <= this.leaseMsNow / 2) return 0;
    this.pausedAt = Math.max(this.pausedAt, now);
    return late;
  }

  /** A lease reply answered the heartbeat sent at `sentAt`. */
  answered(sentAt: number, leaseMs?: number): void {
    if (leaseMs !== undefined && leaseMs > 0) this.leaseMsNow = leaseMs;
    if (sentAt > this.answeredSentAt) this.answeredSentAt = sentAt;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if (sentAt >= w.after) w.resolve(true);
      else still.push(w);
    }
    this.waiters = still;
  }

  /**
   * Resolves true once a heartbeat sent at or after `after` is answered, false when `signal`
   * aborts or `timeoutMs` passes first.
   */
  answeredAfter(after: number, timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (this.answeredSentAt >= after) return Promise.resolve(true);
    if (signal.aborted || timeoutMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiter = { after, resolve: (ok: boolean) => done(ok) };
      const timer = setTimeout(() => done(false), timeoutMs);
      const onAbort = () => done(false);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(ok);
      };
      signal.addEventListener('abort', onAbort);
      this.waiters.push(waiter);
    });
  }

  /**
   * Whether a claim sent at `claimSentAt` and granted may still be acted on at `now`: no pause
   * since it was sent, and less than half a lease gone by. Beyond that the orchestrator may
   * have declared the attempt lost meanwhile (it waits a whole lease of silence to do so).
   */
  grantStillFresh(claimSentAt: number, now: number): boolean {
    return claimSentAt >= this.pausedAt && now - claimSentAt <= this.leaseMsNow / 2;
  }
}
