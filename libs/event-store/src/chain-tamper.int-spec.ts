import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import { ComputedChainStore } from '../../testing/src/computed-chain';
import { dropSchema, randomSchemaName, testPostgres } from '../../testing/src/postgres';
import { tempDir, type TempDir } from '../../testing/src/temp-dir';
import { verifyStore, verifyStream, type TrustedHead } from './chain-verifier';
import { GENESIS_HEAD, readChainHead } from './esdb.chain';
import type { EventStore, NewEvent } from './event-store.port';
import { PostgresEventStore } from './postgres.event-store';
import { SqliteEventStore } from './sqlite.event-store';

/** Raw SQL on the store's own table, as someone with write access to the database would run it. */
interface Tamperer {
  /** The events table, quoted for SQL. */
  table: string;
  /** Runs statements in order; `?` placeholders for SQLite, `$n` for PostgreSQL. */
  run(sql: string, params?: unknown[]): Promise<void>;
  /** Lets positions be rewritten (PostgreSQL's identity column refuses it otherwise). */
  unlockPositions(): Promise<void>;
  placeholder(n: number): string;
  close(): Promise<void>;
}

interface TamperSubject {
  store: EventStore;
  tamperer: Tamperer;
  cleanup(): Promise<void>;
}

/*
 * Eight events in three jobs, interleaved as the orchestrator writes them:
 *   position 1 A0 · 2 B0 · 3 A1 · 4 C0 · 5 B1 · 6 A2 · 7 C1 · 8 B2
 * then the database is edited behind the store's back, and verify must name the first
 * position where the history is not what was recorded.
 *
 * A store whose log chain is computed (EventStoreDB's way: stream links stored, the log's
 * chain folded; here a SQLite file seen through ComputedChainStore) shows what only the log's
 * order reveals at a signed head: these tests give it one after every append, as the
 * orchestrator's checkpointer signs them (every 10 s rather than every event).
 */
