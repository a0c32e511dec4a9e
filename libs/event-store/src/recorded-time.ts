/** The first event at or after a position: its position and recordedAt (ISO-8601, milliseconds). */
export type FirstFrom = (position: number) => Promise<{ position: number; recordedAt: string } | undefined>;

/**
 * EventStore.positionAt for an adapter whose positions are integers it can seek to (SQLite,
 * PostgreSQL): a bisection over positions, one indexed point read per step (about 20 for a
 * million events), relying on recorded times not decreasing along positions. Holes in the
 * positions (a failed append) are stepped over.
 */
export async function bisectRecordedAt(instant: Date, head: number, firstFrom: FirstFrom): Promise<number> {
  const limit = instant.getTime();
  if (!Number.isFinite(limit)) throw new TypeError('positionAt: not a valid instant');
  // Invariant: `lo` is -1 or an event recorded at or before `limit`; nothing in [hi, ∞) is.
  let lo = -1;
  let hi = head + 1;
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    const hit = await firstFrom(mid);
    if (hit && hit.position < hi && Date.parse(hit.recordedAt) <= limit) lo = hit.position;
    else hi = mid;
  }
  return lo;
}
