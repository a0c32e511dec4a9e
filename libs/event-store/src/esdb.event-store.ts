import {
  ANY,
  BACKWARDS,
  END,
  KurrentDBClient,
  NO_STREAM,
  START,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type AppendStreamState,
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
 */
export class EventStoreDbEventStore implements EventStore {
  private readonly client: KurrentDBClient;
  private readonly subscriptions = new Set<EsdbSubscription>();

  /** Throws at once (no connection is made) when the connection string does not parse. */
  constructor(options: EventStoreDbEventStoreOptions) {
    this.client = KurrentDBClient.connectionString(eventStoreDbConnectionString(options.connectionString));
  }

  async appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    // An empty append is answered from the stream itself: the server has nothing to
    // check it against and reports no position for it.
    if (events.length === 0) return this.currentState(streamId, expected);
    try {
      const result = await this.client.appendToStream(streamId, events.map(toEventData), {
        streamState: toStreamState(expected),
      });
      return {
        nextExpectedRevision: Number(result.nextExpectedRevision),
        position: result.position ? Number(result.position.commit) : -1,
      };
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) {
        const actual = error.actualState;
        throw new WrongExpectedRevisionError(streamId, expected, actual === NO_STREAM ? 'no_stream' : Number(actual));
      }
      throw error;
    }
  }

  async readStream(streamId: string): Promise<RecordedEvent[]> {
    const events: RecordedEvent[] = [];
    try {
      for await (const resolved of this.client.readStream(streamId)) {
        if (resolved.event) events.push(toRecorded(resolved.event, resolved.commitPosition));
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return [];
      throw error;
    }
    return events;
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
      for await (const resolved of this.client.readAll({
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
    const source = this.client.subscribeToAll({
      fromPosition: fromPositionAfter(after),
      filter: excludeSystemEvents(),
    });
    const subscription = new EsdbSubscription(source, after, (sub) => this.subscriptions.delete(sub));
    this.subscriptions.add(subscription);
    return subscription;
  }

  async headPosition(): Promise<number> {
    const read = this.client.readAll({ direction: BACKWARDS, fromPosition: END, filter: excludeSystemEvents() });
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
    const read = this.client.readAll({ direction: BACKWARDS, fromPosition: END, filter: excludeSystemEvents() });
    for await (const resolved of read) {
      const event = userEventAfter(resolved, -1);
      if (event && Date.parse(event.recordedAt) <= limit) return event.position;
    }
    return -1;
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((subscription) => subscription.close()));
    await this.client.dispose();
  }

  private async currentState(streamId: string, expected: ExpectedRevision): Promise<AppendResult> {
    let last: RecordedEvent | undefined;
    try {
      for await (const resolved of this.client.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: 1 })) {
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

function toStreamState(expected: ExpectedRevision): AppendStreamState {
  if (expected === 'any') return ANY;
  if (expected === 'no_stream' || expected < 0) return NO_STREAM;
  return BigInt(expected);
}

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
  const metadata = event.metadata;
  return {
    id: event.id,
    streamId: event.streamId,
    revision: Number(event.revision),
    position,
    type: event.type,
    data: event.data,
    metadata:
      metadata && typeof metadata === 'object' && !Array.isArray(metadata) && !(metadata instanceof Uint8Array)
        ? (metadata as Record<string, unknown>)
        : {},
    recordedAt: event.created.toISOString(),
  };
}
