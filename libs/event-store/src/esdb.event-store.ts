import {
  BACKWARDS,
  END,
  KurrentDBClient,
  NO_STREAM,
  START,
  FORWARDS,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type EventData,
  type JSONType,
  type ReadPosition,
  type RecordedEvent as EsdbRecordedEvent,
} from '@kurrent/kurrentdb-client';
import {
  WrongExpectedRevisionError,
  type AppendResult,
  type EventStore,
  type ExpectedRevision,
  type NewEvent,
  type ReadAllOptions,
  type RecordedEvent,
  type Subscription,
} from './event-store.port';
import { chainFromMetadata, linkNewEvents } from './esdb.chain';

export interface EventStoreDbEventStoreOptions {
  /**
   * A KurrentDB/EventStoreDB connection string: `kurrentdb://127.0.0.1:2113?tls=false`,
   * `kurrentdb+discover://admin:changeit@cluster.example:2113`, or the older `esdb://` and
   * `esdb+discover://` spellings of the same (see `eventStoreDbConnectionString`).
   */
  connectionString: string;
}

const ESDB_SCHEME = /^(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover):\/\//;

/** True for the connection strings this adapter takes (whatever follows the scheme). */
export function isEventStoreDbConnectionString(spec: string): boolean {
  return ESDB_SCHEME.test(spec);
}

/**
 * The string handed to the client: `esdb://` and `esdb+discover://` mean exactly what
 * `kurrentdb://` and `kurrentdb+discover://` do, and the maintained client prints a
 * deprecation warning for every client built from the old spelling.
 */
export function eventStoreDbConnectionString(spec: string): string {
  const scheme = ESDB_SCHEME.exec(spec);
  if (!scheme) {
    throw new Error(
      `not a KurrentDB/EventStoreDB connection string (kurrentdb://, kurrentdb+discover://, esdb://, esdb+discover://): ${JSON.stringify(maskCredentials(spec))}`,
    );
  }
  const query = spec.includes('?') ? spec.slice(spec.indexOf('?') + 1) : '';
  for (const pair of query.split('&').filter(Boolean)) {
    const key = pair.split('=')[0];
    if (!KNOWN_OPTIONS.has(flatCase(key))) {
      // The client would only warn and ignore it: a misspelt `tls=false` must not connect otherwise.
      throw new Error(`unknown option ${JSON.stringify(key)} in connection string ${JSON.stringify(maskCredentials(spec))}`);
    }
  }
  return scheme[1].startsWith('esdb') ? `kurrentdb${spec.slice('esdb'.length)}` : spec;
}

/** The query options the client's parser knows (it compares them case- and `-`/`_`-insensitively). */
const KNOWN_OPTIONS = new Set(
  [
    'connectionName',
    'defaultDeadline',
    'discoveryInterval',
    'gossipTimeout',
    'keepAliveInterval',
    'keepAliveTimeout',
    'maxDiscoverAttempts',
    'nodePreference',
    'throwOnAppendFailure',
    'tls',
    'tlsCAFile',
    'tlsVerifyCert',
    'userCertFile',
    'userKeyFile',
  ].map(flatCase),
);

function flatCase(key: string): string {
  return key.trim().toLowerCase().replace(/[_-]/g, '');
}

/** The connection string with any `user:password@` replaced by `***@`, for logs. */
export function maskCredentials(spec: string): string {
  return spec.replace(/\/\/[^@/]*@/, '//***@');
}

/**
 * The production event store over KurrentDB (EventStoreDB), through the maintained
 * `@kurrent/kurrentdb-client`. Positions are $all commit
 * positions as JS numbers (safe up to 2^53 bytes of log). System streams and events
 * (`$…`) never show up in readAll, subscribeToAll or headPosition.
 * Construct with `new EventStoreDbEventStore({ connectionString })`; the client
 * connects lazily on the first call.
 *
 * Hash chain (esdb.chain.ts): each appended event carries its stream link in its metadata
 * (`$chain`, taken out again on read, so it reads back as `chain.streamHash`); the log's
 * chain is computed (`globalChain: 'computed'`), since $all positions are the server's.
 */
export class EventStoreDbEventStore implements EventStore {
  readonly globalChain = 'computed' as const;
  private readonly kurrent: KurrentDBClient;
  private readonly subscriptions = new Set<EsdbSubscription>();
  /**
   * The last event seen of recently read or written streams (revision and stream link). An
   * event at a revision never changes, so an append expecting that revision links to it
   * without reading it again: the orchestrator reads a job's stream, then appends after it.
   */
  private readonly tips = new Map<string, StreamTip>();

