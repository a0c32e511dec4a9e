/**
 * Event store throughput, SQLite and PostgreSQL side by side: appends (one transaction per
 * job of 5 events) from 1 appender and from 8 concurrent ones, readAll over the whole log,
 * and a subscribeToAll catch-up of what they appended. SQLite also on a file pre-filled with
 * `--history` events (fillStore: real decider histories; not timed), to show what a large log costs
 * an append; event ids are the orchestrator's (UUIDv7) unless `--event-ids=random` (UUIDv4, the
 * ids before 8 Dec; the pre-filled events keep UUIDv7 ids), job ids random as an integration may choose them.
 *
 *   npm run bench -- event-store [--store-jobs=N] [--history=0,1000000] [--event-ids=random]
 *   node dist/bench/event-store.bench.js [jobs]      (alone; prints one JSON line)
 *
 * PostgreSQL: JOBLINE_BENCH_POSTGRES_URL (default postgres://root@127.0.0.1:5432/test), in a
 * schema of its own that is dropped after; without a server its entry says why it was skipped.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Client } from 'pg';
import { newTimeOrderedId } from '../libs/contracts/src';
import { PostgresEventStore, SqliteEventStore, maskPostgresUrl, type EventStore, type NewEvent } from '../libs/event-store/src';
import { DEFAULT_TEST_POSTGRES_URL, dropSchema, randomSchemaName } from '../libs/testing/src/postgres';
import { tempDir } from '../libs/testing/src/temp-dir';
import { fillStore, progress, withDefaults } from './bench-kit';

const EVENTS_PER_JOB = 5;
const READ_PAGE = 10_000;
const CONCURRENT_APPENDERS = 8;

function jobEvents(jobId: string, at: string, newId: () => string): NewEvent[] {
  const metadata = { actor: 'bench', correlationId: jobId, causationId: jobId };
  const types = ['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted'];
  return types.map((type, i) => ({
    id: newId(),
    type,
    data: {
      jobId,
      version: 1,
      occurredAt: at,
      ...(i === 0 ? { owner: 'bench', spec: { command: ['true'], priority: 'normal', timeoutSeconds: 60 } } : {}),
      ...(i === 2 ? { attempt: 1, executor: 'local-1' } : {}),
      ...(i === 4 ? { attempt: 1, exitCode: 0, usage: { cpuMs: 1, maxRssBytes: 1_048_576 } } : {}),
    },
    metadata,
  }));
}

function perSecond(count: number, startedNs: bigint): number {
  const seconds = Number(process.hrtime.bigint() - startedNs) / 1e9;
  return Math.round(count / seconds);
}

function quantileUs(sortedNs: Float64Array, q: number): number {
  return Math.round(sortedNs[Math.min(sortedNs.length - 1, Math.floor(q * sortedNs.length))] / 100) / 10;
}

export interface EventStoreBenchOptions {
  /** Jobs appended by each of the two append runs (1 and 8 appenders), 5 events each (default 20,000). */
  jobs: number;
  /** PostgreSQL to measure; undefined skips it. */
  postgresUrl: string | undefined;
  /** SQLite: one run per count, on a file holding that many events first (default [0]); PostgreSQL runs on an empty schema only. */
  historyEvents: number[];
  /** The appended events' ids: 'time-ordered' (UUIDv7, as the orchestrator makes them) or 'random' (UUIDv4). */
  eventIds: 'time-ordered' | 'random';
}

export const EVENT_STORE_DEFAULTS: EventStoreBenchOptions = { jobs: 20_000, postgresUrl: DEFAULT_TEST_POSTGRES_URL, historyEvents: [0], eventIds: 'time-ordered' };

interface AdapterUnderTest {
  adapter: string;
  store: EventStore;
  about?: Record<string, unknown>;
  dispose(): Promise<void>;
}

type Batch = { streamId: string; events: NewEvent[] };

function makeBatches(jobs: number, newId: () => string): Batch[] {
  return Array.from({ length: jobs }, () => {
    const jobId = randomUUID();
    return { streamId: `job-${jobId}`, events: jobEvents(jobId, new Date().toISOString(), newId) };
  });
}

/** Appends every batch from `appenders` concurrent loops; the latency of each append in ns. */
async function appendAll(store: EventStore, batches: Batch[], appenders: number): Promise<{ jobsPerSec: number; latencies: Float64Array }> {
  const latencies = new Float64Array(batches.length);
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: appenders }, async () => {
      for (let i = next++; i < batches.length; i = next++) {
        const t0 = process.hrtime.bigint();
        await store.appendToStream(batches[i].streamId, batches[i].events, 'no_stream');
        latencies[i] = Number(process.hrtime.bigint() - t0);
      }
    }),
  );
  const jobsPerSec = perSecond(batches.length, started);
  latencies.sort();
  return { jobsPerSec, latencies };
}

