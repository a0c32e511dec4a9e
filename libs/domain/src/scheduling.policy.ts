import type { Priority } from '../../contracts/src';

/** Priority ranks: a higher rank is dispatched first. */
export const PRIORITY_RANK: Record<Priority, number> = { high: 2, normal: 1, low: 0 };

export interface QueuedEntry {
  jobId: string;
  /** Whose job it is (for per-owner shares of the queue). */
  owner: string;
  attempt: number;
  priority: Priority;
  /** Global store position of the JobQueued event: FIFO within a priority. */
  seq: number;
}

/**
 * The ready queue: high before normal before low, FIFO within a priority.
 * One FIFO per priority keeps push and pop O(1) amortised.
 */
export class ReadyQueue {
  private readonly lanes: Record<Priority, { items: QueuedEntry[]; head: number }> = {
    high: { items: [], head: 0 },
    normal: { items: [], head: 0 },
    low: { items: [], head: 0 },
  };
  private readonly index = new Map<string, QueuedEntry>();

  get size(): number {
    return this.index.size;
  }

  has(jobId: string): boolean {
    return this.index.has(jobId);
  }

  push(entry: QueuedEntry): void {
    if (this.index.has(entry.jobId)) this.remove(entry.jobId);
    const lane = this.lanes[entry.priority];
    // Entries normally arrive in seq order; keep the lane sorted when they do not (rebuilds).
    const items = lane.items;
    let i = items.length;
    while (i > lane.head && items[i - 1].seq > entry.seq) i--;
    items.splice(i, 0, entry);
    this.index.set(entry.jobId, entry);
  }

  remove(jobId: string): boolean {
    const entry = this.index.get(jobId);
    if (!entry) return false;
    this.index.delete(jobId);
    // Lazy deletion: popped entries no longer in the index are skipped.
    return true;
  }

  /** The next entry to dispatch, removed from the queue; undefined when empty. */
  pop(): QueuedEntry | undefined {
    for (const p of ['high', 'normal', 'low'] as const) {
      const lane = this.lanes[p];
      while (lane.head < lane.items.length) {
        const e = lane.items[lane.head++];
        if (this.index.get(e.jobId) === e) {
          this.index.delete(e.jobId);
          this.compact(lane);
          return e;
        }
      }
      this.compact(lane);
    }
    return undefined;
  }

  private compact(lane: { items: QueuedEntry[]; head: number }): void {
    if (lane.head > 1024 && lane.head * 2 > lane.items.length) {
      lane.items = lane.items.slice(lane.head);
      lane.head = 0;
    }
  }
}
