import { closeSync, constants, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ReportOutbox } from '../core/report-outbox.port';
import { JournalOutbox, type JournalFiles, type JournalOutboxOptions } from '../core/outbox-journal';

export type FileReportOutboxOptions = JournalOutboxOptions;

const APPEND = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND;

/**
 * The report outbox under Node: the journal of core/outbox-journal.ts (the same under Deno) in
 * `dir`, through node:fs. Keep it outside the runner's work root (its clean-up removes unknown
 * entries there).
 */
export class FileReportOutbox extends JournalOutbox<number> implements ReportOutbox {
  readonly dir: string;

  constructor(dir: string, options: FileReportOutboxOptions = {}) {
    const folder = resolve(dir);
    mkdirSync(folder, { recursive: true, mode: 0o700 });
    super(nodeFiles(folder), options);
    this.dir = folder;
  }
}

/** node:fs for a JournalOutbox in `dir` (file descriptors; the folder's own kept open to sync it). */
function nodeFiles(dir: string): JournalFiles<number> {
  let folder: number | null = null;
  return {
    read: (name) => {
      try {
        return readFileSync(join(dir, name));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    openAppend: (name, truncate) => openSync(join(dir, name), APPEND | (truncate ? constants.O_TRUNC : 0), 0o600),
    write: (fd, bytes) => {
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
    },
    truncate: (fd, length) => ftruncateSync(fd, length),
    dataSyncNow: (fd) => fdatasyncSync(fd),
    dataSync: (fd) => new Promise<void>((ok, fail) => fdatasync(fd, (err) => (err ? fail(err) : ok()))),
    close: (fd) => closeSync(fd),
    list: () => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isFile() ? [e.name] : [])),
    remove: (name) => {
      try {
        unlinkSync(join(dir, name));
      } catch {
        // Already gone.
      }
    },
    rename: (from, to) => renameSync(join(dir, from), join(dir, to)),
    syncFolder: () => fsyncSync((folder ??= openSync(dir, 'r'))),
    closeFolder: () => {
      if (folder !== null) closeSync(folder);
      folder = null;
    },
  };
}

/** Where an executor's outbox lives: beside the executors' workspace folders, one per executor id. */
export const outboxDir = (workRoot: string, executorId: string): string => join(resolve(workRoot), '.outbox', executorId);
