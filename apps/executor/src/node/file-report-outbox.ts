import { closeSync, constants, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ReportOutbox } from '../core/report-outbox.port';
import { GroupSync, JOURNAL_FILE, JOURNAL_TMP, journalOf, legacyKey, putRecord, readJournal, removeRecord, shouldCompact } from '../core/outbox-journal';

export interface FileReportOutboxOptions {
  /** With no report left, the journal is cut to nothing once it has grown to this (default 64 KiB). */
  truncateBytes?: number;
  /** With reports left, it is rewritten with only them once it has grown to this and they take less than a quarter (default 1 MiB). */
  compactBytes?: number;
}

const APPEND = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND;

/**
 * The report outbox as one append-only journal in its folder (format: core/outbox-journal.ts,
 * the same under Deno): a put is one append, written before put() returns, and resolves after a
 * data sync that started after it; the puts of a tick, and those arriving while a sync runs,
 * share one sync. A removal is an unsynced tombstone. Reading on start ignores a torn or corrupt
 * tail (cut before the next append), so a crash leaves the whole report or none. One executor
 * process per folder (its executor id). A folder of the previous format (one `<key>.json` per
 * report) is moved into the journal on start. Keep it outside the runner's work root (its
 * clean-up removes unknown entries there).
 */
export class FileReportOutbox implements ReportOutbox {
  readonly dir: string;
  private readonly truncateBytes: number;
  private readonly compactBytes: number;
  private fd: number | null = null;
  private dirFd: number | null = null;
  /** The journal's valid length (where the next record goes). */
  private size = 0;
  /** What the journal holds: text and frame size of each live report. */
  private readonly live = new Map<string, { text: string; bytes: number }>();
  private liveBytes = 0;
  /** A sync failed: the journal's bytes cannot be trusted, the next put rewrites it from `live`. */
  private broken = false;
  /** Journals replaced by a compaction, closed once no sync runs on them. */
  private retired: number[] = [];
  private syncing: number | null = null;
  private readonly group = new GroupSync(() => this.syncJournal());