  /** Throws at once (no connection is made) when the connection string does not parse. */
  constructor(options: EventStoreDbEventStoreOptions) {
    this.kurrent = KurrentDBClient.connectionString(eventStoreDbConnectionString(options.connectionString));
  }

  /** The underlying client, for streams kept beside the events (e.g. EventStoreDbChainCheckpointStore). Disposed by `close()`. */
  get client(): KurrentDBClient {
    return this.kurrent;
  }

  async appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    // An empty append is answered from the stream itself: the server has nothing to
    // check it against and reports no position for it.
    if (events.length === 0) return this.currentState(streamId, expected);
    // The stream link needs the stream's previous event, so the append names it exactly:
    // `any` becomes the revision just read (and is tried again when another append won).
    for (let attempt = 1; ; attempt++) {
      const previous = await this.previousOf(streamId, expected);
      try {
        const linked = linkNewEvents(streamId, events, previous.revision + 1, previous.streamHash);
        const result = await this.kurrent.appendToStream(streamId, linked.map(toEventData), {
          streamState: previous.revision < 0 ? NO_STREAM : BigInt(previous.revision),
        });
        const last = chainFromMetadata(linked[linked.length - 1].metadata).chain;
        if (last) this.remember(streamId, { revision: Number(result.nextExpectedRevision), streamHash: last.streamHash });
        return {
          nextExpectedRevision: Number(result.nextExpectedRevision),
          position: result.position ? Number(result.position.commit) : -1,
        };
      } catch (error) {
        if (!(error instanceof WrongExpectedVersionError)) throw error;
        if (expected === 'any') {
          // The same events written by an earlier try whose answer was lost: that try's result.
          const retried = await this.findRetriedAppend(streamId, events);
          if (retried) return retried;
          if (attempt < ANY_APPEND_ATTEMPTS) continue;
        }
        const actual = error.actualState;
        throw new WrongExpectedRevisionError(streamId, expected, actual === NO_STREAM ? 'no_stream' : Number(actual));
      }
    }
  }

  /**
   * The stream's event the append follows: none for `no_stream` (revision -1), the one at the
   * expected revision (a retry of an append that was written links to the same one, so the
   * server answers it as the same append), or the last one for `any`.
   */
  private async previousOf(streamId: string, expected: ExpectedRevision): Promise<StreamTip> {
    if (expected === 'no_stream' || (typeof expected === 'number' && expected < 0)) return { revision: -1, streamHash: null };
    const known = this.tips.get(streamId);
    if (typeof expected === 'number' && known?.revision === expected) return known;
    const read =
      expected === 'any'
        ? this.kurrent.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: 1 })
        : this.kurrent.readStream(streamId, { direction: FORWARDS, fromRevision: BigInt(expected), maxCount: 1 });
    let found: RecordedEvent | undefined;
    try {
      for await (const resolved of read) {
        if (resolved.event) found = toRecorded(resolved.event, resolved.commitPosition);
      }
    } catch (error) {
      if (!(error instanceof StreamNotFoundError)) throw error;
    }
    if (expected === 'any') return found ? { revision: found.revision, streamHash: found.chain?.streamHash ?? null } : { revision: -1, streamHash: null };
    if (!found || found.revision !== expected) {
      // Nothing to link to: the stream is not at that revision (or it is unreadable there).
      const state = await this.currentState(streamId, 'any');
      const current = state.nextExpectedRevision < 0 ? 'no_stream' : state.nextExpectedRevision;
      if (current !== expected) throw new WrongExpectedRevisionError(streamId, expected, current);
      throw new Error(`stream ${streamId}: revision ${expected} cannot be read, so the append cannot be linked to it`);
    }
    return { revision: found.revision, streamHash: found.chain?.streamHash ?? null };
  }

  private async findRetriedAppend(streamId: string, events: readonly NewEvent[]): Promise<AppendResult | undefined> {
    const tail: RecordedEvent[] = [];
    try {
      for await (const resolved of this.kurrent.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: events.length })) {
        if (resolved.event) tail.unshift(toRecorded(resolved.event, resolved.commitPosition));
      }
    } catch (error) {
      if (!(error instanceof StreamNotFoundError)) throw error;
    }
    if (tail.length !== events.length || !tail.every((e, i) => e.id === events[i].id)) return undefined;
    const last = tail[tail.length - 1];
    return { nextExpectedRevision: last.revision, position: last.position };
  }

  async readStream(streamId: string): Promise<RecordedEvent[]> {
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of this.kurrent.readStream(streamId)) {
        if (resolved.event) events.push(toRecorded(resolved.event, resolved.commitPosition));
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return [];
      throw error;
    }
    const last = events[events.length - 1];
    if (last) this.remember(streamId, { revision: last.revision, streamHash: last.chain?.streamHash ?? null });
    return events;
  }

  private remember(streamId: string, tip: StreamTip): void {
    this.tips.delete(streamId);
    this.tips.set(streamId, tip);
    // Oldest first in a Map: forget the least recently seen beyond the bound.
    if (this.tips.size > TIP_CACHE_SIZE) this.tips.delete(this.tips.keys().next().value as string);
  }

  async readAll(options: ReadAllOptions = {}): Promise<RecordedEvent[]> {
    const maxCount = options.maxCount ?? Number.POSITIVE_INFINITY;
    const events: RecordedEvent[] = [];
    if (maxCount <= 0) return events;
    // The server drops system event types; fromPosition is inclusive and an event of a `$`
    // stream may still pass the filter, so each page asks for one more than is missing and
    // the next page starts where the last one ended. Every read is bounded by maxCount:
    // the client's iterator is pull-based and an abandoned read would stay open.
    let cursor = options.after ?? -1;
    for (;;) {
      const missing = maxCount - events.length;
      const ask = Number.isFinite(missing) ? Math.trunc(missing) + 1 : READ_ALL_PAGE;
      const from = cursor;
      let received = 0;
      for await (const resolved of this.kurrent.readAll({
        fromPosition: fromPositionAfter(cursor),
        filter: excludeSystemEvents(),
        maxCount: ask,
      })) {
        received++;
        const event = userEventAfter(resolved, cursor);
        const position = commitPosition(resolved);
        if (position !== undefined && position > cursor) cursor = position;
        if (!event) continue;
        events.push(event);
        if (events.length >= maxCount) return events;
      }
      if (received < ask) return events;
      if (cursor === from) throw new Error(`readAll made no progress after position ${from}`);
    }
  }

  subscribeToAll(options: { after?: number } = {}): Subscription {
    const after = options.after ?? -1;
    const source = this.kurrent.subscribeToAll({
      fromPosition: fromPositionAfter(after),
      filter: excludeSystemEvents(),
    });
    const subscription = new EsdbSubscription(source, after, (sub) => this.subscriptions.delete(sub));
    this.subscriptions.add(subscription);
    return subscription;
  }

  async headPosition(): Promise<number> {
    const read = this.kurrent.readAll({ direction: BACKWARDS, fromPosition: END, filter: excludeSystemEvents() });
    for await (const resolved of read) {
      const event = userEventAfter(resolved, -1);
      if (event) return event.position;
    }
    return -1;
  }

  /**
   * $all commit positions cannot be sought to, so this reads backwards from the end to the
   * first event created at or before `instant`: its cost grows with the events recorded after
   * `instant`, not with the size of the store.
   */
  async positionAt(instant: Date): Promise<number> {
    const limit = instant.getTime();
    if (!Number.isFinite(limit)) throw new TypeError('positionAt: not a valid instant');
    const read = this.kurrent.readAll({ direction: BACKWARDS, fromPosition: END, filter: excludeSystemEvents() });
    for await (const resolved of read) {
      const event = userEventAfter(resolved, -1);
      if (event && Date.parse(event.recordedAt) <= limit) return event.position;
    }
    return -1;
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    await this.kurrent.dispose();
  }

  private async currentState(streamId: string, expected: ExpectedRevision): Promise<AppendResult> {
    let last: RecordedEvent | undefined;
    try {
      for await (const resolved of this.kurrent.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: 1 })) {
        if (resolved.event) last = toRecorded(resolved.event, resolved.commitPosition);
      }
    } catch (error) {
      if (!(error instanceof StreamNotFoundError)) throw error;
    }
    const current = last ? last.revision : -1;
    const matches = expected === 'any' || (expected === 'no_stream' ? !last : expected === current);
    if (!matches) throw new WrongExpectedRevisionError(streamId, expected, last ? current : 'no_stream');
    return { nextExpectedRevision: current, position: last ? last.position : -1 };
  }
}

