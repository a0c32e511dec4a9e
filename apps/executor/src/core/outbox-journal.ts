import { OUTBOX_KEY } from './report-outbox.port';

/**
 * The report outbox's on-disk format, shared by the Node and Deno executors (one folder, either
 * runtime re-sends what the other left): one append-only file, JOURNAL_FILE, of framed records.
 *
 *     frame   = length:u32be  crc:u32be  payload            (length = payload bytes)
 *     payload = op:u8  keyLength:u8  key  text               (op 'P' put, 'R' removal; text UTF-8, empty for 'R')
 *     crc     = CRC-32 (IEEE) of the length's 4 bytes and the payload
 *
 * A put is one append and is durable once a data sync of the file that started after the append
 * has ended; the puts of a tick (and those arriving while a sync runs) share one sync. A removal
 * is an unsynced tombstone: lost in a crash, the report is sent again and dropped as a duplicate.
 * Reading stops at the first frame that does not check out (a torn or corrupt tail: bytes after
 * the last completed sync, none of them a put anyone was told was stored); the writer cuts the
 * file there before appending again. Only this runtime-neutral part knows the bytes; each runtime
 * does the file calls.
 */
export const JOURNAL_FILE = 'journal';
/** Where a compaction writes the live reports before renaming them over the journal. */
export const JOURNAL_TMP = 'journal.tmp';
/** The previous format: one `<key>.json` file per report (read, moved into the journal and deleted on start). */
export const LEGACY_SUFFIX = '.json';

const HEADER = 8;
const PUT = 0x50; // 'P'
const REMOVE = 0x52; // 'R'
/** A frame longer than this is not one of ours (reports are a few hundred bytes; a finished report's error is capped well below). */
const MAX_PAYLOAD = 64 * 1024 * 1024;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib's crc32) of bytes[from, to). */
export function crc32(bytes: Uint8Array, from = 0, to = bytes.length, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = from; i < to; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function frame(op: number, key: string, text: string): Uint8Array {
  if (!OUTBOX_KEY.test(key)) throw new Error(`invalid outbox key ${JSON.stringify(key)}`);
  const body = encoder.encode(text);
  const length = 2 + key.length + body.length;
  const out = new Uint8Array(HEADER + length);
  const view = new DataView(out.buffer);
  view.setUint32(0, length);
  out[HEADER] = op;
  out[HEADER + 1] = key.length;
  // Keys are ASCII (OUTBOX_KEY): one byte per character.
  for (let i = 0; i < key.length; i++) out[HEADER + 2 + i] = key.charCodeAt(i);
  out.set(body, HEADER + 2 + key.length);
  view.setUint32(4, crc32(out, HEADER, out.length, crc32(out, 0, 4)));
  return out;
}

/** The frame storing `text` under `key`. */
export const putRecord = (key: string, text: string): Uint8Array => frame(PUT, key, text);
/** The frame forgetting `key`. */
export const removeRecord = (key: string): Uint8Array => frame(REMOVE, key, '');

export interface JournalContents {
  /** The reports stored and not removed, by key, in the order first stored. */
  live: Map<string, string>;
  /** Where the valid records end: anything after is a torn or corrupt tail, to be cut before appending. */
  validLength: number;
}

/** Reads a journal's bytes up to the first frame that does not check out. */
export function readJournal(bytes: Uint8Array): JournalContents {
  const live = new Map<string, string>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at + HEADER <= bytes.length) {
    const length = view.getUint32(at);
    if (length < 3 || length > MAX_PAYLOAD || at + HEADER + length > bytes.length) break;
    const start = at + HEADER;
    const end = start + length;
    if (view.getUint32(at + 4) !== crc32(bytes, start, end, crc32(bytes, at, at + 4))) break;
    const op = bytes[start];
    const keyLength = bytes[start + 1];
    if ((op !== PUT && op !== REMOVE) || 2 + keyLength > length) break;
    let key = '';
    for (let i = 0; i < keyLength; i++) key += String.fromCharCode(bytes[start + 2 + i]);
    if (!OUTBOX_KEY.test(key)) break;
    if (op === PUT) {
      let text: string;
      try {
        text = decoder.decode(bytes.subarray(start + 2 + keyLength, end));
      } catch {
        break;
      }
      live.delete(key); // a put replaces: the newest is the one kept (and listed last)
      live.set(key, text);
    } else {
      if (end !== start + 2 + keyLength) break;
      live.delete(key);
    }
    at = end;
  }
  return { live, validLength: at };
}

