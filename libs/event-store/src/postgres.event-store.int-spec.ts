import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { eventually } from '../../testing/src/eventually';
import { dropSchema, randomSchemaName, testPostgres } from '../../testing/src/postgres';
import { tempDir } from '../../testing/src/temp-dir';
import { verifyStore } from './chain-verifier';
import { contentHash } from './event-chain';
import { describeEventStoreConformance } from './event-store.conformance';
import { WrongExpectedRevisionError, type NewEvent, type RecordedEvent, type Subscription } from './event-store.port';
import { openEventStore } from './open-event-store';
import { PostgresCheckpointStore } from './postgres.checkpoint-store';
import { PostgresDatabase } from './postgres.connection';
import { PostgresEventStore, type PostgresEventStoreOptions } from './postgres.event-store';
import { PostgresSnapshotStore } from './postgres.snapshot-store';
import { describeSnapshotStoreConformance } from './snapshot-store.conformance';

// The machine's PostgreSQL (CI has one); every suite works in schemas of its own, dropped after.
const postgres = testPostgres(process.env);

if (!postgres.available) {
  describe('PostgresEventStore', () => {
    it.skip(`PostgreSQL conformance skipped: ${postgres.reason}. Start PostgreSQL, or set JOBLINE_TEST_POSTGRES_URL=postgres://user@host:5432/db`, () => {});
  });
} else {
  const url = postgres.url;
  const schemas: string[] = [];
  const freshSchema = (): string => {
    const schema = randomSchemaName();
    schemas.push(schema);
    return schema;
  };
  afterAll(async () => {
    for (const schema of schemas.splice(0)) await dropSchema(url, schema);
  });

  const sharedSchema = freshSchema();
  describeEventStoreConformance('PostgresEventStore', async () => {
    // A small batch makes the catch-up span many reads, which is where a gap would hide.
    const open = (): PostgresEventStore => new PostgresEventStore({ connectionString: url, schema: sharedSchema, readBatchSize: 64 });
    const store = open();
    return { store, openAnother: async () => open(), cleanup: () => store.close() };
  });

  describeSnapshotStoreConformance('PostgresSnapshotStore', async () => {
    const open = (): PostgresSnapshotStore => new PostgresSnapshotStore({ connectionString: url, schema: sharedSchema });
    const store = open();
    return { store, openAnother: async () => open(), cleanup: () => store.close() };
  });

  describe('PostgresEventStore on a real server', () => {
    let admin: Client;
    const opened: Array<{ close(): Promise<void> }> = [];
    const open = (options: Partial<PostgresEventStoreOptions> & { schema: string }): PostgresEventStore => {
      const store = new PostgresEventStore({ connectionString: url, ...options } as PostgresEventStoreOptions);
      opened.push(store);
      return store;
    };
    const connect = async (): Promise<Client> => {
      const client = new Client({ connectionString: url });
      await client.connect();
      opened.push({ close: () => client.end().catch(() => undefined) });
      return client;
    };
    const connectionsOf = async (applicationName: string): Promise<number> => {
      const result = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
      return (result.rows[0] as { n: number }).n;
    };

    beforeAll(async () => {
      admin = new Client({ connectionString: url });
      await admin.connect();
    });
    afterAll(() => admin.end());
    afterEach(async () => {
      for (const store of opened.splice(0).reverse()) await store.close();
    });

    it('a schema written before the hash chain: old events verify as unchained, new ones are linked after them, the old function is gone', async () => {
      const schema = freshSchema();
      await admin.query(`CREATE SCHEMA "${schema}"`);
      await admin.query(`CREATE TABLE "${schema}".events (
        position bigint GENERATED ALWAYS AS IDENTITY (START WITH 1 CACHE 1) PRIMARY KEY, id text NOT NULL UNIQUE, stream_id text NOT NULL,
        revision bigint NOT NULL, type text NOT NULL, data json NOT NULL, metadata json NOT NULL, recorded_at timestamptz NOT NULL,
        CONSTRAINT events_stream_revision_unique UNIQUE (stream_id, revision))`);
      await admin.query(`CREATE FUNCTION "${schema}".append_events(p_stream text, p_expected bigint, p_ids text[], p_types text[], p_data json[], p_metadata json[],
        OUT next_revision bigint, OUT last_position bigint) LANGUAGE sql AS 'SELECT 0::bigint, 0::bigint'`);
      await admin.query(`INSERT INTO "${schema}".events (id, stream_id, revision, type, data, metadata, recorded_at)
        VALUES ($1, 'job-1', 0, 'A', '{}', '{}', now()), ($2, 'job-2', 0, 'A', '{}', '{}', now())`, [randomUUID(), randomUUID()]);

      const store = open({ schema });
      await store.appendToStream('job-1', [event('B')], 0);
      await store.appendToStream('job-3', [event('A')], 'no_stream');
      expect((await store.readAll()).map((e) => e.chain === undefined)).toEqual([true, true, false, false]);
      expect(await verifyStore(store)).toMatchObject({ intact: true, events: 4, unchained: 2 });
      const functions = await admin.query(`SELECT count(*)::int AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = 'append_events'`, [schema]);
      expect((functions.rows[0] as { n: number }).n).toBe(1);
    });

    it('creates schema, table and function on first use, once, when four instances (four pools) start at once', async () => {
      const schema = freshSchema();
      const stores = [0, 1, 2, 3].map(() => open({ schema }));

      const results = await Promise.all(stores.map((store, i) => store.appendToStream(`job-${i}`, [event('A')], 'no_stream')));

      expect(results.map((r) => r.position).sort()).toEqual([1, 2, 3, 4]);
      const tables = await admin.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema]);
      expect(tables.rows.map((r: { table_name: string }) => r.table_name)).toEqual(['events']);
      expect(await stores[3].headPosition()).toBe(4);
    });

    it('starts empty at head -1, numbers the first event 1, and continues after a reopen', async () => {
      const schema = freshSchema();
      const first = open({ schema });
      expect(await first.headPosition()).toBe(-1);
      expect(await first.readAll()).toEqual([]);
      expect(await first.appendToStream('job-1', [event('A'), event('B')], 'no_stream')).toEqual({ nextExpectedRevision: 1, position: 2 });
      const before = await first.readAll();
      await first.close();

      const second = open({ schema });
      expect(await second.readAll()).toEqual(before);
      expect(await second.appendToStream('job-1', [event('C')], 1)).toEqual({ nextExpectedRevision: 2, position: 3 });
    });

    it('positionAt bisects by number across 1..9 → 10..99 (a text sort of positions would land at 1)', async () => {
      const store = open({ schema: freshSchema() });
      expect(await store.positionAt(new Date())).toBe(-1);
      const between: Date[] = [];
      for (let i = 1; i <= 24; i++) {
        await store.appendToStream(`job-${i % 3}`, [event(`E${i}`)], 'any');
        await new Promise((r) => setTimeout(r, 2));
        between.push(new Date());
        await new Promise((r) => setTimeout(r, 2));
      }
      for (let i = 0; i < between.length; i++) expect({ i, position: await store.positionAt(between[i]) }).toEqual({ i, position: i + 1 });
    });

    it('keeps data and metadata exactly as written (json, not jsonb): key order, escapes, unicode', async () => {
      const schema = freshSchema();
      const store = open({ schema });
      const data = { z: 1, a: 'nul \u0000 and "quotes" and \\ and ✓ 𝄞', m: [{ y: true, b: null }], big: 12345678901234 };
      const metadata = { zeta: 'last-first', alpha: 1 };

      await store.appendToStream('job-1', [{ id: randomUUID(), type: 'A', data, metadata }], 'no_stream');
      const [read] = await store.readStream('job-1');
      const raw = await admin.query(`SELECT data::text, metadata::text FROM "${schema}".events`);

      expect(read.data).toEqual(data);
      expect(Object.keys(read.data as object)).toEqual(['z', 'a', 'm', 'big']);
      expect(Object.keys(read.metadata)).toEqual(['zeta', 'alpha']);
      expect(raw.rows[0]).toEqual({ data: JSON.stringify(data), metadata: JSON.stringify(metadata) });
    });

    it('answers a repeated append (same event ids) with the first result and writes nothing; the same id elsewhere is refused', async () => {
      const store = open({ schema: freshSchema() });
      const batch = [event('A'), event('B')];
      const first = await store.appendToStream('job-1', batch, 'no_stream');

      expect(await store.appendToStream('job-1', batch, 'no_stream')).toEqual(first);
      expect(await store.appendToStream('job-1', batch, 'any')).toEqual(first);
      await expect(store.appendToStream('job-2', [batch[0]], 'no_stream')).rejects.toThrow(/already recorded in stream job-1/);
      await expect(store.appendToStream('job-1', [batch[0], event('C')], 'any')).rejects.toThrow(/already recorded/);
      expect(await store.readAll()).toHaveLength(2);
    });

    it('writes nothing for an event that cannot be serialised, and refuses a malformed expected revision', async () => {
      const store = open({ schema: freshSchema() });

      await expect(store.appendToStream('job-1', [event('A'), event('Bad', { big: 1n })], 'no_stream')).rejects.toThrow(TypeError);
      for (const bad of [1.5, -2, Number.NaN, '3' as unknown as number]) {
        await expect(store.appendToStream('job-1', [event('A')], bad)).rejects.toThrow(/expected revision must be/);
      }

      expect(await store.readAll()).toEqual([]);
      expect((await store.appendToStream('job-1', [event('A')], -1)).position).toBe(1);
      await expect(store.appendToStream('job-1', [event('B')], -1)).rejects.toBeInstanceOf(WrongExpectedRevisionError);
    });

    it('refuses a schema name that is not a plain identifier', () => {
      for (const schema of ['', 'a-b', 'x"; DROP TABLE y; --', '1abc', 'a'.repeat(49)]) {
        expect(() => new PostgresDatabase({ connectionString: url, schema })).toThrow(/not a plain name/);
      }
    });

    describe('ordering under concurrent transactions', () => {
      it('an append held open before its commit holds back a later one, so a live subscriber gets both, in position order', async () => {
        const schema = freshSchema();
        const writerName = `jl-writer-${randomBytes(4).toString('hex')}`;
        const reader = open({ schema });
        const writer = open({ schema, applicationName: writerName });
        await reader.appendToStream('setup', [event('Setup')], 'no_stream');
        const start = await reader.headPosition();
        const subscription = reader.subscribeToAll({ after: start });
        const iterator = subscription[Symbol.asyncIterator]();
        const firstDelivery = iterator.next();

        // The same append function, in a transaction this test keeps open: it has its
        // position but is not committed.
        const holder = await connect();
        await holder.query('BEGIN');
        const heldEvent = event('Held');
        const held = await holder.query(
          `SELECT last_position::int AS position FROM "${schema}".append_events($1, $2, $3::text[], $4::text[], $5::json[], $6::json[], $7::text[])`,
          ['held', -1, [heldEvent.id], [heldEvent.type], ['{}'], ['{}'], [contentHash({ ...heldEvent, streamId: 'held', data: {}, metadata: {} })]],
        );
        const heldPosition = (held.rows[0] as { position: number }).position;
        const later = writer.appendToStream('later', [event('Later')], 'no_stream');

        // The later append waits on the ordering lock, not merely slowly: its backend is blocked on an advisory lock.
        await eventually(
          async () => {
            const waiting = await admin.query(
              `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name = $1`,
              [writerName],
            );
            return (waiting.rows[0] as { n: number }).n === 1;
          },
          15_000,
          'the later append to wait on the advisory lock',
        );
        expect(await reader.readAll({ after: start })).toEqual([]);
        await holder.query('COMMIT');
        const laterResult = await later;
        const first = await withDeadline(firstDelivery);
        const second = await withDeadline(iterator.next());
        await subscription.close();

        expect(laterResult.position).toBeGreaterThan(heldPosition);
        expect([first.value?.position, second.value?.position]).toEqual([heldPosition, laterResult.position]);
        expect([first.value?.id, second.value?.type]).toEqual([heldEvent.id, 'Later']);
      });

      it('without that lock the hazard is real: a plain insert that commits after a later one is skipped by a position cursor', async () => {
        // The control experiment: the same table and subscription, rows written around the append function.
        const schema = freshSchema();
        const store = open({ schema, pollIntervalMs: 20 });
        await store.ready();
        const start = await store.headPosition();
        const insert = `INSERT INTO "${schema}".events (id, stream_id, revision, type, data, metadata, recorded_at)
                        VALUES ($1, $2, 0, 'Plain', '{}', '{}', now()) RETURNING position::int AS position`;
        const slow = await connect();
        const fast = await connect();
        await slow.query('BEGIN');
        const early = ((await slow.query(insert, [randomUUID(), 'plain-early'])).rows[0] as { position: number }).position;
        const late = ((await fast.query(insert, [randomUUID(), 'plain-late'])).rows[0] as { position: number }).position;

        const subscription = store.subscribeToAll({ after: start });
        const iterator = subscription[Symbol.asyncIterator]();
        const firstSeen = await withDeadline(iterator.next());
        await slow.query('COMMIT');
        const next = await store.appendToStream('after', [event('After')], 'no_stream');
        const secondSeen = await withDeadline(iterator.next());
        await subscription.close();

        expect(early).toBeLessThan(late);
        expect([firstSeen.value?.position, secondSeen.value?.position]).toEqual([late, next.position]);
        expect((await store.readAll({ after: start })).map((e) => e.position)).toEqual([early, late, next.position]);
      });

      it('a pager and a subscriber keep up with 16 concurrent appenders on four pools without a gap', async () => {
        const schema = freshSchema();
        const stores = [0, 1, 2, 3].map(() => open({ schema, readBatchSize: 16 }));
        const expected = 16 * 15;
        const subscriber = collect(stores[0].subscribeToAll(), expected);
        const paged: RecordedEvent[] = [];
        const pager = (async () => {
          const deadline = Date.now() + 60_000;
          while (paged.length < expected && Date.now() < deadline) {
            const page = await stores[1].readAll({ after: paged.length ? paged[paged.length - 1].position : -1, maxCount: 5 });
            paged.push(...page);
          }
        })();

        await Promise.all(
          Array.from({ length: 16 }, async (_, a) => {
            for (let i = 0; i < 15; i++) await stores[a % 4].appendToStream(`storm-${a}`, [event('E', { a, i })], i - 1);
          }),
        );
        await pager;
        const log = await stores[2].readAll();

        expect(log).toHaveLength(expected);
        expect(paged.map((e) => e.id)).toEqual(log.map((e) => e.id));
        expect((await subscriber).map((e) => e.id)).toEqual(log.map((e) => e.id));
      });
    });

    describe('subscriptions: NOTIFY, polling, lost connections, close', () => {
      it('a store closed while its LISTEN is on its way leaves no connection behind (one would keep the process alive)', async () => {
        const schema = freshSchema();
        const name = `jl-close-${randomBytes(4).toString('hex')}`;
        // Holds every LISTEN back 300 ms: the store is closed after its connection opened and before LISTEN answered.
        const query = Client.prototype.query;
        const held = function (this: Client, ...args: unknown[]) {
          const run = () => (query as (...a: unknown[]) => unknown).apply(this, args);
          return typeof args[0] === 'string' && args[0].startsWith('LISTEN') ? new Promise((r) => setTimeout(r, 300)).then(run) : run();
        };
        Client.prototype.query = held as typeof query;
        try {
          const store = new PostgresEventStore({ connectionString: url, schema, applicationName: name, pollIntervalMs: 3_600_000 });
          await store.headPosition();
          // Catches up (nothing), then waits: the LISTEN connection is on its way.
          void store.subscribeToAll()[Symbol.asyncIterator]().next().catch(() => undefined);
          await eventually(async () => (await connectionsOf(`${name}-listen`)) === 1, 5_000, 'the LISTEN connection opened');
          await store.close();
          await new Promise((r) => setTimeout(r, 600));
        } finally {
          Client.prototype.query = query;
        }
        expect(await connectionsOf(`${name}-listen`)).toBe(0);
      });

      it('an append through another instance wakes a subscriber by NOTIFY (polling is off)', async () => {
        const schema = freshSchema();
        const name = `jl-notify-${randomBytes(4).toString('hex')}`;
        const reader = open({ schema, applicationName: name, pollIntervalMs: 3_600_000 });
        const writer = open({ schema });
        await writer.appendToStream('job-1', [event('First')], 'no_stream');
        const subscription = reader.subscribeToAll();
        const iterator = subscription[Symbol.asyncIterator]();
        expect((await withDeadline(iterator.next())).value?.type).toBe('First');
        const pending = iterator.next();
        await eventually(async () => (await connectionsOf(`${name}-listen`)) === 1, 15_000, 'the LISTEN connection');
        await writer.appendToStream('job-1', [event('Second')], 0);
        expect((await withDeadline(pending, 10_000)).value?.type).toBe('Second');
        // The reader now waits with its listener long established and polling off: only a
        // notification can wake it.
        const third = iterator.next();

        await writer.appendToStream('job-1', [event('Third')], 1);

        expect((await withDeadline(third, 10_000)).value?.type).toBe('Third');
        await subscription.close();
      });

      it('falls back to polling: a row written without a notification still arrives', async () => {
        const schema = freshSchema();
        const store = open({ schema, pollIntervalMs: 50 });
        await store.ready();
        const subscription = store.subscribeToAll();
        const iterator = subscription[Symbol.asyncIterator]();
        const pending = iterator.next();
        const direct = await connect();

        await direct.query(
          `INSERT INTO "${schema}".events (id, stream_id, revision, type, data, metadata, recorded_at)
           VALUES ($1, 'quiet', 0, 'Quiet', '{}', '{}', now())`,
          [randomUUID()],
        );

        expect((await withDeadline(pending, 10_000)).value?.type).toBe('Quiet');
        await subscription.close();
      });

      it('a subscriber and appends carry on when every connection of the instance is killed', async () => {
        const schema = freshSchema();
        const name = `jl-loss-${randomBytes(4).toString('hex')}`;
        const reader = open({ schema, applicationName: name, pollIntervalMs: 200 });
        const writer = open({ schema });
        const kill = (): Promise<unknown> =>
          admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN ($1, $2)', [name, `${name}-listen`]);
        await writer.appendToStream('loss', [event('Before')], 'no_stream');
        const subscription = reader.subscribeToAll();
        const iterator = subscription[Symbol.asyncIterator]();
        expect((await withDeadline(iterator.next())).value?.type).toBe('Before');
        const pending = iterator.next();
        await eventually(async () => (await connectionsOf(`${name}-listen`)) === 1, 15_000, 'the LISTEN connection');

        await kill();
        await writer.appendToStream('loss', [event('WhileDown')], 0);

        expect((await withDeadline(pending, 15_000)).value?.type).toBe('WhileDown');
        await eventually(async () => (await connectionsOf(`${name}-listen`)) === 1, 15_000, 'the LISTEN connection to come back');

        await kill();
        const own = await reader.appendToStream('loss', [event('OwnAfterKill')], 1);
        expect(own.nextExpectedRevision).toBe(2);
        expect((await withDeadline(iterator.next(), 15_000)).value?.type).toBe('OwnAfterKill');
        await subscription.close();
      });

      it('close() ends every subscription and leaves no connection behind', async () => {
        const name = `jl-close-${randomBytes(4).toString('hex')}`;
        const store = new PostgresEventStore({ connectionString: url, schema: freshSchema(), applicationName: name });
        await store.appendToStream('job-1', [event('A')], 'no_stream');
        const iterators = [store.subscribeToAll(), store.subscribeToAll({ after: 1 })].map((s) => s[Symbol.asyncIterator]());
        expect((await withDeadline(iterators[0].next())).value?.type).toBe('A');
        const pending = iterators.map((it) => it.next());
        await eventually(async () => (await connectionsOf(`${name}-listen`)) === 1, 15_000, 'the LISTEN connection');

        await store.close();

        expect(await Promise.all(pending)).toEqual([
          { done: true, value: undefined },
          { done: true, value: undefined },
        ]);
        await eventually(async () => (await connectionsOf(name)) + (await connectionsOf(`${name}-listen`)) === 0, 15_000, 'no connections');
        await expect(store.appendToStream('job-1', [event('B')], 'any')).rejects.toThrow(/closed/);
      });
    });

    describe('PostgresCheckpointStore', () => {
      it('loads -1 when nothing was saved, then the last saved position, shared by two pools', async () => {
        const schema = freshSchema();
        const first = new PostgresCheckpointStore({ connectionString: url, schema });
        const second = new PostgresCheckpointStore({ connectionString: url, schema });
        opened.push(first, second);

        expect(await first.load('relay')).toBe(-1);
        await first.save('relay', 10);
        await second.save('relay', 42);
        await second.save('projection', 7);
        expect([await first.load('relay'), await first.load('projection'), await first.load('other')]).toEqual([42, 7, -1]);
        await first.save('relay', -1);
        expect(await second.load('relay')).toBe(-1);
        await expect(first.save('relay', 2.5)).rejects.toThrow(TypeError);
        expect(await second.load('relay')).toBe(-1);
      });

      it('shares the event store pool and leaves closing it to the store', async () => {
        const store = open({ schema: freshSchema() });
        const checkpoints = new PostgresCheckpointStore({ database: store.database });
        await checkpoints.save('relay', 3);
        await checkpoints.close();

        expect(await checkpoints.load('relay')).toBe(3);
        await store.close();
        await expect(checkpoints.load('relay')).rejects.toThrow(/closed/);
      });
    });

    describe('openEventStore with a PostgreSQL URL', () => {
      it('uses ?schema=, masks the password, and keeps checkpoints and snapshots beside the events', async () => {
        const schema = freshSchema();
        const dir = tempDir('jobline-open-pg-');
        // Trust authentication ignores the password; it is here to be masked.
        const withPassword = new URL(url);
        withPassword.username ||= 'root';
        withPassword.password = 'hunter2';
        withPassword.searchParams.set('schema', schema);
        const handle = openEventStore(withPassword.toString(), dir.path);
        try {
          expect(handle.kind).toBe('postgres');
          expect(handle.describe).toContain(`schema ${schema}`);
          expect(handle.describe).not.toContain('hunter2');
          await handle.eventStore.appendToStream('job-1', [event('A')], 'no_stream');
          await handle.sharedCheckpoints!.save('relay', 1);
          expect(await handle.snapshots!.save('jobs', 1, { open: 1 })).toBe(true);
          await handle.checkpoints.save('projection', 1);

          const rows = await admin.query(`SELECT (SELECT count(*) FROM "${schema}".events)::int AS events, (SELECT position FROM "${schema}".checkpoints)::int AS relay`);
          expect(rows.rows[0]).toEqual({ events: 1, relay: 1 });
        } finally {
          await handle.close();
          dir.remove();
        }
      });
    });
  });
}

function event(type: string, data: unknown = {}, metadata: Record<string, unknown> = {}): NewEvent {
  return { id: randomUUID(), type, data, metadata };
}

/** Fails instead of hanging when a delivery never comes. */
async function withDeadline<T>(promise: Promise<T>, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing delivered within ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function collect(subscription: Subscription, count: number, timeoutMs = 60_000): Promise<RecordedEvent[]> {
  const seen: RecordedEvent[] = [];
  const timer = setTimeout(() => void subscription.close(), timeoutMs);
  try {
    for await (const e of subscription) {
      seen.push(e);
      if (seen.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
  }
  return seen;
}
