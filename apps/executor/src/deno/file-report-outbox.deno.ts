import type { ReportOutbox } from '../core/report-outbox.port';
import { JournalOutbox, type JournalFiles } from '../core/outbox-journal';

/**
 * The report outbox under Deno: the journal of core/outbox-journal.ts, the same as the Node one
 * (a Deno executor re-sends what a Node one left, and back), in `dir`, through Deno's file calls.
 * Needs read and write on the folder.
 */
export class DenoFileReportOutbox extends JournalOutbox<Deno.FsFile> implements ReportOutbox {
  constructor(
    readonly dir: string,
    truncateBytes = 64 * 1024,
    compactBytes = 1024 * 1024,
  ) {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    super(denoFiles(dir), { truncateBytes, compactBytes });
  }
}

/** Deno's file calls for a JournalOutbox in `dir` (the folder opened once to sync it). */
function denoFiles(dir: string): JournalFiles<Deno.FsFile> {
  let folder: Deno.FsFile | null = null;
  return {
    read: (name) => {
      try {
        return Deno.readFileSync(`${dir}/${name}`);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return null;
        throw err;
      }
    },
    openAppend: (name, truncate) => {
      // Deno's append mode does not take truncate: an old file is removed first.
      if (truncate) {
        try {
          Deno.removeSync(`${dir}/${name}`);
        } catch {
          // None left.
        }
      }
      return Deno.openSync(`${dir}/${name}`, { append: true, create: true, mode: 0o600 });
    },
    write: (file, bytes) => {
      let written = 0;
      while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
    },
    truncate: (file, length) => file.truncateSync(length),
    dataSyncNow: (file) => file.syncDataSync(),
    dataSync: (file) => file.syncData(),
    close: (file) => file.close(),
    list: () => [...Deno.readDirSync(dir)].flatMap((e) => (e.isFile ? [e.name] : [])),
    remove: (name) => {
      try {
        Deno.removeSync(`${dir}/${name}`);
      } catch {
        // Already gone.
      }
    },
    rename: (from, to) => Deno.renameSync(`${dir}/${from}`, `${dir}/${to}`),
    syncFolder: () => (folder ??= Deno.openSync(dir, { read: true })).syncSync(),
    closeFolder: () => {
      folder?.close();
      folder = null;
    },
  };
}
