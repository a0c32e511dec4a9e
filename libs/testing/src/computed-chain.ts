import type { AppendResult, EventStore, ExpectedRevision, NewEvent, ReadAllOptions, RecordedEvent, Subscription } from '../../event-store/src/event-store.port';

/**
 * A store presented as one whose log chain is computed (as EventStoreDB's is): its events
 * keep their stored stream links and lose their stored log links (`chain.chainHash`), and
 * `globalChain` is 'computed', so verifier and checkpointer take the EventStoreDB path. Over a
 * SQLite file the tamper tests can then edit, delete, insert and reorder rows with SQL and see
 * what that path names — which needs no EventStoreDB server. Everything else is the inner
 * store's; `close()` closes it.
 */
export class ComputedChainStore implements EventStore {
  readonly globalChain = 'computed' as const;

  constructor(readonly inner: EventStore) {}

  appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    return this.inner.appendToStream(streamId, events, expected);
  }

  async readStream(streamId: string): Promise<RecordedEvent[]> {
    return (await this.inner.readStream(streamId)).map(withoutLogLink);
  }

  async readAll(options?: ReadAllOptions): Promise<RecordedEvent[]> {
    return (await this.inner.readAll(options)).map(withoutLogLink);
  }

  subscribeToAll(options?: { after?: number }): Subscription {
    const inner = this.inner.subscribeToAll(options);
    return {
      close: () => inner.close(),
      async *[Symbol.asyncIterator]() {
        for await (const event of inner) yield withoutLogLink(event);
      },
    };
  }

  headPosition(): Promise<number> {
    return this.inner.headPosition();
  }

  positionAt(instant: Date): Promise<number> {
    return this.inner.positionAt(instant);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function withoutLogLink(event: RecordedEvent): RecordedEvent {
  if (!event.chain) return event;
  return { ...event, chain: { streamHash: event.chain.streamHash } };
}
