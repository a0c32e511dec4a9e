/**
 * Where an executor keeps its finished reports until the bus has acknowledged them, so that
 * neither an outage nor its own crash loses one: written whole, synced (the first publish goes
 * once the bytes are written, not waiting for the syncs), removed after JetStream's ack and the
 * write's end, re-sent by the next start. One implementation per
 * runtime (the same append-only journal under Node and Deno: outbox-journal.ts), behind this interface.
 */
export interface ReportOutbox {
  /**
   * Stores `text` under `key` durably (written whole, then synced), replacing what was there. The
   * bytes are written before it returns its promise (only the syncs are awaited): a publish
   * started right after it goes with the report already on disk, if not yet synced.
   */
  put(key: string, text: string): Promise<void>;
  /** Forgets `key`; nothing happens when it is not there. */
  remove(key: string): Promise<void>;
  /** Everything stored, in no particular order. */
  list(): Promise<{ key: string; text: string }[]>;
}

/** Outbox keys name the journal's records and are message ids: `<jobId>.<attempt>.<kind>`. */
export const OUTBOX_KEY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** The key, and the Nats-Msg-Id, of a report: a re-sent report is dropped by JetStream's dedupe. */
export const reportKey = (r: { jobId: string; attempt: number; kind: string; step?: number }): string =>
  r.step !== undefined ? `${r.jobId}.${r.attempt}.${r.kind}-${r.step}` : `${r.jobId}.${r.attempt}.${r.kind}`;
