import { EVENT_VERSIONS, isJobEventType, type EventMetadata, type JobEvent, type StoredJobEvent, type JobEventMessage } from './events';

/**
 * How job events are written to and read from any event store. Reading goes through
 * the upcasters, so old shapes are lifted to the current version and nothing
 * downstream ever sees a superseded shape.
 */

/**
 * Upcasters by type: version n → n+1. Version 2 of JobSubmitted (rerunOf) and of JobCompleted
 * (logSha256) only added an optional field: a version 1 event is a valid version 2 as it is.
 * Version 3 of JobSubmitted let a step carry continueOnFailure and outputs: a version 2 spec's
 * steps lack both, which means what it always meant (stop at the first failure, no per-step outputs).
 */
const UPCASTERS: Partial<Record<JobEvent['type'], Record<number, (data: unknown) => unknown>>> = {
  JobSubmitted: { 1: (data) => data, 2: (data) => data },
  JobCompleted: { 1: (data) => data },
};

export interface EventEnvelopeInput {
  id: string;
  jobId: string;
  occurredAt: string;
  actor: string;
  causationId: string | null;
  correlationId: string;
  /** `{traceparent, tracestate?}` of the recording span, when tracing is on. */
  trace?: Readonly<Record<string, string>> | null;
}

/** The form an event store adapter appends (see libs/event-store NewEvent). */
export function encodeJobEvent(event: JobEvent, env: EventEnvelopeInput): { id: string; type: string; data: unknown; metadata: Record<string, unknown> } {
  const metadata: EventMetadata = {
    version: EVENT_VERSIONS[event.type],
    jobId: env.jobId,
    occurredAt: env.occurredAt,
    actor: env.actor,
    causationId: env.causationId,
    correlationId: env.correlationId,
  };
  if (env.trace?.traceparent) {
    metadata.traceparent = env.trace.traceparent;
    if (env.trace.tracestate) metadata.tracestate = env.trace.tracestate;
  }
  return { id: env.id, type: event.type, data: event.data, metadata: metadata as unknown as Record<string, unknown> };
}

export interface RecordedLike {
  id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  revision: number;
  position: number;
}

export class UnknownEventError extends Error {}

/** Decodes (and upcasts) a stored record; throws UnknownEventError for a type this build does not know. */
export function decodeJobEvent(rec: RecordedLike): StoredJobEvent {
  if (!isJobEventType(rec.type)) throw new UnknownEventError(`unknown event type ${rec.type} at position ${rec.position}`);
  const meta = rec.metadata as unknown as EventMetadata;
  let version = Number(meta.version ?? 1);
  let data = rec.data;
  const ups = UPCASTERS[rec.type];
  while (version < EVENT_VERSIONS[rec.type]) {
    const up = ups?.[version];
    if (!up) throw new UnknownEventError(`no upcaster for ${rec.type} v${version}`);
    data = up(data);
    version++;
  }
  return {
    type: rec.type,
    data,
    id: rec.id,
    streamRevision: rec.revision,
    position: rec.position,
    metadata: { ...meta, version },
  } as StoredJobEvent;
}

/** The JSON published on `jobline.evt.<jobId>.<type>`. */
export function toEventMessage(e: StoredJobEvent): JobEventMessage {
  return {
    id: e.id,
    type: e.type,
    version: e.metadata.version,
    jobId: e.metadata.jobId,
    position: e.position,
    streamRevision: e.streamRevision,
    occurredAt: e.metadata.occurredAt,
    actor: e.metadata.actor,
    causationId: e.metadata.causationId,
    correlationId: e.metadata.correlationId,
    data: e.data,
  };
}
