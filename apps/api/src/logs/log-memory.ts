import type { LogReader } from '../../../../libs/messaging/src/log-reader';

export interface LogMemoryOptions {
  /**
   * While reading goes on, a full collection after this many log bytes delivered since the
   * last one (default 32 MiB), but only while the process's resident memory is above
   * rssBytes (default 192 MiB).
   */
  everyBytes?: number;
  rssBytes?: number;
  /** ... or once log reading has been quiet this long after some was delivered (default 3,000 ms). */
  idleMs?: number;
  /** How often the reader's counters are looked at (default 250 ms). */
  checkMs?: number;
}

type Collect = () => void;
type Rss = () => number;

/**
 * Gives memory back after log traffic. Every byte of a followed log passes through Buffers
 * (the NATS client's reads, the frames sent): with a small JavaScript heap, V8 starts no
 * full collection for them on its own, so after a burst (20 × 50 MB followed) hundreds of
 * MB of dead Buffers stay allocated until something else fills the heap, and an idle api
 * keeps them. When the process runs with `--expose-gc`, this asks for a full collection
 * once reading goes quiet, and while it goes on every `everyBytes` delivered if the
 * resident memory is above `rssBytes`. Not at every `everyBytes` regardless: a full
 * collection marks the whole heap, and at a stream's full speed those collections were
 * most of the api's CPU (profiled: 13.6 ms of CPU per MiB delivered, 5.5 ms without them)
 * while V8's own collections kept the memory bounded. Without that flag it does nothing
 * (`active` is false). For the freed memory to leave the process, glibc must hand
 * it back: see the README (MALLOC_MMAP_THRESHOLD_).
 */
export class LogMemory {
  readonly active: boolean;
  private readonly timer: ReturnType<typeof setInterval> | null = null;
  private collectedAt = 0;
  private lastSeen = 0;
  private quietSince = 0;
  private readonly rssBytes: number;

  constructor(
    private readonly reader: Pick<LogReader, 'stats'>,
    options: LogMemoryOptions = {},
    private readonly collect: Collect | null = (globalThis as { gc?: Collect }).gc ?? null,
    private readonly now: () => number = Date.now,
    private readonly rss: Rss = () => process.memoryUsage.rss(),
  ) {
    const everyBytes = options.everyBytes ?? 32 << 20;
    this.rssBytes = options.rssBytes ?? 192 << 20;
    const idleMs = options.idleMs ?? 3_000;
    const checkMs = options.checkMs ?? 250;
    if (!(everyBytes > 0) || !(idleMs > 0) || !(checkMs > 0) || !(this.rssBytes >= 0)) throw new Error('LogMemory: everyBytes, idleMs and checkMs must be positive, rssBytes not negative');
    this.active = typeof this.collect === 'function';
    if (!this.active) return;
    this.timer = setInterval(() => this.check(everyBytes, idleMs), checkMs);
    this.timer.unref?.();
  }

  /** One look at the counters (the timer calls it; exposed for tests). */
  check(everyBytes: number, idleMs: number): boolean {
    const delivered = this.reader.stats().bytesDelivered;
    const t = this.now();
    if (delivered !== this.lastSeen) {
      this.lastSeen = delivered;
      this.quietSince = t;
    }
    const owed = delivered - this.collectedAt;
    if (owed <= 0) return false;
    const quiet = t - this.quietSince >= idleMs;
    if (!quiet && (owed < everyBytes || this.rss() <= this.rssBytes)) return false;
    this.collectedAt = delivered;
    this.collect?.();
    return true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
