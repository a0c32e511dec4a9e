import { randomUUID } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { jsonEvent } from '@kurrent/kurrentdb-client';
import { signCheckpoint, signingKeyFrom, trustedHeads, type SigningKey } from './chain-checkpoint';
import { CHAIN_CHECKPOINT_STREAM, EventStoreDbChainCheckpointStore, chainCheckpointStoreFor } from './chain-checkpoint.stores';
import { verifyStore, verifyStream } from './chain-verifier';
import { CHAIN_METADATA_KEY, advanceChainHead, readChainHead } from './esdb.chain';
import { EventStoreDbEventStore } from './esdb.event-store';
import { describeEventStoreConformance } from './event-store.conformance';
import type { NewEvent } from './event-store.port';
import { contentHash, streamLink } from './event-chain';

// A real server is needed (no Docker here); every test writes under a fresh stream prefix,
// so a shared server is fine — as long as nothing but Jobline wrote its log (the whole-log
// verifications fold and check all of $all). Events forged past the adapter go to `$` streams,
// which a stream read sees and the port's $all never does, so no later run finds them.
const connectionString = process.env.JOBLINE_TEST_ESDB_URL;

if (connectionString) {
  describeEventStoreConformance('EventStoreDbEventStore', async () => {
    const store = new EventStoreDbEventStore({ connectionString });
    return {
      store,
      openAnother: async () => new EventStoreDbEventStore({ connectionString }),
      cleanup: () => store.close(),
    };
  });

  describe('EventStoreDbEventStore: hash chain', () => {
    let store: EventStoreDbEventStore;
    let key: SigningKey;
    const stream = (): string => `job-chain-${randomUUID()}`;
    const event = (type: string, data: unknown = {}): NewEvent => ({ id: randomUUID(), type, data, metadata: { actor: 'tester' } });

    beforeEach(() => {
      store = new EventStoreDbEventStore({ connectionString });
      key = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
    });
    afterEach(() => store.close());

    it('keeps each stream link in the metadata ($chain), reads it back as chain.streamHash, the metadata as appended', async () => {
      const s = stream();
      await store.appendToStream(s, [event('A', { n: 1 }), event('B')], 'no_stream');
      await store.appendToStream(s, [event('C')], 'any');
      await store.appendToStream(s, [event('D')], 2);
      const events = await store.readStream(s);
      let prev: string | undefined;
      for (const e of events) {
        expect(e.metadata).toEqual({ actor: 'tester' });
        expect(e.chain?.streamHash).toBe(streamLink(prev, e.revision, contentHash(e)));
        expect(e.chain?.chainHash).toBeUndefined();
        prev = e.chain?.streamHash;
      }
      expect(await verifyStream(store, s)).toMatchObject({ intact: true, events: 4, unchained: 0 });
      // As written on the server: the link is in the metadata under $chain.
      for await (const resolved of store.client.readStream(s, { maxCount: 1 })) {
        expect((resolved.event?.metadata as Record<string, unknown>)[CHAIN_METADATA_KEY]).toEqual({ streamHash: events[0].chain?.streamHash });
      }
    });

    it('a retried append (same ids, same expected revision) is answered as the first one, and linked once', async () => {
      const s = stream();
      await store.appendToStream(s, [event('A')], 'no_stream');
      const batch = [event('B'), event('C')];
      const first = await store.appendToStream(s, batch, 0);
      expect(await store.appendToStream(s, batch, 0)).toMatchObject({ nextExpectedRevision: first.nextExpectedRevision });
      expect((await store.readStream(s)).map((e) => e.type)).toEqual(['A', 'B', 'C']);
      expect((await verifyStream(store, s)).intact).toBe(true);
    });

    it('refuses metadata with the reserved $chain key and writes nothing', async () => {
      const s = stream();
      await expect(store.appendToStream(s, [{ ...event('A'), metadata: { [CHAIN_METADATA_KEY]: { streamHash: 'a'.repeat(64) } } }], 'no_stream')).rejects.toThrow(/reserved/);
      expect(await store.readStream(s)).toEqual([]);
    });

    it('events written before the chain (no $chain) verify as unchained, and the chain goes on after them', async () => {
      const s = `$${stream()}`;
      await store.client.appendToStream(s, [jsonEvent({ type: 'JobSubmitted', data: { old: true }, metadata: { actor: 'v1' } })]);
      const { nextExpectedRevision } = await store.appendToStream(s, [event('JobQueued')], 0);
      expect(nextExpectedRevision).toBe(1);
      const [old, linked] = await store.readStream(s);
      expect(old.chain).toBeUndefined();
      expect(linked.chain?.streamHash).toBe(streamLink('', 1, contentHash(linked)));
      expect(await verifyStream(store, s)).toMatchObject({ intact: true, events: 2, unchained: 1 });
    });

    it('an event written past the adapter with a made-up link, or none after linked ones, is named by verify', async () => {
      const forged = `$${stream()}`;
      await store.appendToStream(forged, [event('A')], 'no_stream');
      await store.client.appendToStream(forged, [jsonEvent({ type: 'JobCompleted', data: { exitCode: 0 }, metadata: { actor: 'x', [CHAIN_METADATA_KEY]: { streamHash: 'b'.repeat(64) } } })]);
      const [, bad] = await store.readStream(forged);
      expect((await verifyStream(store, forged)).problem).toMatchObject({ kind: 'edited', position: bad.position, revision: 1 });

      const stripped = `$${stream()}`;
      await store.appendToStream(stripped, [event('A')], 'no_stream');
      await store.client.appendToStream(stripped, [jsonEvent({ type: 'JobCompleted', data: { exitCode: 0 }, metadata: { actor: 'x' } })]);
      const [, unlinked] = await store.readStream(stripped);
      expect((await verifyStream(store, stripped)).problem).toMatchObject({ kind: 'inserted', position: unlinked.position });
    });

    it('the log chain is computed: verify folds $all and matches a head signed at a position; a forged head is named there', async () => {
      await store.appendToStream(stream(), [event('A'), event('B')], 'no_stream');
      await store.appendToStream(stream(), [event('C')], 'no_stream');
      const head = await readChainHead(store);
      expect(head.position).toBe(await store.headPosition());
      const result = await verifyStore(store, { trusted: [head] });
      expect(result).toMatchObject({ intact: true, checkpointsMatched: 1, headPosition: head.position, chainHash: head.chainHash });
      expect((await verifyStore(store, { trusted: [{ ...head, chainHash: 'f'.repeat(64) }] })).problem).toMatchObject({ kind: 'checkpoint', position: head.position });
      // One more event: a head over it follows from the signed one.
      const { position } = await store.appendToStream(stream(), [event('D')], 'no_stream');
      const [d] = await store.readAll({ after: head.position });
      expect(d.position).toBe(position);
      expect((await readChainHead(store, head)).chainHash).toBe(advanceChainHead(head.chainHash, d));
    });

    it('keeps signed checkpoints in a $ stream beside the events: saved once, listed by position, the latest found', async () => {
      const checkpoints = new EventStoreDbChainCheckpointStore({ client: store.client, stream: `${CHAIN_CHECKPOINT_STREAM}-test-${randomUUID()}` });
      expect(await checkpoints.list()).toEqual([]);
      expect(await checkpoints.latest()).toBeUndefined();
      await store.appendToStream(stream(), [event('A')], 'no_stream');
      const first = await readChainHead(store);
      await store.appendToStream(stream(), [event('B')], 'no_stream');
      const second = await readChainHead(store);
      const a = signCheckpoint(first, key, new Date().toISOString());
      const b = signCheckpoint(second, key, new Date().toISOString());
      await checkpoints.save(b);
      await checkpoints.save(a);
      await checkpoints.save(b);
      expect(await checkpoints.list()).toEqual([a, b]);
      expect(await checkpoints.latest()).toEqual(b);
      const { trusted, untrusted } = trustedHeads(await checkpoints.list(), [key.publicKey]);
      expect(untrusted).toBe(0);
      expect(await verifyStore(store, { trusted })).toMatchObject({ intact: true, checkpointsMatched: 2 });
      // The checkpoint stream is a system stream: never part of the log, nor of its chain.
      expect((await store.readAll({ after: first.position })).map((e) => e.streamId)).not.toContain(CHAIN_CHECKPOINT_STREAM);
      expect(chainCheckpointStoreFor(store)).toBeInstanceOf(EventStoreDbChainCheckpointStore);
    });
  });
} else {
  describe('EventStoreDbEventStore', () => {
    it.skip('EventStoreDB/KurrentDB conformance and hash chain: set JOBLINE_TEST_ESDB_URL=kurrentdb://host:2113?tls=false to run against a real server', () => {});
  });
}
