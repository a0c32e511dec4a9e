import { z } from 'zod';

/**
 * The executor's numbers: slots and every interval it keeps. Validated once, in one place; a
 * field given as `undefined` takes its default (a spread of `{heartbeatMs: undefined}` over
 * the defaults once made heartbeats go out every millisecond).
 */
export interface ExecutorTimings {
  /** Attempts run at the same time (default 4); no more work is pulled while all slots are busy. */
  capacity: number;
  /** Heartbeat period (default 1000 ms); one is also sent at start, after a pause and whenever a slot frees. */
  heartbeatMs: number;
  /**
   * The orchestrator's lease (default 10,000 ms; each lease reply brings the orchestrator's own value):
   * the start deadline of a run order without `startBy`, and the measure of a pause (timers late by
   * more than half of it) and of a claim's freshness. At least 3 heartbeat periods.
   */
  leaseMs: number;
  /** Time between SIGTERM and SIGKILL when an attempt is stopped (default 5000 ms). */
  graceMs: number;
  /** How long a claim's answer, a heartbeat's lease reply and a report's acknowledgement are awaited (default 3000 ms). */
  requestTimeoutMs: number;
  /** Back-off of claims and report deliveries, and of pulls after an error: from retryMinMs, doubling, up to retryMaxMs (defaults 100 ms, 5000 ms). */
  retryMinMs: number;
  retryMaxMs: number;
  /** On stop(), how long finished reports may take to reach the bus (default 5000 ms); the rest stay in the outbox for the next start. */
  stopDeliveryMs: number;
  /** How many jobId+attempt pairs are remembered to ignore a re-delivered run (default 10,000). */
  dedupeSize: number;
}

export const EXECUTOR_DEFAULTS: ExecutorTimings = {
  capacity: 4,
  heartbeatMs: 1000,
  leaseMs: 10_000,
  graceMs: 5000,
  requestTimeoutMs: 3000,
  retryMinMs: 100,
  retryMaxMs: 5000,
  stopDeliveryMs: 5000,
  dedupeSize: 10_000,
};

const int = (min: number, max: number) => z.number().int().min(min).max(max);

const TimingsSchema = z
  .strictObject({
    capacity: int(1, 1024),
    heartbeatMs: int(50, 60_000),
    leaseMs: int(150, 3_600_000),
    graceMs: int(0, 3_600_000),
    requestTimeoutMs: int(10, 600_000),
    retryMinMs: int(1, 600_000),
    retryMaxMs: int(1, 600_000),
    stopDeliveryMs: int(0, 600_000),
    dedupeSize: int(1, 10_000_000),
  })
  .superRefine((t, ctx) => {
    if (t.leaseMs < 3 * t.heartbeatMs) {
      ctx.addIssue({ code: 'custom', path: ['leaseMs'], message: `must be at least 3 heartbeat periods (${3 * t.heartbeatMs} ms)` });
    }
    if (t.retryMaxMs < t.retryMinMs) ctx.addIssue({ code: 'custom', path: ['retryMaxMs'], message: 'must not be below retryMinMs' });
  });

/** The timings with defaults filled in; throws one error listing every problem. */
export function resolveExecutorTimings(given: Partial<Record<keyof ExecutorTimings, number | undefined>>): ExecutorTimings {
  const picked: Record<string, unknown> = {};
  for (const key of Object.keys(EXECUTOR_DEFAULTS) as (keyof ExecutorTimings)[]) picked[key] = given[key] ?? EXECUTOR_DEFAULTS[key];
  const r = TimingsSchema.safeParse(picked);
  if (!r.success) throw new Error(`invalid executor options: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
