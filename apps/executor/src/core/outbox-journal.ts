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
