import { closeSync, fsync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
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
  /** Kept open to sync the folder after each rename. */
  private dirFd: number | null = null;

  constructor(dir: string) {
    this.dir = resolve(dir);
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  async put(key: string, text: string): Promise<void> {
    const file = this.fileOf(key);
    const tmp = `${file}.${process.pid}.tmp`;
    // Open, write, close and rename of a small file take microseconds: done at once, so that only
    // the two fsyncs (the part that waits for the disk) cost the event loop a round each. Under a
    // busy loop every awaited step costs one, and the report waits for all of them.
    const fd = openSync(tmp, 'w', 0o600);
    try {
      const bytes = Buffer.from(text, 'utf8');
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
      await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    this.dirFd ??= openSync(this.dir, 'r');
    await fsyncFd(this.dirFd);
  }

  async remove(key: string): Promise<void> {
    // Not synced: a removal lost in a crash only makes the next start send a duplicate, which is dropped.
    // unlink, not rm: a fifth of the CPU (rm looks the path up first and goes through its recursive machinery).
    try {
      await unlink(this.fileOf(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
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

}

function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** Where an executor's outbox lives: beside the executors' workspace folders, one per executor id. */
export const outboxDir = (workRoot: string, executorId: string): string => join(resolve(workRoot), '.outbox', executorId);