/** The frames of a fresh journal holding just these reports (a compaction's content). */
export function journalOf(live: ReadonlyMap<string, string>): Uint8Array {
  const frames = [...live].map(([key, text]) => putRecord(key, text));
  const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    out.set(f, at);
    at += f.length;
  }
  return out;
}

/**
 * When to compact: the journal has grown past `minBytes` and the live reports take less than a
 * quarter of it. With no report live the journal is simply cut to nothing (nothing in it is needed).
 */
export function shouldCompact(fileBytes: number, liveBytes: number, minBytes: number): boolean {
  return fileBytes >= minBytes && liveBytes * 4 < fileBytes;
}

/** The key of a legacy `<key>.json` report file, or null for any other name. */
export function legacyKey(name: string): string | null {
  if (!name.endsWith(LEGACY_SUFFIX)) return null;
  const key = name.slice(0, -LEGACY_SUFFIX.length);
  return OUTBOX_KEY.test(key) ? key : null;
}

/**
 * Group commit: every caller of `synced()` is resolved by one data sync that started after its
 * call; callers arriving while a sync runs share the next one. `sync` is the runtime's fdatasync
 * of the journal as it is when the sync starts.
 */
export class GroupSync {
  /** The sync not yet started: whoever asks now is covered by it. */
  private next: Promise<void> | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly sync: () => Promise<void>) {}

  synced(): Promise<void> {
    if (this.next) return this.next;
    // Started after the one running, or after this tick's other writes (a microtask later) when none is.
    const before = this.running ?? Promise.resolve();
    const p: Promise<void> = before
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        this.running = p;
        return this.sync();
      })
      .finally(() => {
        if (this.running === p) this.running = null;
      });
    this.next = p;
    return p;
  }

  /** Resolves once no sync is running or due (for closing the file under it). */
  async idle(): Promise<void> {
    while (this.next ?? this.running) await (this.next ?? this.running)!.catch(() => undefined);
  }
}

/**
 * The file calls a JournalOutbox needs, as each runtime makes them; `F` is an open file. Names
 * are entries of the outbox's folder. Everything but `dataSync` is synchronous: a put's bytes are
 * written before it returns, and only the sync (the part that waits for the disk) is awaited.
 */
export interface JournalFiles<F> {
  /** The file's bytes, or null when there is none. */
  read(name: string): Uint8Array | null;
  /** Opens for appending, creating it (mode 0600); `truncate`: emptied first. */
  openAppend(name: string, truncate: boolean): F;
  /** Writes all of `bytes` at the end. */
  write(file: F, bytes: Uint8Array): void;
  truncate(file: F, length: number): void;
  dataSyncNow(file: F): void;
  dataSync(file: F): Promise<void>;
  close(file: F): void;
  /** The names of the folder's files. */
  list(): string[];
  /** Removes a file, if it is still there. */
  remove(name: string): void;
  rename(from: string, to: string): void;
  /** Syncs the folder itself (its entries: a created or renamed file). */
  syncFolder(): void;
  closeFolder(): void;
}

export interface JournalOutboxOptions {
  /** With no report left, the journal is cut to nothing once it has grown to this (default 64 KiB). */
  truncateBytes?: number;
  /** With reports left, it is rewritten with only them once it has grown to this and they take less than a quarter (default 1 MiB). */
  compactBytes?: number;
}

/**
 * The report outbox as one append-only journal in its folder, the same under Node and Deno (each
 * gives its file calls): a put is one append, written before put() returns, and resolves after a
 * data sync that started after it; the puts of a tick, and those arriving while a sync runs,
 * share one sync. A removal is an unsynced tombstone. Reading on start ignores a torn or corrupt
 * tail (cut before the next append), so a crash leaves the whole report or none. One executor
 * process per folder (its executor id). A folder of the previous format (one `<key>.json` per
 * report) is moved into the journal on start.
 */
export class JournalOutbox<F> {
  private readonly truncateBytes: number;
  private readonly compactBytes: number;
  private file: F | null = null;
  /** The journal's valid length (where the next record goes). */
  private size = 0;
  /** What the journal holds: text and frame size of each live report. */
  private readonly live = new Map<string, { text: string; bytes: number }>();
  private liveBytes = 0;
  /** A sync failed: the journal's bytes cannot be trusted, the next put rewrites it from `live`. */
  private broken = false;
  /** Journals replaced by a compaction, closed once no sync runs on them. */
  private retired: F[] = [];
  private syncing: F | null = null;
  private readonly group = new GroupSync(() => this.syncJournal());

