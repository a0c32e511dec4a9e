import { RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { STREAMS, subjects } from '../../contracts/src';

/** Retention of the bus streams; the event store, not NATS, is the system of record. */
export interface StreamOptions {
  /** How long log chunks are kept (default 7 days). */
  logsMaxAgeMs?: number;
  /**
   * Byte budget of the logs stream (default 4 GiB; -1: none). Past it the oldest chunks are
   * discarded (any job's); a follower asking for discarded bytes gets a DATA_LOSS error, and
   * a plain GET of a log whose start was discarded is a 410 problem.
   */
  logsMaxBytes?: number;
  /** How long published events stay on the bus (default 7 days). */
  eventsMaxAgeMs?: number;
  /** Window in which a re-published Nats-Msg-Id is dropped as a duplicate (default 2 min). */
  duplicateWindowMs?: number;
  /** Replicas for clustered deployments (default 1). */
  replicas?: number;
  /** How long the outcome of each webhook delivery attempt is kept (default 90 days). */
  webhookAttemptsMaxAgeMs?: number;
}

const DAY = 24 * 3600 * 1000;

export const STREAM_DEFAULTS = { logsMaxAgeMs: 7 * DAY, logsMaxBytes: 4 * 2 ** 30, eventsMaxAgeMs: 7 * DAY, duplicateWindowMs: 120_000, replicas: 1, webhookAttemptsMaxAgeMs: 90 * DAY } as const;

/** Fails closed on a setting JetStream would misread (a fraction, zero, a negative other than -1). */
function checkOptions(o: StreamOptions): void {
  const bad: string[] = [];
  const positive = (k: keyof StreamOptions) => {
    const v = o[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) bad.push(`${k} must be a positive integer, got ${v}`);
  };
  positive('logsMaxAgeMs');
  positive('eventsMaxAgeMs');
  positive('duplicateWindowMs');
  positive('replicas');
  positive('webhookAttemptsMaxAgeMs');
  if (o.logsMaxBytes !== undefined && o.logsMaxBytes !== -1 && !(Number.isSafeInteger(o.logsMaxBytes) && o.logsMaxBytes > 0)) {
    bad.push(`logsMaxBytes must be a positive integer or -1 (no budget), got ${o.logsMaxBytes}`);
  }
  if (bad.length) throw new Error(`invalid stream options: ${bad.join('; ')}`);
}

export function streamConfigs(options: StreamOptions = {}): (Partial<StreamConfig> & { name: string })[] {
  checkOptions(options);
  const o = { ...STREAM_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  const dup = nanos(o.duplicateWindowMs);
  const base = { storage: StorageType.File, num_replicas: o.replicas, duplicate_window: dup };
  return [
    // Owners' and admins' commands: one consumer each (the orchestrator's), disjoint filters.
    { ...base, name: STREAMS.commands, subjects: [subjects.commandsAll, subjects.adminCommandsAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    { ...base, name: STREAMS.events, subjects: [subjects.eventsAll], retention: RetentionPolicy.Limits, max_age: nanos(o.eventsMaxAgeMs) },
    {
      ...base,
      name: STREAMS.logs,
      subjects: [subjects.logsAll],
      retention: RetentionPolicy.Limits,
      max_age: nanos(o.logsMaxAgeMs),
      max_bytes: o.logsMaxBytes,
      discard: DiscardPolicy.Old,
    },
    { ...base, name: STREAMS.work, subjects: [subjects.workAll], retention: RetentionPolicy.Workqueue, max_age: nanos(DAY) },
    { ...base, name: STREAMS.control, subjects: [subjects.controlAll], retention: RetentionPolicy.Workqueue, max_age: nanos(3600_000) },
    { ...base, name: STREAMS.reports, subjects: [subjects.reportsAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    // Package orders and results: one consumer each (packagers, orchestrator), disjoint filters.
    { ...base, name: STREAMS.packages, subjects: [subjects.packagesAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    // Webhooks: deliveries to make (one consumer, the reactor's), and the outcome of every attempt (read by the api).
    { ...base, name: STREAMS.webhookOrders, subjects: [subjects.webhookOrdersAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    { ...base, name: STREAMS.webhookAttempts, subjects: [subjects.webhookAttemptsAll], retention: RetentionPolicy.Limits, max_age: nanos(o.webhookAttemptsMaxAgeMs) },
  ];
}

/** Creates every Jobline stream, or updates its mutable settings; safe to call from every process at start-up. */
export async function ensureStreams(jsm: JetStreamManager, options: StreamOptions = {}): Promise<void> {
  for (const cfg of streamConfigs(options)) {
    try {
      try {
        await jsm.streams.info(cfg.name);
        await jsm.streams.update(cfg.name, cfg);
      } catch (err) {
        if (!isStreamNotFound(err)) throw err;
        await jsm.streams.add(cfg);
      }
    } catch (err) {
      // JetStream reserves a stream's byte budget up front: say which setting does not fit.
      if (cfg.name === STREAMS.logs && isInsufficientStorage(err)) {
        throw new Error(`the logs stream's byte budget (${cfg.max_bytes} bytes) is more than this nats-server can store: lower logsMaxBytes (JOBLINE_LOGS_MAX_BYTES) or give JetStream more storage`, { cause: err });
      }
      throw err;
    }
  }
}

function isInsufficientStorage(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10047 || /insufficient storage/i.test(String(e?.message));
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || /stream not found/i.test(String(e?.message));
}
