import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import {
  PostgresEventStore,
  SqliteChainCheckpointStore,
  SqliteEventStore,
  advanceChainHead,
  readChainHead,
  chainCheckpointStoreFor,
  checkpointSignedBy,
  loadSigningKey,
  signingKeyFrom,
  trustedHeads,
  verifyStore,
  type ChainCheckpoint,
  type ChainCheckpointStore,
  type EventStore,
} from '../../../libs/event-store/src';
import { ComputedChainStore } from '../../../libs/testing/src/computed-chain';
import { dropSchema, randomSchemaName, testPostgres } from '../../../libs/testing/src/postgres';
import { tempDir, type TempDir } from '../../../libs/testing/src/temp-dir';
import { ChainCheckpointer } from './chain-checkpointer';

interface Subject {
  store: EventStore;
  /** Where its checkpoints are kept, when not chainCheckpointStoreFor(store). */
  checkpoints?: ChainCheckpointStore;
  /** DELETE of the newest events, behind the store's back. */
  truncateFrom(position: number): Promise<void>;
  cleanup(): Promise<void>;
}

function describeCheckpoints(name: string, factory: () => Promise<Subject>): void {
  describe(`signed chain checkpoints on ${name}`, () => {
    let dir: TempDir;
    let subject: Subject;
    let checkpoints: ChainCheckpointStore;
    let published: ChainCheckpoint[];
    const append = (n: number) => subject.store.appendToStream(`job-${randomUUID()}`, Array.from({ length: n }, (_, i) => ({ id: randomUUID(), type: `E${i}`, data: { i }, metadata: {} })), 'no_stream');

    beforeEach(async () => {
      dir = tempDir('jobline-checkpoints-');
      subject = await factory();
      checkpoints = subject.checkpoints ?? chainCheckpointStoreFor(subject.store)!;
      published = [];
    });
    afterEach(async () => {
      await subject.cleanup();
      dir.remove();
    });

    const checkpointer = (keyFile = join(dir.path, 'signing-key.pem')) =>
      new ChainCheckpointer({ eventStore: subject.store, checkpoints, key: loadSigningKey(keyFile, { create: true }), publish: (c) => published.push(c), intervalMs: 60_000 });

    it('signs the head when it moved, keeps it in the store and publishes it; nothing when it did not move', async () => {
      const signer = checkpointer();
      const { position } = await append(3);
      const first = await signer.tick();
      expect(first).toMatchObject({ type: 'jobline.chain-checkpoint/v1', position });
      expect(await signer.tick()).toBeNull();
      await append(2);
      await signer.stop();
      expect(published).toHaveLength(2);
      expect(await checkpoints.list()).toEqual(published);
      const key = loadSigningKey(join(dir.path, 'signing-key.pem'));
      for (const c of published) expect(checkpointSignedBy(c, [key.publicKey])).toBe(true);
      const { trusted } = trustedHeads(await checkpoints.list(), [key.publicKey]);
      expect(await verifyStore(subject.store, { trusted })).toMatchObject({ intact: true, checkpointsMatched: 2 });
    });

    it('signs the head of the log chain as the store keeps it: stored, or folded over the log', async () => {
      const signer = checkpointer();
      await append(2);
      const { position } = await append(1);
      const checkpoint = (await signer.tick())!;
      const [last] = await subject.store.readAll({ after: position - 1 });
      const head = subject.store.globalChain === 'computed' ? (await readChainHead(subject.store)).chainHash : last.chain?.chainHash;
      expect(checkpoint).toMatchObject({ position, chainHash: head });
    });

    it('a truncated tail, invisible to the chain alone, is named against a signed checkpoint', async () => {
      const signer = checkpointer();
      await append(2);
      const { position } = await append(2);
      const checkpoint = (await signer.tick())!;
      await subject.truncateFrom(position - 1);

      expect((await verifyStore(subject.store)).intact).toBe(true);
      const key = loadSigningKey(join(dir.path, 'signing-key.pem'));
      const { trusted } = trustedHeads([checkpoint], [key.publicKey]);
      expect((await verifyStore(subject.store, { trusted })).problem).toMatchObject({ kind: 'truncated', position: position - 1 });
    });

    it('a forged or altered checkpoint, or one of an unknown key, is not trusted; a rotated key verifies with its old public key', async () => {
      const signer = checkpointer();
      await append(2);
      const checkpoint = (await signer.tick())!;
      const key = loadSigningKey(join(dir.path, 'signing-key.pem'));
      expect(checkpointSignedBy({ ...checkpoint, position: checkpoint.position + 1 }, [key.publicKey])).toBe(false);
      expect(checkpointSignedBy({ ...checkpoint, chainHash: 'f'.repeat(64) }, [key.publicKey])).toBe(false);
      const other = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
      expect(checkpointSignedBy(checkpoint, [other.publicKey])).toBe(false);

      // Rotation: a new key file; the old checkpoint still verifies with the old public key only.
      const rotated = checkpointer(join(dir.path, 'rotated.pem'));
      await append(1);
      const next = (await rotated.tick())!;
      expect(next.keyId).not.toBe(checkpoint.keyId);
      const newKey = loadSigningKey(join(dir.path, 'rotated.pem'));
      expect(trustedHeads(await checkpoints.list(), [newKey.publicKey])).toMatchObject({ untrusted: 1 });
      expect(trustedHeads(await checkpoints.list(), [newKey.publicKey, key.publicKey])).toMatchObject({ untrusted: 0 });
    });
  });
}

