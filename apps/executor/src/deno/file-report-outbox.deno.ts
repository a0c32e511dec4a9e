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
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const bytes = new TextEncoder().encode(text);
      let written = 0;
      while (written < bytes.length) written += await f.write(bytes.subarray(written));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, file);
    await this.syncDir();
  }

  async remove(key: string): Promise<void> {
    try {
      await Deno.remove(this.fileOf(key));
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    await this.syncDir();
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

  /** A rename is durable only once the folder holding it is synced. */
  private async syncDir(): Promise<void> {
    const d = await Deno.open(this.dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  }
}