function describeTamperEvidence(name: string, factory: () => Promise<TamperSubject>, suite: { computed?: boolean } = {}): void {
  describe(`${name}: tamper evidence`, () => {
    let subject: TamperSubject;
    let store: EventStore;
    let t: Tamperer;
    let positions: number[];
    /** Heads of the computed chain after each append (the store's as recorded); [] for a stored chain. */
    let heads: TrustedHead[];
    let computed: boolean;
    const streams = { A: `job-a-${randomUUID()}`, B: `job-b-${randomUUID()}`, C: `job-c-${randomUUID()}` };
    const p = (n: number): string => t.placeholder(n);

    beforeEach(async () => {
      subject = await factory();
      store = subject.store;
      t = subject.tamperer;
      computed = store.globalChain === 'computed';
      expect(computed).toBe(suite.computed ?? false);
      positions = [];
      heads = [];
      for (const [stream, n] of [['A', 0], ['B', 0], ['A', 1], ['C', 0], ['B', 1], ['A', 2], ['C', 1], ['B', 2]] as const) {
        const result = await store.appendToStream(streams[stream], [event(`E${stream}${n}`, { stream, n, text: 'héllo ✓' })], n === 0 ? 'no_stream' : n - 1);
        positions.push(result.position);
        if (computed) heads.push(await readChainHead(store, heads[heads.length - 1] ?? GENESIS_HEAD));
      }
    });
    /** The whole store, against the signed heads a computed chain needs. */
    const verify = () => verifyStore(store, { trusted: heads });
    afterEach(async () => {
      await t.close();
      await subject.cleanup();
    });

    it('an untouched store verifies intact, every event chained', async () => {
      const result = await verifyStore(store, { batchSize: 3 });
      expect(result).toMatchObject({ intact: true, events: 8, unchained: 0, headPosition: positions[7] });
      expect(result.problem).toBeUndefined();
      for (const stream of Object.values(streams)) expect((await verifyStream(store, stream)).intact).toBe(true);
    });

    it("an edited event's data is named at its position", async () => {
      await t.run(`UPDATE ${t.table} SET data = ${p(1)} WHERE position = ${p(2)}`, ['{"stream":"A","n":1,"text":"hello"}', positions[2]]);
      expect((await verifyStore(store)).problem).toMatchObject({ kind: 'edited', position: positions[2], streamId: streams.A, revision: 1 });
      expect((await verifyStream(store, streams.A)).problem).toMatchObject({ kind: 'edited', position: positions[2] });
      expect((await verifyStream(store, streams.B)).intact).toBe(true);
    });

    it("an edited event's metadata or type is named at its position", async () => {
      await t.run(`UPDATE ${t.table} SET type = ${p(1)} WHERE position = ${p(2)}`, ['JobCancelled', positions[4]]);
      expect((await verifyStore(store)).problem).toMatchObject({ kind: 'edited', position: positions[4] });
    });

    it('a removed event (another job follows) is named at its position', async () => {
      await t.run(`DELETE FROM ${t.table} WHERE position = ${p(1)}`, [positions[2]]);
      expect((await verify()).problem).toMatchObject({ kind: 'removed', position: positions[2] });
      expect((await verifyStream(store, streams.A)).problem).toMatchObject({ kind: 'removed', position: positions[5], revision: 2 });
    });

    it("a job's last event removed from the middle of the log is named at its position", async () => {
      // C1 is C's last event: C's own chain cannot show it, the log's chain does.
      await t.run(`DELETE FROM ${t.table} WHERE position = ${p(1)}`, [positions[6]]);
      expect((await verify()).problem).toMatchObject({ kind: 'removed', position: positions[6] });
    });

    it('two events of one job swapped in the log are named at the first', async () => {
      await t.unlockPositions();
      await swapPositions(positions[2], positions[5]);
      expect((await verify()).problem).toMatchObject({ kind: 'reordered', position: positions[2], streamId: streams.A, revision: 2 });
    });

    it('events of two jobs swapped in the log are named at the first', async () => {
      await t.unlockPositions();
      await swapPositions(positions[2], positions[3]);
      // Each stream is in order: only the log's chain shows it (a computed one at the signed head there).
      expect((await verify()).problem).toMatchObject({ kind: computed ? 'checkpoint' : 'reordered', position: positions[2] });
    });

    it('revisions swapped inside a job (contents exchanged) are named at the first', async () => {
      // Keep ids unique while exchanging: move one out of the way first.
      await t.run(`UPDATE ${t.table} SET revision = 100 WHERE position = ${p(1)}`, [positions[2]]);
      await t.run(`UPDATE ${t.table} SET revision = 1 WHERE position = ${p(1)}`, [positions[5]]);
      await t.run(`UPDATE ${t.table} SET revision = 2 WHERE position = ${p(1)}`, [positions[2]]);
      expect((await verifyStore(store)).problem).toMatchObject({ kind: 'reordered', position: positions[2], revision: 2 });
      expect((await verifyStream(store, streams.A)).intact).toBe(false);
    });

    it('an event inserted in the middle of the log, with made-up links, is named at its position', async () => {
      await t.unlockPositions();
      const last = positions[7];
      // Make room after position 4 the way a forger would: shift the later events up by one.
      await t.run(`UPDATE ${t.table} SET position = position + 1000 WHERE position > ${p(1)}`, [positions[3]]);
      await t.run(`UPDATE ${t.table} SET position = position - 999 WHERE position > ${p(1)}`, [last]);
      const forged = positions[3] + 1;
      await insertRow(forged, `job-d-${randomUUID()}`, 0, 'a'.repeat(64), 'b'.repeat(64));
      expect((await verify()).problem).toMatchObject({ kind: 'inserted', position: forged });
    });

    it('an event appended without links after the chain began is named at its position', async () => {
      await t.unlockPositions();
      await insertRow(positions[7] + 1, streams.B, 3, null, null);
      expect((await verify()).problem).toMatchObject({ kind: 'inserted', position: positions[7] + 1 });
      expect((await verifyStream(store, streams.B)).problem).toMatchObject({ kind: 'inserted', position: positions[7] + 1 });
    });

    it('a truncated tail verifies intact alone, and as truncated against a trusted head', async () => {
      const before = await verifyStore(store);
      await t.run(`DELETE FROM ${t.table} WHERE position >= ${p(1)}`, [positions[6]]);
      expect((await verifyStore(store)).intact).toBe(true);
      const trusted = [{ position: before.headPosition, chainHash: before.chainHash as string }];
      expect((await verifyStore(store, { trusted })).problem).toMatchObject({ kind: 'truncated', position: positions[6] });
    });

    it('a trusted head matches an untouched log and catches a rewritten one', async () => {
      const before = await verifyStore(store);
      const trusted = [{ position: before.headPosition, chainHash: before.chainHash as string }];
      expect(await verifyStore(store, { trusted })).toMatchObject({ intact: true, checkpointsMatched: 1 });
      expect((await verifyStore(store, { trusted: [{ ...trusted[0], chainHash: 'f'.repeat(64) }] })).problem).toMatchObject({
        kind: 'checkpoint',
        position: before.headPosition,
      });
    });

    if (suite.computed) {
      describe('with a computed log chain', () => {
        it('without signed heads, only the streams are proven: a removed event is named where its stream misses it', async () => {
          await t.run(`DELETE FROM ${t.table} WHERE position = ${p(1)}`, [positions[2]]);
          expect((await verifyStore(store)).problem).toMatchObject({ kind: 'removed', position: positions[5], streamId: streams.A, revision: 2 });
        });

        it('with sparse signed heads, a change only the log shows is named at the first head that no longer matches', async () => {
          await t.unlockPositions();
          await swapPositions(positions[3], positions[4]);
          const sparse = [heads[1], heads[7]];
          const problem = (await verifyStore(store, { trusted: sparse })).problem;
          expect(problem).toMatchObject({ kind: 'checkpoint', position: positions[7] });
          expect(problem?.message).toContain(`after position ${positions[1]}`);
          // An edit that left the links alone is still named at its own position.
          await t.run(`UPDATE ${t.table} SET data = ${p(1)} WHERE position = ${p(2)}`, ['{"stream":"B","n":0}', positions[1]]);
          expect((await verifyStore(store, { trusted: sparse })).problem).toMatchObject({ kind: 'edited', position: positions[1] });
        });

        it('an event recorded before the chain is folded in too: a signed head covers it', async () => {
          await t.unlockPositions();
          await insertRow(0, `job-old-${randomUUID()}`, 0, null, null);
          const head = await readChainHead(store);
          expect(await verifyStore(store, { trusted: [head] })).toMatchObject({ intact: true, unchained: 1, events: 9, checkpointsMatched: 1 });
          await t.run(`UPDATE ${t.table} SET data = ${p(1)} WHERE position = 0`, ['{"exitCode":1}']);
          expect(await verifyStore(store)).toMatchObject({ intact: true, unchained: 1 });
          expect((await verifyStore(store, { trusted: [head] })).problem).toMatchObject({ kind: 'checkpoint', position: head.position });
        });
      });
    }

    async function swapPositions(a: number, b: number): Promise<void> {
      await t.run(`UPDATE ${t.table} SET position = -1 WHERE position = ${p(1)}`, [a]);
      await t.run(`UPDATE ${t.table} SET position = ${p(1)} WHERE position = ${p(2)}`, [a, b]);
      await t.run(`UPDATE ${t.table} SET position = ${p(1)} WHERE position = -1`, [b]);
    }

    async function insertRow(position: number, streamId: string, revision: number, streamHash: string | null, chainHash: string | null): Promise<void> {
      await t.run(
        `INSERT INTO ${t.table} (position, id, stream_id, revision, type, data, metadata, recorded_at, stream_hash, chain_hash)
         VALUES (${[1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(p).join(', ')})`,
        [position, randomUUID(), streamId, revision, 'JobCompleted', '{"exitCode":0}', '{}', new Date().toISOString(), streamHash, chainHash],
      );
    }
  });
}

