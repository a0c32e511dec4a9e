/**
 * SQLite event store throughput: appends (one transaction per job of 5 events), readAll
 * over the whole log, and a subscribeToAll catch-up from the start.
 *
 *   npm run bench -- event-store [--store-jobs=N]
 *   node dist/bench/event-store.bench.js [jobs]      (alone; prints one JSON line)
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { SqliteEventStore, type NewEvent } from '../libs/event-store/src';
import { tempDir } from '../libs/testing/src/temp-dir';
import { withDefaults } from './bench-kit';

const EVENTS_PER_JOB = 5;
const READ_PAGE = 10_000;

function jobEvents(jobId: string, at: string): NewEvent[] {
  const metadata = { actor: 'bench', correlationId: jobId, causationId: jobId };
  const types = ['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted'];
  return types.map((type, i) => ({
    id: randomUUID(),
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
  /** Jobs appended, 5 events each (default 20,000). */
  jobs: number;
}

export const EVENT_STORE_DEFAULTS: EventStoreBenchOptions = { jobs: 20_000 };

export async function runEventStoreBench(options: Partial<EventStoreBenchOptions> = {}) {
  const { jobs } = withDefaults(EVENT_STORE_DEFAULTS, options);
  const dir = tempDir('jobline-bench-event-store-');
  const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
  try {
    const batches = Array.from({ length: jobs }, () => {
      const jobId = randomUUID();
      return { streamId: `job-${jobId}`, events: jobEvents(jobId, new Date().toISOString()) };
    });

    const latencies = new Float64Array(jobs);
    const appendStarted = process.hrtime.bigint();
    for (let i = 0; i < jobs; i++) {
      const t0 = process.hrtime.bigint();
      await store.appendToStream(batches[i].streamId, batches[i].events, 'no_stream');
      latencies[i] = Number(process.hrtime.bigint() - t0);
    }
    const appendJobsPerSec = perSecond(jobs, appendStarted);
    latencies.sort();

    const total = jobs * EVENTS_PER_JOB;
    const readStarted = process.hrtime.bigint();
    let read = 0;
    for (let after = -1; ; ) {
      const page = await store.readAll({ after, maxCount: READ_PAGE });
      if (page.length === 0) break;
      read += page.length;
      after = page[page.length - 1].position;
    }
    const readAllEventsPerSec = perSecond(read, readStarted);

    const subscribeStarted = process.hrtime.bigint();
    const subscription = store.subscribeToAll({ after: 0 });
    let received = 0;
    for await (const _event of subscription) {
      if (++received === total) break;
    }
    const subscribeCatchUpEventsPerSec = perSecond(received, subscribeStarted);

    if (read !== total || received !== total) throw new Error(`expected ${total} events, read ${read}, received ${received}`);
    return {
      adapter: 'sqlite',
      jobs,
      events: total,
      appendJobsPerSec,
      appendEventsPerSec: appendJobsPerSec * EVENTS_PER_JOB,
      appendP50Us: quantileUs(latencies, 0.5),
      appendP99Us: quantileUs(latencies, 0.99),
      readAllEventsPerSec,
      subscribeCatchUpEventsPerSec,
    };
  } finally {
    await store.close();
    dir.remove();
  }
}

if (require.main === module) {
  runEventStoreBench({ jobs: Number(process.argv[2] ?? EVENT_STORE_DEFAULTS.jobs) }).then(
    (result) => process.stdout.write(`${JSON.stringify({ bench: 'event-store', ...result })}\n`),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
