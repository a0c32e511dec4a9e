import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import {
  PostgresEventStore,
  SqliteEventStore,
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
import { dropSchema, randomSchemaName, testPostgres } from '../../../libs/testing/src/postgres';
import { tempDir, type TempDir } from '../../../libs/testing/src/temp-dir';
import { ChainCheckpointer } from './chain-checkpointer';

interface Subject {
  store: EventStore;
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
      checkpoints = chainCheckpointStoreFor(subject.store)!;
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