  constructor(dir: string, options: FileReportOutboxOptions = {}) {
    this.dir = resolve(dir);
    this.truncateBytes = options.truncateBytes ?? 64 * 1024;
    this.compactBytes = options.compactBytes ?? 1024 * 1024;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  async put(key: string, text: string): Promise<void> {
    const record = putRecord(key, text);
    this.journal();
    if (this.broken) this.compact();
    this.append(this.fd!, record);
    const old = this.live.get(key);
    if (old) this.liveBytes -= old.bytes;
    this.live.set(key, { text, bytes: record.length });
    this.liveBytes += record.length;
    try {
      await this.group.synced();
    } catch (err) {
      this.broken = true;
      throw err;
    }
  }

  async remove(key: string): Promise<void> {
    // Not synced: a removal lost in a crash only makes the next start send a duplicate, which is dropped.
    const record = removeRecord(key);
    const fd = this.journal();
    const old = this.live.get(key);
    if (!old) return;
    this.append(fd, record);
    this.live.delete(key);
    this.liveBytes -= old.bytes;
    if (this.live.size === 0 && this.size >= this.truncateBytes) {
      // Nothing in it is needed any more: cut, not rewritten (no sync; a crash keeps the old bytes, all removed).
      ftruncateSync(fd, 0);
      this.size = 0;
    } else if (shouldCompact(this.size, this.liveBytes, this.compactBytes)) {
      this.compact();
    }
  }

  async list(): Promise<{ key: string; text: string }[]> {
    this.journal();
    return [...this.live].map(([key, { text }]) => ({ key, text }));
  }

  /** Waits for the syncs under way and closes the files (a later call opens them again). */
  async close(): Promise<void> {
    await this.group.idle();
    for (const fd of [...this.retired, this.fd, this.dirFd]) if (fd !== null) closeSync(fd);
    this.retired = [];
    this.fd = this.dirFd = null;
    this.live.clear();
    this.liveBytes = this.size = 0;
  }

  /** The journal, opened on first use: read, its tail cut, a previous format's files moved in. */
  private journal(): number {
    if (this.fd !== null) return this.fd;
    const file = join(this.dir, JOURNAL_FILE);
    let bytes: Uint8Array = new Uint8Array(0);
    try {
      bytes = readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const { live, validLength } = readJournal(bytes);
    const fd = openSync(file, APPEND, 0o600);
    try {
      if (validLength < bytes.length) ftruncateSync(fd, validLength);
      this.size = validLength;
      for (const [key, text] of live) this.track(key, text);
      // The previous format: one <key>.json per report, <key>.json.<pid>.tmp while written (and a
      // compaction's JOURNAL_TMP a crash left: the journal it was to replace is still whole).
      const legacy: string[] = [];
      for (const name of readdirSync(this.dir)) {
        if (name.endsWith('.tmp')) {
          legacy.push(name);
          continue;
        }
        const key = legacyKey(name);
        if (key === null) continue;
        let text: string;
        try {
          text = readFileSync(join(this.dir, name), 'utf8');
        } catch {
          continue; // gone meanwhile
        }
        if (!this.live.has(key)) {
          const record = putRecord(key, text);
          writeAll(fd, record);
          this.size += record.length;
          this.track(key, text);
        }
        legacy.push(name);
      }
      // The journal's own name, and what it took over, durable before the old files go.
      fdatasyncSync(fd);
      this.dirFd = openSync(this.dir, 'r');
      fsyncSync(this.dirFd);
      for (const name of legacy) {
        try {
          unlinkSync(join(this.dir, name));
        } catch {
          // Already gone.
        }
      }
    } catch (err) {
      closeSync(fd);
      if (this.dirFd !== null) closeSync(this.dirFd);
      this.dirFd = null;
      this.live.clear();
      this.liveBytes = this.size = 0;
      throw err;
    }
    this.fd = fd;
    return fd;
  }

  private track(key: string, text: string): void {
    const bytes = putRecord(key, text).length;
    const old = this.live.get(key);
    if (old) this.liveBytes -= old.bytes;
    this.live.set(key, { text, bytes });
    this.liveBytes += bytes;
  }

  /** One record at the end; a write that fails half-way is cut off again, or the journal is rewritten by the next put. */
  private append(fd: number, record: Uint8Array): void {
    try {
      writeAll(fd, record);
    } catch (err) {
      try {
        ftruncateSync(fd, this.size);
      } catch {
        this.broken = true;
      }
      throw err;
    }
    this.size += record.length;
  }

  /**
   * Rewrites the journal with only the live reports: written to JOURNAL_TMP, synced, renamed over
   * it, the folder synced, all before it returns (rare: once the live reports are a quarter of a
   * journal of compactBytes; a put's sync on the old file may still run, it is closed after).
   */
  private compact(): void {
    const tmp = join(this.dir, JOURNAL_TMP);
    const fd = openSync(tmp, APPEND | constants.O_TRUNC, 0o600);
    try {
      const bytes = journalOf(new Map([...this.live].map(([key, { text }]) => [key, text])));
      writeAll(fd, bytes);
      fdatasyncSync(fd);
      renameSync(tmp, join(this.dir, JOURNAL_FILE));
      this.dirFd ??= openSync(this.dir, 'r');
      fsyncSync(this.dirFd);
      this.size = bytes.length;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (this.fd !== null) this.retired.push(this.fd);
    this.fd = fd;
    this.broken = false;
    this.closeRetired();
  }

  private async syncJournal(): Promise<void> {
    const fd = this.fd!;
    this.syncing = fd;
    try {
      await new Promise<void>((ok, fail) => fdatasync(fd, (err) => (err ? fail(err) : ok())));
    } finally {
      this.syncing = null;
      this.closeRetired();
    }
  }

  private closeRetired(): void {
    this.retired = this.retired.filter((fd) => {
      if (fd === this.syncing) return true;
      closeSync(fd);
      return false;
    });
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
}

/** Where an executor's outbox lives: beside the executors' workspace folders, one per executor id. */
export const outboxDir = (workRoot: string, executorId: string): string => join(resolve(workRoot), '.outbox', executorId);
