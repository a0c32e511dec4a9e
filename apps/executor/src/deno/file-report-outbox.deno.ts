import type { ReportOutbox } from '../core/report-outbox.port';
import { GroupSync, JOURNAL_FILE, JOURNAL_TMP, journalOf, legacyKey, putRecord, readJournal, removeRecord, shouldCompact } from '../core/outbox-journal';

/**
 * The report outbox under Deno, the same journal as the Node one (core/outbox-journal.ts; a Deno
 * executor re-sends what a Node one left, and back) and the same steps: a put is one append,
 * resolved after a data sync that started after it (the puts of a tick share one), a removal an
 * unsynced tombstone, a torn or corrupt tail ignored and cut, the previous per-file format moved in
 * on start, a compaction (rare) written aside, synced, renamed over it and the folder synced. One
 * executor process per folder. Needs read and write on the folder.
 */
export class DenoFileReportOutbox implements ReportOutbox {
  private file: Deno.FsFile | null = null;
  private dirFile: Deno.FsFile | null = null;
  private size = 0;
  private readonly live = new Map<string, { text: string; bytes: number }>();
  private liveBytes = 0;
  private broken = false;
  private retired: Deno.FsFile[] = [];
  private syncing: Deno.FsFile | null = null;
  private readonly group = new GroupSync(() => this.syncJournal());

  constructor(
    readonly dir: string,
    private readonly truncateBytes = 64 * 1024,
    private readonly compactBytes = 1024 * 1024,
  ) {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
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
      file.truncateSync(0);
      this.size = 0;
    } else if (shouldCompact(this.size, this.liveBytes, this.compactBytes)) {
      this.compact();
    }
  }

  async list(): Promise<{ key: string; text: string }[]> {
    this.journal();
    return [...this.live].map(([key, { text }]) => ({ key, text }));
  }

  private journal(): Deno.FsFile {
    if (this.file !== null) return this.file;
    const path = `${this.dir}/${JOURNAL_FILE}`;
    let bytes = new Uint8Array(0);
    try {
      bytes = Deno.readFileSync(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const { live, validLength } = readJournal(bytes);
    const file = Deno.openSync(path, { append: true, create: true, mode: 0o600 });
    try {
      if (validLength < bytes.length) file.truncateSync(validLength);
      this.size = validLength;
      for (const [key, text] of live) this.track(key, text, putRecord(key, text).length);
      const legacy: string[] = [];
      for (const entry of Deno.readDirSync(this.dir)) {
        if (!entry.isFile) continue;
        if (entry.name.endsWith('.tmp')) {
          legacy.push(entry.name);
          continue;
        }
        const key = legacyKey(entry.name);
        if (key === null) continue;
        let text: string;
        try {
          text = Deno.readTextFileSync(`${this.dir}/${entry.name}`);
        } catch {
          continue;
        }
        if (!this.live.has(key)) {
          const record = putRecord(key, text);
          writeAll(file, record);
          this.size += record.length;
          this.track(key, text, record.length);
        }
        legacy.push(entry.name);
      }
      file.syncDataSync();
      this.dirFile = Deno.openSync(this.dir, { read: true });
      this.dirFile.syncSync();
      for (const name of legacy) {
        try {
          Deno.removeSync(`${this.dir}/${name}`);
        } catch {
          // Already gone.
        }
      }
    } catch (err) {
      file.close();
      this.dirFile?.close();
      this.dirFile = null;
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

  private append(file: Deno.FsFile, record: Uint8Array): void {
    try {
      writeAll(file, record);
    } catch (err) {
      try {
        file.truncateSync(this.size);
      } catch {
        this.broken = true;
      }
      throw err;
    }
    this.size += record.length;
  }

  private compact(): void {
    const tmp = `${this.dir}/${JOURNAL_TMP}`;
    try {
      Deno.removeSync(tmp);
    } catch {
      // None left.
    }
    // Appending, as the journal it replaces (a later cut to nothing must move the writes back to 0).
    const file = Deno.openSync(tmp, { append: true, create: true, mode: 0o600 });
    try {
      const bytes = journalOf(new Map([...this.live].map(([key, { text }]) => [key, text])));
      writeAll(file, bytes);
      file.syncDataSync();
      Deno.renameSync(tmp, `${this.dir}/${JOURNAL_FILE}`);
      this.dirFile ??= Deno.openSync(this.dir, { read: true });
      this.dirFile.syncSync();
      this.size = bytes.length;
    } catch (err) {
      file.close();
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
      await file.syncData();
    } finally {
      this.syncing = null;
      this.closeRetired();
    }
  }

  private closeRetired(): void {
    this.retired = this.retired.filter((f) => {
      if (f === this.syncing) return true;
      f.close();
      return false;
    });
  }
}

function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}