/**
 * Adapts the client's readable to the port: a bounded queue (pausing the gRPC stream when
 * the consumer lags), positions strictly above `after`, and a close() that ends a pending
 * next() even if the cancelled call never emits 'end'.
 */
class EsdbSubscription implements Subscription {
  private static readonly highWaterMark = 1000;
  private readonly queue: RecordedEvent[] = [];
  private head = 0;
  private lastPosition: number;
  private ended = false;
  private closing = false;
  private failure: unknown;
  private wakeConsumer: (() => void) | undefined;

  constructor(
    private readonly source: AllStreamSubscription,
    after: number,
    private readonly onClose: (subscription: EsdbSubscription) => void,
  ) {
    this.lastPosition = after;
    source.on('data', (resolved: AllStreamResolvedEvent) => {
      // fromPosition may be inclusive and a reconnect may replay: keep positions increasing.
      const event = userEventAfter(resolved, this.lastPosition);
      if (!event || this.ended) return;
      this.lastPosition = event.position;
      this.queue.push(event);
      if (this.queue.length - this.head >= EsdbSubscription.highWaterMark) source.pause();
      this.wake();
    });
    source.on('error', (error: Error) => {
      this.failure = error;
      this.finish();
    });
    source.on('end', () => this.finish());
    source.on('close', () => this.finish());
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RecordedEvent, void, undefined> {
    try {
      for (;;) {
        if (this.head < this.queue.length) {
          const event = this.queue[this.head++];
          if (this.head === this.queue.length) {
            this.queue.length = 0;
            this.head = 0;
            if (!this.ended && this.source.isPaused()) this.source.resume();
          }
          yield event;
          continue;
        }
        if (this.failure) throw this.failure;
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.wakeConsumer = resolve));
      }
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.finish();
    this.queue.length = 0;
    this.head = 0;
    await this.source.unsubscribe().catch(() => undefined);
    this.source.destroy();
  }

