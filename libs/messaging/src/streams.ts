import { RetentionPolicy, StorageType, DiscardPolicy, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { STREAMS, subjects } from '../../contracts/src';

/** Retention of the bus streams; the event store, not NATS, is the system of record. */
export interface StreamOptions {
  /** How long log chunks are kept (default 7 days). */
  logsMaxAgeMs?: number;
  /** Size cap of the logs stream in bytes (default unlimited: -1). */
  logsMaxBytes?: number;
  /** How long published events stay on the bus (default 7 days). */
  eventsMaxAgeMs?: number;
  /** Window in which a re-published Nats-Msg-Id is dropped as a duplicate (default 2 min). */
  duplicateWindowMs?: number;
  /** Replicas for clustered deployments (default 1). */
  replicas?: number;
}

const DAY = 24 * 3600 * 1000;

export function streamConfigs(o: StreamOptions = {}): (Partial<StreamConfig> & { name: string })[] {
  const dup = nanos(o.duplicateWindowMs ?? 120_000);
  const base = { storage: StorageType.File, num_replicas: o.replicas ?? 1, duplicate_window: dup };
  return [
    { ...base, name: STREAMS.commands, subjects: [subjects.commandsAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    { ...base, name: STREAMS.events, subjects: [subjects.eventsAll], retention: RetentionPolicy.Limits, max_age: nanos(o.eventsMaxAgeMs ?? 7 * DAY) },
    {
      ...base,
      name: STREAMS.logs,
      subjects: [subjects.logsAll],
      retention: RetentionPolicy.Limits,
      max_age: nanos(o.logsMaxAgeMs ?? 7 * DAY),
      max_bytes: o.logsMaxBytes ?? -1,
      discard: DiscardPolicy.Old,
    },
    { ...base, name: STREAMS.work, subjects: [subjects.workAll], retention: RetentionPolicy.Workqueue, max_age: nanos(DAY) },
    { ...base, name: STREAMS.control, subjects: [subjects.controlAll], retention: RetentionPolicy.Workqueue, max_age: nanos(3600_000) },
    { ...base, name: STREAMS.reports, subjects: [subjects.reportsAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
    // Package orders and results: one consumer each (packagers, orchestrator), disjoint filters.
    { ...base, name: STREAMS.packages, subjects: [subjects.packagesAll], retention: RetentionPolicy.Workqueue, max_age: nanos(7 * DAY) },
  ];
}

/** Creates every Jobline stream, or updates its mutable settings; safe to call from every process at start-up. */
export async function ensureStreams(jsm: JetStreamManager, options: StreamOptions = {}): Promise<void> {
  for (const cfg of streamConfigs(options)) {
    try {
      await jsm.streams.info(cfg.name);
      await jsm.streams.update(cfg.name, cfg);
    } catch (err) {
      if (!isStreamNotFound(err)) throw err;
      await jsm.streams.add(cfg);
    }
  }
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || /stream not found/i.test(String(e?.message));
}
