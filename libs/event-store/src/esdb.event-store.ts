import {
  ANY,
  BACKWARDS,
  END,
  EventStoreDBClient,
  NO_STREAM,
  START,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  type AllStreamResolvedEvent,
  type AllStreamSubscription,
  type AppendExpectedRevision,
  type EventData,
  type JSONType,
  type ReadPosition,
  type RecordedEvent as EsdbRecordedEvent,
} from '@eventstore/db-client';
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
  /** e.g. `esdb://127.0.0.1:2113?tls=false`, or a cluster `esdb+discover://…` string. */
  connectionString: string;
}

/**
 * The production event store over EventStoreDB (KurrentDB). Positions are $all commit
 * positions as JS numbers (safe up to 2^53 bytes of log). System streams and events
 * (`$…`) never show up in readAll, subscribeToAll or headPosition.
 * Construct with `new EventStoreDbEventStore({ connectionString })`; the client
 * connects lazily on the first call.
 */
export class EventStoreDbEventStore implements EventStore {
  private readonly client: EventStoreDBClient;
  private readonly subscriptions = new Set<EsdbSubscription>();

  constructor(options: EventStoreDbEventStoreOptions) {
    this.client = EventStoreDBClient.connectionString(options.connectionString);
  }

  async appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    // An empty append is answered from the stream itself: the server has nothing to
    // check it against and reports no position for it.
    if (events.length === 0) return this.currentState(streamId, expected);
    try {
      const result = await this.client.appendToStream(streamId, events.map(toEventData), {
        expectedRevision: toEsdbExpected(expected),
      });
      return {
        nextExpectedRevision: Number(result.nextExpectedRevision),
        position: result.position ? Number(result.position.commit) : -1,
      };
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) {
        const actual = error.actualVersion;
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
    const after = options.after ?? -1;
    const maxCount = options.maxCount ?? Number.POSITIVE_INFINITY;
    const events: RecordedEvent[] = [];
    if (maxCount <= 0) return events;
    // readAll has no server-side filter in this client: system events are skipped here,
    // and the read runs until maxCount user events are found, then is cancelled.
    const read = this.client.readAll({ fromPosition: fromPositionAfter(after) });
    try {
      for await (const resolved of read) {
        const event = userEventAfter(resolved, after);
        if (!event) continue;
        events.push(event);
        if (events.length >= maxCount) break;
      }
    } finally {
      await read.cancel();
    }
    return events;
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
    const read = this.client.readAll({ direction: BACKWARDS, fromPosition: END });
    try {
      for await (const resolved of read) {
        const event = userEventAfter(resolved, -1);
        if (event) return event.position;
      }
    } finally {
      await read.cancel();
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

function toEsdbExpected(expected: ExpectedRevision): AppendExpectedRevision {
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
