import { OUTBOX_KEY, type ReportOutbox } from '../core/report-outbox.port';

const SUFFIX = '.json';

/**
 * The report outbox under Deno, the same folder format as the Node one (a Deno executor
 * re-sends what a Node one left, and back): one file per report, written to a temporary
 * file, synced, renamed into place, the folder synced. Needs read and write on the folder.
 */
export class DenoFileReportOutbox implements ReportOutbox {
  constructor(readonly dir: string) {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  async put(key: string, text: string): Promise<void> {
    const file = this.fileOf(key);
    const tmp = `${file}.${Deno.pid}.tmp`;
    // As under Node: the quick steps at once, only the two syncs awaited (each await costs a loop round).
    const f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const bytes = new TextEncoder().encode(text);
      let written = 0;
      while (written < bytes.length) written += f.writeSync(bytes.subarray(written));
      await f.sync();
    } finally {
      f.close();
    }
    Deno.renameSync(tmp, file);
    await this.syncDir();
  }

  async remove(key: string): Promise<void> {
    try {
      await Deno.remove(this.fileOf(key));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    // Not synced: a removal lost in a crash only makes the next start send a duplicate, which is dropped.
  }

  async list(): Promise<{ key: string; text: string }[]> {
    const out: { key: string; text: string }[] = [];
    for await (const entry of Deno.readDir(this.dir)) {
      if (!entry.isFile || !entry.name.endsWith(SUFFIX)) continue;
      const key = entry.name.slice(0, -SUFFIX.length);
      if (!OUTBOX_KEY.test(key)) continue;
      try {
        out.push({ key, text: await Deno.readTextFile(`${this.dir}/${entry.name}`) });
      } catch {
        // Removed meanwhile: delivered.
      }
    }
    return out;
  }

  private fileOf(key: string): string {
    if (!OUTBOX_KEY.test(key)) throw new Error(`invalid outbox key ${JSON.stringify(key)}`);
    return `${this.dir}/${key}${SUFFIX}`;
  }

  /** A rename is durable only once the folder holding it is synced; the folder stays open for that. */
  private dirFile: Deno.FsFile | null = null;
  private async syncDir(): Promise<void> {
    this.dirFile ??= Deno.openSync(this.dir, { read: true });
    await this.dirFile.sync();
  }
}