describeTamperEvidence('SQLite file', async () => {
  const dir: TempDir = tempDir('jobline-tamper-');
  const path = join(dir.path, 'events.db');
  const store = new SqliteEventStore({ path });
  await store.headPosition();
  const raw = new Database(path);
  return {
    store,
    tamperer: {
      table: 'events',
      run: async (sql, params = []) => void raw.prepare(sql).run(...params),
      unlockPositions: async () => undefined,
      placeholder: () => '?',
      close: async () => void raw.close(),
    },
    cleanup: async () => {
      await store.close();
      dir.remove();
    },
  };
});

describeTamperEvidence('SQLite file with a computed log chain (as EventStoreDB keeps it)', async () => {
  const dir: TempDir = tempDir('jobline-tamper-computed-');
  const path = join(dir.path, 'events.db');
  const inner = new SqliteEventStore({ path });
  await inner.headPosition();
  const raw = new Database(path);
  return {
    store: new ComputedChainStore(inner),
    tamperer: {
      table: 'events',
      run: async (sql, params = []) => void raw.prepare(sql).run(...params),
      unlockPositions: async () => undefined,
      placeholder: () => '?',
      close: async () => void raw.close(),
    },
    cleanup: async () => {
      await inner.close();
      dir.remove();
    },
  };
}, { computed: true });

const postgres = testPostgres(process.env);
if (!postgres.available) {
  describe('PostgreSQL: tamper evidence', () => {
    it.skip(`skipped: ${postgres.reason}`, () => {});
  });
} else {
  describeTamperEvidence('PostgreSQL', async () => {
    const schema = randomSchemaName();
    const store = new PostgresEventStore({ connectionString: postgres.url, schema });
    await store.ready();
    const raw = new Client({ connectionString: postgres.url });
    await raw.connect();
    const table = `"${schema}"."events"`;
    return {
      store,
      tamperer: {
        table,
        run: async (sql, params = []) => void (await raw.query(sql, params)),
        unlockPositions: async () => void (await raw.query(`ALTER TABLE ${table} ALTER COLUMN position DROP IDENTITY IF EXISTS`)),
        placeholder: (n) => `$${n}`,
        close: () => raw.end(),
      },
      cleanup: async () => {
        await store.close();
        await dropSchema(postgres.url, schema);
      },
    };
  });
  describeTamperEvidence('PostgreSQL with a computed log chain', async () => {
    const schema = randomSchemaName();
    const store = new PostgresEventStore({ connectionString: postgres.url, schema });
    await store.ready();
    const raw = new Client({ connectionString: postgres.url });
    await raw.connect();
    const table = `"${schema}"."events"`;
    return {
      store: new ComputedChainStore(store),
      tamperer: {
        table,
        run: async (sql, params = []) => void (await raw.query(sql, params)),
        unlockPositions: async () => void (await raw.query(`ALTER TABLE ${table} ALTER COLUMN position DROP IDENTITY IF EXISTS`)),
        placeholder: (n) => `$${n}`,
        close: () => raw.end(),
      },
      cleanup: async () => {
        await store.close();
        await dropSchema(postgres.url, schema);
      },
    };
  }, { computed: true });
}

function event(type: string, data: unknown): NewEvent {
  return { id: randomUUID(), type, data, metadata: { actor: 'tester', correlationId: 'c-1' } };
}