  private finish(): void {
    if (!this.ended) {
      this.ended = true;
      this.onClose(this);
    }
    this.wake();
  }

  private wake(): void {
    const resolve = this.wakeConsumer;
    this.wakeConsumer = undefined;
    resolve?.();
  }
}

interface StreamTip {
  revision: number;
  streamHash: string | null;
}

/** Streams whose last event the adapter keeps (see `tips`). */
const TIP_CACHE_SIZE = 10_000;

/** Appends with `any` that lose to another append re-read the stream and try again, this many times in all. */
const ANY_APPEND_ATTEMPTS = 10;

function toEventData(event: NewEvent): EventData {
  return {
    id: event.id,
    contentType: 'application/json',
    type: event.type,
    // The client JSON-encodes data itself; any JSON value is fine on the wire.
    data: (event.data ?? null) as JSONType,
    metadata: (event.metadata ?? {}) as JSONType,
  };
}

const READ_ALL_PAGE = 4096;

function commitPosition(resolved: AllStreamResolvedEvent): number | undefined {
  const commit = resolved.event?.position?.commit ?? resolved.commitPosition;
  return commit === undefined || commit > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(commit);
}

/** The client's fromPosition is inclusive; callers skip `after` itself. */
function fromPositionAfter(after: number): ReadPosition {
  if (after <= 0) return START;
  const position = BigInt(Math.trunc(after));
  return { commit: position, prepare: position };
}

function isSystem(event: EsdbRecordedEvent): boolean {
  return event.type.startsWith('$') || event.streamId.startsWith('$');
}

function userEventAfter(resolved: AllStreamResolvedEvent, after: number): RecordedEvent | undefined {
  const event = resolved.event;
  if (!event || isSystem(event)) return undefined;
  const recorded = toRecorded(event, resolved.commitPosition);
  return recorded.position > after ? recorded : undefined;
}

function toRecorded(event: EsdbRecordedEvent, commitPosition: bigint | undefined): RecordedEvent {
  const commit = event.position?.commit ?? commitPosition;
  // Servers before 22.6 report no position (or 2^64-1) on stream reads.
  const position = commit === undefined || commit > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(commit);
  const raw = event.metadata;
  const { metadata, chain } = chainFromMetadata(
    raw && typeof raw === 'object' && !Array.isArray(raw) && !(raw instanceof Uint8Array) ? (raw as Record<string, unknown>) : {},
  );
  const recorded: RecordedEvent = {
    id: event.id,
    streamId: event.streamId,
    revision: Number(event.revision),
    position,
    type: event.type,
    data: event.data,
    metadata,
    recordedAt: event.created.toISOString(),
  };
  if (chain) recorded.chain = chain;
  return recorded;
}