describe('signed chain checkpoints on a computed log chain', () => {
  let dir: TempDir;
  let path: string;
  let inner: SqliteEventStore;
  let store: EventStore;
  let checkpoints: ChainCheckpointStore;
  const append = (n: number) => store.appendToStream(`job-${randomUUID()}`, Array.from({ length: n }, (_, i) => ({ id: randomUUID(), type: `E${i}`, data: { i }, metadata: {} })), 'no_stream');
  const signer = (keyFile: string) => new ChainCheckpointer({ eventStore: store, checkpoints, key: loadSigningKey(join(dir.path, keyFile), { create: true }), publish: () => undefined, intervalMs: 60_000 });

  beforeEach(() => {
    dir = tempDir('jobline-checkpoints-computed-');
    path = join(dir.path, 'events.db');
    inner = new SqliteEventStore({ path });
    store = new ComputedChainStore(inner);
    checkpoints = new SqliteChainCheckpointStore({ db: inner.database });
  });
  afterEach(async () => {
    await store.close();
    dir.remove();
  });

  it('a restart goes on from its own newest checkpoint, so a history rewritten before it still shows', async () => {
    await append(1);
    const { position: removed } = await append(1);
    await append(1);
    const first = (await signer('key.pem').tick())!;
    expect(first.chainHash).toBe((await readChainHead(store)).chainHash);

    // Behind the store's back, then a restart: the fold goes on from the signed head, not from the rewritten log.
    const raw = new Database(path);
    raw.prepare('DELETE FROM events WHERE position = ?').run(removed);
    raw.close();
    const { position } = await append(1);
    const second = (await signer('key.pem').tick())!;
    const [added] = await store.readAll({ after: position - 1 });
    expect(second).toMatchObject({ position, chainHash: advanceChainHead(first.chainHash, added) });
    expect(second.chainHash).not.toBe((await readChainHead(store)).chainHash);

    const key = loadSigningKey(join(dir.path, 'key.pem'));
    expect((await verifyStore(store, { trusted: trustedHeads([second], [key.publicKey]).trusted })).problem).toMatchObject({ kind: 'checkpoint', position });
    expect((await verifyStore(store, { trusted: trustedHeads(await checkpoints.list(), [key.publicKey]).trusted })).problem).toMatchObject({ kind: 'checkpoint', position: first.position });
  });

  it('a checkpoint of another key is not gone on from: the log is folded from its start', async () => {
    await append(2);
    await signer('old.pem').tick();
    await append(1);
    const next = (await signer('new.pem').tick())!;
    expect(next.chainHash).toBe((await readChainHead(store)).chainHash);
    const key = loadSigningKey(join(dir.path, 'new.pem'));
    expect(await verifyStore(store, { trusted: trustedHeads([next], [key.publicKey]).trusted })).toMatchObject({ intact: true, checkpointsMatched: 1 });
  });
});

describeCheckpoints('SQLite', async () => {
  const dir = tempDir('jobline-checkpoints-store-');
  const path = join(dir.path, 'events.db');
  const store = new SqliteEventStore({ path });
  return {
    store,
    truncateFrom: async (position) => {
      const raw = new Database(path);
      raw.prepare('DELETE FROM events WHERE position >= ?').run(position);
      raw.close();
    },
    cleanup: async () => {
      await store.close();
      dir.remove();
    },
  };
});

describeCheckpoints('SQLite seen as a computed-chain store (as EventStoreDB keeps it)', async () => {
  const dir = tempDir('jobline-checkpoints-store-');
  const path = join(dir.path, 'events.db');
  const inner = new SqliteEventStore({ path });
  return {
    store: new ComputedChainStore(inner),
    checkpoints: new SqliteChainCheckpointStore({ db: inner.database }),
    truncateFrom: async (position) => {
      const raw = new Database(path);
      raw.prepare('DELETE FROM events WHERE position >= ?').run(position);
      raw.close();
    },
    cleanup: async () => {
      await inner.close();
      dir.remove();
    },
  };
});

const postgres = testPostgres(process.env);
if (postgres.available) {
  describeCheckpoints('PostgreSQL', async () => {
    const schema = randomSchemaName();
    const store = new PostgresEventStore({ connectionString: postgres.url, schema });
    return {
      store,
      truncateFrom: async (position) => {
        const raw = new Client({ connectionString: postgres.url });
        await raw.connect();
        await raw.query(`DELETE FROM "${schema}".events WHERE position >= $1`, [position]);
        await raw.end();
      },
      cleanup: async () => {
        await store.close();
        await dropSchema(postgres.url, schema);
      },
    };
  });
} else {
  describe('signed chain checkpoints on PostgreSQL', () => {
    it.skip(`skipped: ${postgres.reason}`, () => {});
  });
}