  constructor(
    private readonly fs: JournalFiles<F>,
    options: JournalOutboxOptions = {},
  ) {
    this.truncateBytes = options.truncateBytes ?? 64 * 1024;
    this.compactBytes = options.compactBytes ?? 1024 * 1024;
  }

  async put(key: string, text: string): Promise<void> {
    const record = putRecord(key, text);
    this.journal();
    if (this.broken) this.compact();
    this.append(this.file!, record);
    this.track(key, text, record.length);
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
    const file = this.journal();
    const old = this.live.get(key);
    if (!old) return;
    this.append(file, record);
    this.live.delete(key);
    this.liveBytes -= old.bytes;
    if (this.live.size === 0 && this.size >= this.truncateBytes) {
      // Nothing in it is needed any more: cut, not rewritten (no sync; a crash keeps the old bytes, all removed).
      this.fs.truncate(file, 0);
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
    for (const f of this.retired) this.fs.close(f);
    if (this.file !== null) this.fs.close(this.file);
    this.fs.closeFolder();
    this.retired = [];
    this.file = null;
    this.live.clear();
    this.liveBytes = this.size = 0;
  }

  /** The journal, opened on first use: read, its tail cut, a previous format's files moved in. */
  private journal(): F {
    if (this.file !== null) return this.file;
    const bytes = this.fs.read(JOURNAL_FILE) ?? new Uint8Array(0);
    const { live, validLength } = readJournal(bytes);
    const file = this.fs.openAppend(JOURNAL_FILE, false);
    try {
      if (validLength < bytes.length) this.fs.truncate(file, validLength);
      this.size = validLength;
      for (const [key, text] of live) this.track(key, text, putRecord(key, text).length);
      // The previous format: one <key>.json per report, <key>.json.<pid>.tmp while written (and a
      // compaction's JOURNAL_TMP a crash left: the journal it was to replace is still whole).
      const legacy: string[] = [];
      for (const name of this.fs.list()) {
        if (name.endsWith('.tmp')) {
          legacy.push(name);
          continue;
        }
        const key = legacyKey(name);
        if (key === null) continue;
        const old = this.fs.read(name);
        if (old === null) continue; // gone meanwhile
        if (!this.live.has(key)) {
          const text = new TextDecoder().decode(old);
          const record = putRecord(key, text);
          this.fs.write(file, record);
          this.size += record.length;
          this.track(key, text, record.length);
        }
        legacy.push(name);
      }
      // The journal's own name, and what it took over, durable before the old files go.
      this.fs.dataSyncNow(file);
      this.fs.syncFolder();
      for (const name of legacy) this.fs.remove(name);
    } catch (err) {
      this.fs.close(file);
      this.fs.closeFolder();
      this.live.clear();
      this.liveBytes = this.size = 0;
      throw err;
    }
    this.file = file;
    return file;
  }

  private track(key: string, text: string, bytes: number): void {
    const old = this.live.get(key);
    if (old) this.liveBytes -= old.bytes;
    this.live.set(key, { text, bytes });
    this.liveBytes += bytes;
  }

  /** One record at the end; a write that fails half-way is cut off again, or the journal is rewritten by the next put. */
  private append(file: F, record: Uint8Array): void {
    try {
      this.fs.write(file, record);
    } catch (err) {
      try {
        this.fs.truncate(file, this.size);
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
    // Appending, as the journal it replaces (a later cut to nothing must move the writes back to 0).
    const file = this.fs.openAppend(JOURNAL_TMP, true);
    try {
      const bytes = journalOf(new Map([...this.live].map(([key, { text }]) => [key, text])));
      this.fs.write(file, bytes);
      this.fs.dataSyncNow(file);
      this.fs.rename(JOURNAL_TMP, JOURNAL_FILE);
      this.fs.syncFolder();
      this.size = bytes.length;
    } catch (err) {
      this.fs.close(file);
      throw err;
    }
    if (this.file !== null) this.retired.push(this.file);
    this.file = file;
    this.broken = false;
    this.closeRetired();
  }

  private async syncJournal(): Promise<void> {
    const file = this.file!;
    this.syncing = file;
    try {
      await this.fs.dataSync(file);
    } finally {
      this.syncing = null;
      this.closeRetired();
    }
  }

  private closeRetired(): void {
    this.retired = this.retired.filter((f) => {
      if (f === this.syncing) return true;
      this.fs.close(f);
      return false;
    });
  }
}
