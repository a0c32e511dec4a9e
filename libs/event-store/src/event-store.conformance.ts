/// <reference types="jest" />
import { randomUUID } from 'node:crypto';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { chainLink, contentHash, streamLink } from './event-chain';
import { verifyStore, verifyStream } from './chain-verifier';
import {
  WrongExpectedRevisionError,
  type EventStore,
  type NewEvent,
  type RecordedEvent,
  type Subscription,
} from './event-store.port';

export interface ConformanceSubject {
  store: EventStore;
  /**
   * Another instance on the same store, as another process would open it (its own
   * connections or pool). The suite closes what it opens.
   */
  openAnother(): Promise<EventStore>;
  cleanup(): Promise<void>;
}

/**
 * The one behavioural contract of the EventStore port, run by each adapter's int-spec.
 * Every test writes to streams under a fresh prefix and reads $all from the head it saw
 * first, so the suite also runs against a shared server holding other data.
 */
export function describeEventStoreConformance(name: string, factory: () => Promise<ConformanceSubject>): void {
  describe(`${name} (EventStore conformance)`, () => {
    let subject: ConformanceSubject;
    let store: EventStore;
    let prefix: string;
    let others: EventStore[];

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
      prefix = `conformance-${randomUUID().slice(0, 8)}`;
      others = [];
    });
    afterEach(async () => {
      for (const other of others) await other.close();
      await subject.cleanup();
    });
    const openAnother = async (): Promise<EventStore> => {
      const other = await subject.openAnother();
      others.push(other);
      return other;
    };

    const streamName = (suffix: string): string => `${prefix}-${suffix}`;
    const ours = (events: RecordedEvent[]): RecordedEvent[] => events.filter((e) => e.streamId.startsWith(`${prefix}-`));

    describe('append and read', () => {
      it('reads back a stream exactly as appended: ids, types, data, metadata, revisions 0..n', async () => {
        const stream = streamName('round-trip');
        const events = [
          event('JobSubmitted', { text: 'héllo ✓ "quoted"', n: 42, nested: { list: [1, 'two', null, true] } }, { actor: 'alice' }),
          event('JobQueued', { priority: 'high' }, { correlationId: 'c-1', causationId: 'c-0' }),
          event('JobStarted', [1, 2, 3]),
        ];

        const result = await store.appendToStream(stream, events, 'no_stream');
        const read = await store.readStream(stream);

        expect(read.map(({ id, type, data, metadata, revision, streamId }) => ({ id, type, data, metadata, revision, streamId }))).toEqual(
          events.map((e, revision) => ({ id: e.id, type: e.type, data: e.data, metadata: e.metadata, revision, streamId: stream })),
        );
        expect(result).toEqual({ nextExpectedRevision: 2, position: read[2].position });
        for (const recorded of read) expect(new Date(recorded.recordedAt).toISOString()).toBe(recorded.recordedAt);
      });

      it('reads a missing stream as []', async () => {
        expect(await store.readStream(streamName('missing'))).toEqual([]);
      });

      it('answers an empty append with the current state and writes nothing', async () => {
        const stream = streamName('empty-append');
        expect(await store.appendToStream(stream, [], 'any')).toEqual({ nextExpectedRevision: -1, position: -1 });
        const first = await store.appendToStream(stream, [event('A'), event('B')], 'no_stream');

        expect(await store.appendToStream(stream, [], 1)).toEqual(first);
        await expect(store.appendToStream(stream, [], 0)).rejects.toBeInstanceOf(WrongExpectedRevisionError);
        expect(await store.readStream(stream)).toHaveLength(2);
      });
    });

    describe('expected revision', () => {
      it('no_stream creates a stream, and on an existing stream fails and writes nothing', async () => {
        const stream = streamName('no-stream');
        await store.appendToStream(stream, [event('A')], 'no_stream');
        const start = await store.headPosition();
        const rejected = event('B');

        const attempt = store.appendToStream(stream, [rejected], 'no_stream');

        await expect(attempt).rejects.toBeInstanceOf(WrongExpectedRevisionError);
        await expect(attempt).rejects.toMatchObject({ code: 'wrong_expected_revision', streamId: stream, expected: 'no_stream', actual: 0 });
        expect((await store.readStream(stream)).map((e) => e.type)).toEqual(['A']);
        expect(ours(await store.readAll({ after: start }))).toEqual([]);
      });

      it('an exact revision appends when it matches; a stale or future one fails and writes nothing', async () => {
        const stream = streamName('exact');
        await store.appendToStream(stream, [event('A')], 'no_stream');

        expect((await store.appendToStream(stream, [event('B'), event('C')], 0)).nextExpectedRevision).toBe(2);
        await expect(store.appendToStream(stream, [event('stale')], 0)).rejects.toMatchObject({
          name: 'WrongExpectedRevisionError',
          expected: 0,
          actual: 2,
        });
        await expect(store.appendToStream(stream, [event('future')], 5)).rejects.toBeInstanceOf(WrongExpectedRevisionError);
        await expect(store.appendToStream(streamName('nothing-here'), [event('X')], 0)).rejects.toMatchObject({
          actual: 'no_stream',
        });

        expect((await store.readStream(stream)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
        expect(await store.readStream(streamName('nothing-here'))).toEqual([]);
      });

      it('any appends whether or not the stream exists', async () => {
        const stream = streamName('any');
        expect((await store.appendToStream(stream, [event('A')], 'any')).nextExpectedRevision).toBe(0);
        expect((await store.appendToStream(stream, [event('B')], 'any')).nextExpectedRevision).toBe(1);
        expect((await store.readStream(stream)).map((e) => [e.type, e.revision])).toEqual([['A', 0], ['B', 1]]);
      });

      it('of concurrent appends with the same expected revision exactly one wins', async () => {
        const stream = streamName('race');
        await store.appendToStream(stream, [event('Created')], 'no_stream');

        const outcomes = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => store.appendToStream(stream, [event(`Attempt${i}`), event(`Attempt${i}b`)], 0)),
        );

        const won = outcomes.filter((o) => o.status === 'fulfilled');
        const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(5);
        for (const o of lost) expect(o.reason).toBeInstanceOf(WrongExpectedRevisionError);
        expect(await store.readStream(stream)).toHaveLength(3);
      });
    });

    describe('atomicity and order', () => {
      it('a multi-event append is all or nothing and contiguous in the log, even when appends race', async () => {
        const start = await store.headPosition();
        const existing = streamName('atomic');
        await store.appendToStream(existing, [event('A')], 'no_stream');
        await expect(store.appendToStream(existing, [event('X1'), event('X2'), event('X3')], 'no_stream')).rejects.toBeInstanceOf(
          WrongExpectedRevisionError,
        );
        expect(await store.readStream(existing)).toHaveLength(1);

        const streams = [1, 2, 3, 4].map((i) => streamName(`batch-${i}`));
        await Promise.all(
          streams.map(async (stream) => {
            for (let batch = 0; batch < 5; batch++) {
              const expected = batch === 0 ? 'no_stream' : batch * 3 - 1;
              await store.appendToStream(stream, [event('One'), event('Two'), event('Three')], expected);
            }
          }),
        );

        const log = ours(await store.readAll({ after: start })).filter((e) => e.streamId !== existing);
        expect(log).toHaveLength(60);
        for (let i = 0; i < log.length; i += 3) {
          expect(log.slice(i, i + 3).map((e) => [e.streamId, e.revision, e.type])).toEqual([
            [log[i].streamId, log[i].revision, 'One'],
            [log[i].streamId, log[i].revision + 1, 'Two'],
            [log[i].streamId, log[i].revision + 2, 'Three'],
          ]);
        }
      });

      it('positions strictly increase across streams and agree between readStream and readAll', async () => {
        const start = await store.headPosition();
        const order = ['a', 'b', 'a', 'c', 'b', 'a'].map(streamName);
        const positions: number[] = [];
        for (const stream of order) positions.push((await store.appendToStream(stream, [event('E')], 'any')).position);

        expect(positions).toEqual([...positions].sort((x, y) => x - y));
        expect(new Set(positions).size).toBe(positions.length);
        const all = ours(await store.readAll({ after: start }));
        expect(all.map((e) => e.position)).toEqual(positions);
        expect(all.map((e) => e.streamId)).toEqual(order);
        const byId = new Map(all.map((e) => [e.id, e.position]));
        for (const stream of new Set(order)) {
          for (const e of await store.readStream(stream)) expect(e.position).toBe(byId.get(e.id));
        }
        expect(await store.headPosition()).toBeGreaterThanOrEqual(positions[positions.length - 1]);
      });

      it('readAll pages in position order, exclusive of after, at most maxCount at a time', async () => {
        const start = await store.headPosition();
        const appended: string[] = [];
        for (let i = 0; i < 23; i++) {
          const e = event(`E${i}`, { i });
          appended.push(e.id);
          await store.appendToStream(streamName(`page-${i % 3}`), [e], 'any');
        }

        const seen: RecordedEvent[] = [];
        let cursor = start;
        while (seen.length < appended.length) {
          const page = await store.readAll({ after: cursor, maxCount: 5 });
          const mine = ours(page);
          expect(page.length).toBeLessThanOrEqual(5);
          if (seen.length + mine.length < appended.length) expect(page).toHaveLength(5);
          expect(page[0].position).toBeGreaterThan(cursor);
          cursor = page[page.length - 1].position;
          seen.push(...mine);
        }

        expect(seen.map((e) => e.id)).toEqual(appended);
        const afterThird = await store.readAll({ after: seen[2].position, maxCount: 1 });
        expect(afterThird).toHaveLength(1);
        expect(afterThird[0].position).toBeGreaterThan(seen[2].position);
        expect(await store.readAll({ after: start, maxCount: 0 })).toEqual([]);
      });

      it('positionAt names the newest event recorded at or before an instant: the store as it stood then', async () => {
        const pause = async (ms: number) => new Promise((r) => setTimeout(r, ms));
        const stream = streamName('at');
        // Several appends, each in a millisecond of its own, with an instant between each two.
        const between: Date[] = [];
        const last: RecordedEvent[] = [];
        for (let i = 0; i < 4; i++) {
          await store.appendToStream(stream, [event(`A${i}`), event(`B${i}`)], 'any');
          last.push((await store.readStream(stream)).at(-1)!);
          await pause(3);
          between.push(new Date());
          await pause(3);
        }
        const all = await store.readStream(stream);
        for (let i = 0; i < 4; i++) {
          expect(await store.positionAt(between[i])).toBe(last[i].position);
          // Inclusive to the millisecond of recordedAt.
          expect(await store.positionAt(new Date(last[i].recordedAt))).toBe(last[i].position);
        }
        // Before the first of them: an earlier position (or -1 on an empty store), never one of these.
        const before = await store.positionAt(new Date(Date.parse(all[0].recordedAt) - 1));
        expect(before).toBeLessThan(all[0].position);
        expect(await store.positionAt(new Date(0))).toBeLessThan(all[0].position);
        expect(await store.positionAt(new Date(Date.now() + 60_000))).toBe(await store.headPosition());
        await expect(store.positionAt(new Date(Number.NaN))).rejects.toThrow(/not a valid instant/);
      });
    });

    describe('hash chain', () => {
      it('links every appended event to its stream in the append itself, and to the log as the store keeps it (stored or computed)', async () => {
        expect(['stored', 'computed']).toContain(store.globalChain);
        const start = await store.headPosition();
        await store.appendToStream(streamName('x'), [event('A', { n: 1 }), event('B', { é: '✓' }, { actor: 'a' })], 'no_stream');
        await store.appendToStream(streamName('y'), [event('A', [1, { b: 2, a: 1 }])], 'any');
        await store.appendToStream(streamName('x'), [event('C')], 1);
        await store.appendToStream(streamName('y'), [event('D', { t: 'any' })], 'any');
        // From the head seen first (inclusive), so the first new event's predecessor is known.
        const log = await store.readAll({ after: start - 1 });
        const ourEvents = ours(log);
        expect(ourEvents).toHaveLength(5);
        const tips = new Map<string, string>();
        for (const [stream, events] of [[streamName('x'), await store.readStream(streamName('x'))], [streamName('y'), await store.readStream(streamName('y'))]] as const) {
          for (const e of events) {
            expect(e.chain?.streamHash).toBe(streamLink(tips.get(stream), e.revision, contentHash(e)));
            tips.set(stream, e.chain!.streamHash);
          }
          expect((await verifyStream(store, stream)).intact).toBe(true);
        }
        if (store.globalChain === 'stored') {
          for (let i = 1; i < log.length; i++) {
            expect(log[i].chain?.chainHash).toBe(chainLink(log[i - 1].chain?.chainHash, log[i].position, log[i].chain!.streamHash));
          }
        } else {
          for (const e of ourEvents) expect(e.chain?.chainHash).toBeUndefined();
          // The verifier folds the whole log with the stored chain's formula (an event from
          // before the chain with its content's link from the stream's start).
          let head = '';
          for (const e of await store.readAll()) head = chainLink(head, e.position, e.chain?.streamHash ?? streamLink('', e.revision, contentHash(e)));
          expect(await verifyStore(store)).toMatchObject({ intact: true, chainHash: head });
        }
      });
    });

    describe('subscribeToAll', () => {
      it('catches up, then goes live, with no gap and no duplicate while 500+ events are appended during the catch-up', async () => {
        const start = await store.headPosition();
        const streams = [0, 1, 2, 3, 4].map((i) => streamName(`sub-${i}`));
        const before = 60;
        const during = 110;
        for (const stream of streams) {
          for (let batch = 0; batch < before / 3; batch++) {
            await store.appendToStream(stream, [event('Pre'), event('Pre'), event('Pre')], batch === 0 ? 'no_stream' : batch * 3 - 1);
          }
        }
        const total = streams.length * (before + during);

        const subscription = store.subscribeToAll({ after: start });
        // The consumer yields to the event loop as it goes, so the writers run while it is
        // still catching up, not only after.
        const received = collect(subscription, (seen) => ours(seen).length >= total, { yieldEvery: 25 });
        await Promise.all(
          streams.map(async (stream, s) => {
            for (let i = 0; i < during; i++) {
              await store.appendToStream(stream, [event('Live', { s, i })], before + i - 1);
              if (i % 7 === s) await nextTurn();
            }
          }),
        );
        const seen = await received;

        const positions = seen.map((e) => e.position);
        for (let i = 1; i < positions.length; i++) expect(positions[i]).toBeGreaterThan(positions[i - 1]);
        const mine = ours(seen);
        expect(mine).toHaveLength(total);
        expect(new Set(mine.map((e) => e.id)).size).toBe(total);
        for (const stream of streams) {
          expect(mine.filter((e) => e.streamId === stream).map((e) => e.revision)).toEqual(
            Array.from({ length: before + during }, (_, r) => r),
          );
        }
        expect(mine.map((e) => e.id)).toEqual(ours(await store.readAll({ after: start })).map((e) => e.id));
      });

      it('from a middle position starts right after it, then delivers live events', async () => {
        const stream = streamName('middle');
        const first = Array.from({ length: 10 }, (_, i) => event(`E${i}`));
        await store.appendToStream(stream, first, 'no_stream');
        const recorded = await store.readStream(stream);

        const subscription = store.subscribeToAll({ after: recorded[4].position });
        const received = collect(subscription, (seen) => ours(seen).length >= 6);
        const live = event('Live');
        await store.appendToStream(stream, [live], 9);
        const mine = ours(await received);

        expect(mine.map((e) => e.id)).toEqual([...first.slice(5), live].map((e) => e.id));
      });

      it('several subscriptions at once each receive every event', async () => {
        const start = await store.headPosition();
        const subscriptions = [0, 1, 2].map(() => store.subscribeToAll({ after: start }));
        const received = subscriptions.map((s) => collect(s, (seen) => ours(seen).length >= 20));
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) {
          const e = event('E');
          ids.push(e.id);
          await store.appendToStream(streamName(`multi-${i % 2}`), [e], 'any');
        }

        for (const seen of await Promise.all(received)) expect(ours(seen).map((e) => e.id)).toEqual(ids);
      });

      it('close() ends the iteration and resolves a pending next() as done', async () => {
        const subscription = store.subscribeToAll({ after: await store.headPosition() });
        const iterator = subscription[Symbol.asyncIterator]();
        const pending = drain(iterator);

        await subscription.close();

        await expect(pending).resolves.toBeGreaterThanOrEqual(0);
        await store.appendToStream(streamName('after-close'), [event('Late')], 'any');
        expect(await iterator.next()).toEqual({ done: true, value: undefined });
      });

      it('a for-await loop over a subscription closed from elsewhere finishes', async () => {
        const stream = streamName('loop');
        const start = await store.headPosition();
        await store.appendToStream(stream, [event('A')], 'no_stream');
        const subscription = store.subscribeToAll({ after: start });
        const seen: RecordedEvent[] = [];
        for await (const e of subscription) {
          seen.push(e);
          if (ours(seen).length === 1) setTimeout(() => void subscription.close(), 20);
        }
        expect(ours(seen).map((e) => e.type)).toEqual(['A']);
      });
    });

    describe('two instances at once (as two processes)', () => {
      it('of appends with the same expected revision from both instances exactly one wins', async () => {
        const other = await openAnother();
        const stream = streamName('two-race');
        await store.appendToStream(stream, [event('Created')], 'no_stream');

        const outcomes = await Promise.allSettled(
          [store, other, store, other, store, other].map((s, i) => s.appendToStream(stream, [event(`Attempt${i}`)], 0)),
        );

        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(WrongExpectedRevisionError);
        expect(await other.readStream(stream)).toHaveLength(2);
        expect(await store.readStream(stream)).toEqual(await other.readStream(stream));
      });

      it('8 appenders on two instances: subscribers and a pager on both see every event once, in one increasing order, no gap', async () => {
        const other = await openAnother();
        const start = await store.headPosition();
        const appenders = 8;
        const batches = 20;
        // Batches of 1-3 events, so appends of different sizes interleave.
        const sizeOf = (a: number, b: number): number => 1 + ((a + b) % 3);
        let total = 0;
        for (let a = 0; a < appenders; a++) for (let b = 0; b < batches; b++) total += sizeOf(a, b);
        const complete = (seen: RecordedEvent[]): boolean => ours(seen).length >= total;

        const followers = [
          collect(store.subscribeToAll({ after: start }), complete, { yieldEvery: 10 }),
          collect(other.subscribeToAll({ after: start }), complete, { yieldEvery: 10 }),
        ];
        const pagers = [page(store, start, complete), page(other, start, complete)];
        await Promise.all(
          Array.from({ length: appenders }, async (_, a) => {
            const writer = a % 2 === 0 ? store : other;
            const stream = streamName(`storm-${a}`);
            let revision: number | 'no_stream' = 'no_stream';
            for (let b = 0; b < batches; b++) {
              const events = Array.from({ length: sizeOf(a, b) }, (_, i) => event('Storm', { a, b, i }));
              revision = (await writer.appendToStream(stream, events, revision)).nextExpectedRevision;
              if (b % 3 === a % 3) await nextTurn();
            }
          }),
        );
        const observed = await Promise.all([...followers, ...pagers]);

        const log = ours(await other.readAll({ after: start }));
        expect(log).toHaveLength(total);
        for (let i = 1; i < log.length; i++) expect(log[i].position).toBeGreaterThan(log[i - 1].position);
        expect(ours(await store.readAll({ after: start })).map((e) => e.id)).toEqual(log.map((e) => e.id));
        for (const seen of observed) {
          const mine = ours(seen);
          expect(mine.map((e) => e.position)).toEqual(log.map((e) => e.position));
          expect(mine.map((e) => e.id)).toEqual(log.map((e) => e.id));
        }
        for (let a = 0; a < appenders; a++) {
          const revisions = log.filter((e) => e.streamId === streamName(`storm-${a}`)).map((e) => e.revision);
          expect(revisions).toEqual(Array.from({ length: revisions.length }, (_, r) => r));
        }
      });
    });
  });
}