async function measure(subject: AdapterUnderTest, jobs: number, newId: () => string) {
  const { store } = subject;
  const bench = `event-store ${subject.adapter}`;
  const head = await store.headPosition();
  progress(bench, `${jobs} jobs from 1 appender`);
  const one = await appendAll(store, makeBatches(jobs, newId), 1);
  progress(bench, `${jobs} jobs from ${CONCURRENT_APPENDERS} appenders`);
  const many = await appendAll(store, makeBatches(jobs, newId), CONCURRENT_APPENDERS);

  const total = 2 * jobs * EVENTS_PER_JOB;
  progress(bench, `readAll of ${total} events`);
  const readStarted = process.hrtime.bigint();
  let read = 0;
  for (let after = head; ; ) {
    const page = await store.readAll({ after, maxCount: READ_PAGE });
    if (page.length === 0) break;
    read += page.length;
    after = page[page.length - 1].position;
  }
  const readAllEventsPerSec = perSecond(read, readStarted);

  progress(bench, 'subscribe catch-up');
  const subscribeStarted = process.hrtime.bigint();
  const subscription = store.subscribeToAll({ after: head });
  let received = 0;
  for await (const _event of subscription) {
    if (++received === total) break;
  }
  const subscribeCatchUpEventsPerSec = perSecond(received, subscribeStarted);

  if (read !== total || received !== total) throw new Error(`${subject.adapter}: expected ${total} events, read ${read}, received ${received}`);
  return {
    adapter: subject.adapter,
    ...subject.about,
    jobs,
    events: total,
    appendJobsPerSec: one.jobsPerSec,
    appendEventsPerSec: one.jobsPerSec * EVENTS_PER_JOB,
    appendP50Us: quantileUs(one.latencies, 0.5),
    appendP99Us: quantileUs(one.latencies, 0.99),
    concurrentAppenders: CONCURRENT_APPENDERS,
    concurrentAppendJobsPerSec: many.jobsPerSec,
    concurrentAppendEventsPerSec: many.jobsPerSec * EVENTS_PER_JOB,
    concurrentAppendP50Us: quantileUs(many.latencies, 0.5),
    concurrentAppendP99Us: quantileUs(many.latencies, 0.99),
    readAllEventsPerSec,
    subscribeCatchUpEventsPerSec,
  };
}

async function openSqlite(historyEvents: number): Promise<AdapterUnderTest> {
  const dir = tempDir('jobline-bench-event-store-');
  let about: Record<string, unknown> = { historyEvents: 0 };
  if (historyEvents > 0) {
    progress('event-store sqlite', `filling the file with ${historyEvents} events (not measured)`);
    const fill = await fillStore(dir.path, historyEvents, 'event-store sqlite');
    about = { historyEvents: fill.events, fillMs: fill.fillMs };
  }
  const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
  return {
    adapter: 'sqlite',
    store,
    about,
    dispose: async () => {
      await store.close();
      dir.remove();
    },
  };
}

/** The store in a fresh schema, or why it was skipped when no PostgreSQL answers. */
async function openPostgres(url: string): Promise<AdapterUnderTest | { skipped: string }> {
  const probe = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  let about: Record<string, unknown>;
  try {
    await probe.connect();
    const settings = await probe.query<{ version: string; synchronous_commit: string; fsync: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync`,
    );
    about = { serverVersion: settings.rows[0].version, synchronousCommit: settings.rows[0].synchronous_commit, fsync: settings.rows[0].fsync };
  } catch (error) {
    return { skipped: `no PostgreSQL at ${maskPostgresUrl(url)}: ${(error as Error).message}` };
  } finally {
    await probe.end().catch(() => undefined);
  }
  const schema = randomSchemaName('jl_bench_');
  const store = new PostgresEventStore({ connectionString: url, schema, maxConnections: CONCURRENT_APPENDERS, readBatchSize: READ_PAGE });
  return {
    adapter: 'postgres',
    store,
    about: { historyEvents: 0, ...about },
    dispose: async () => {
      await store.close();
      await dropSchema(url, schema);
    },
  };
}

export async function runEventStoreBench(options: Partial<EventStoreBenchOptions> = {}) {
  const { jobs, postgresUrl, historyEvents, eventIds } = withDefaults(EVENT_STORE_DEFAULTS, options);
  const newId = eventIds === 'random' ? randomUUID : () => newTimeOrderedId();
  const results: object[] = [];
  const subjects = [
    ...historyEvents.map((n) => () => openSqlite(n)),
    async () => (postgresUrl ? openPostgres(postgresUrl) : { skipped: 'no PostgreSQL URL' }),
  ];
  for (const open of subjects) {
    const subject = await open();
    if ('skipped' in subject) {
      results.push({ adapter: 'postgres', skipped: subject.skipped });
      continue;
    }
    try {
      results.push(await measure(subject, jobs, newId));
    } finally {
      await subject.dispose();
    }
  }
  return { jobs, eventsPerJob: EVENTS_PER_JOB, eventIds, results };
}

if (require.main === module) {
  runEventStoreBench({
    jobs: Number(process.argv[2] ?? EVENT_STORE_DEFAULTS.jobs),
    postgresUrl: process.env.JOBLINE_BENCH_POSTGRES_URL || EVENT_STORE_DEFAULTS.postgresUrl,
  }).then(
    (result) => process.stdout.write(`${JSON.stringify({ bench: 'event-store', ...result })}\n`),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
