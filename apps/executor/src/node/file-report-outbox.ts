import { mkdirSync } from 'node:fs';
import { open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { OUTBOX_KEY, type ReportOutbox } from '../core/report-outbox.port';

const SUFFIX = '.json';

/**
 * The report outbox as a folder, one file per report: written to a temporary file, synced,
 * renamed into place and the folder synced, so a crash leaves either the whole report or
 * none. Keep it outside the runner's work root (its clean-up removes unknown entries there).
 */
export class FileReportOutbox implements ReportOutbox {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  async put(key: string, text: string): Promise<void> {
    const file = this.fileOf(key);
    const tmp = `${file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    await this.syncDir();
  }

  async remove(key: string): Promise<void> {
    await rm(this.fileOf(key), { force: true });
    await this.syncDir();
  }

  async list(): Promise<{ key: string; text: string }[]> {
    const out: { key: string; text: string }[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith(SUFFIX)) continue;
      const key = name.slice(0, -SUFFIX.length);
      if (!OUTBOX_KEY.test(key)) continue;
      try {
        out.push({ key, text: await readFile(join(this.dir, name), 'utf8') });
      } catch {
        // Removed meanwhile: delivered.
      }
    }
    return out;
  }

  private fileOf(key: string): string {
    if (!OUTBOX_KEY.test(key)) throw new Error(`invalid outbox key ${JSON.stringify(key)}`);
    return join(this.dir, `${key}${SUFFIX}`);
  }

  /** A rename is durable only once the folder holding it is synced. */
  private async syncDir(): Promise<void> {
    const fh = await open(this.dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}

/** Where an executor's outbox lives: beside the executors' workspace folders, one per executor id. */
export const outboxDir = (workRoot: string, executorId: string): string => join(resolve(workRoot), '.outbox', executorId);