function event(type: string, data: unknown = {}, metadata: Record<string, unknown> = {}): NewEvent {
  return { id: randomUUID(), type, data, metadata };
}

/** Reads until `done(seen)` holds; gives up after `timeoutMs` by closing, so a gap fails instead of hanging. */
async function collect(
  subscription: Subscription,
  done: (seen: RecordedEvent[]) => boolean,
  { timeoutMs = 30_000, yieldEvery = 0 } = {},
): Promise<RecordedEvent[]> {
  const seen: RecordedEvent[] = [];
  const timer = setTimeout(() => void subscription.close(), timeoutMs);
  try {
    for await (const e of subscription) {
      seen.push(e);
      if (done(seen)) break;
      if (yieldEvery > 0 && seen.length % yieldEvery === 0) await nextTurn();
    }
  } finally {
    clearTimeout(timer);
  }
  return seen;
}

/**
 * Pages through readAll while appends are running, as a poller would: any event that
 * became visible only after a later position was read would be skipped, and `done` would
 * never hold (it then fails by timing out with what it has).
 */
async function page(
  store: EventStore,
  after: number,
  done: (seen: RecordedEvent[]) => boolean,
  { timeoutMs = 30_000, pageSize = 7 } = {},
): Promise<RecordedEvent[]> {
  const seen: RecordedEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  let cursor = after;
  while (!done(seen) && Date.now() < deadline) {
    const batch = await store.readAll({ after: cursor, maxCount: pageSize });
    if (batch.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      continue;
    }
    seen.push(...batch);
    cursor = batch[batch.length - 1].position;
  }
  return seen;
}

/** Pulls until the iterator is done (tolerating other writers' events); resolves with how many it got. */
async function drain(iterator: AsyncIterator<RecordedEvent>): Promise<number> {
  let count = 0;
  while (!(await iterator.next()).done) count++;
  return count;
}
