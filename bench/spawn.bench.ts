/**
 * Executor hot path with tiny jobs (`true`), side by side with bare child_process.spawn:
 *  - throughput: N jobs queued at once on one executor, until every finished report is stored;
 *  - latency: jobs dispatched at a steady rate, dispatch → claim (the started report, p50/p99);
 *  - overhead: the executor's started → finished durationMs against a bare spawn → exit.
 *
 *   npm run bench -- spawn [--jobs=N] [--capacity=N]
 *   node dist/bench/spawn.bench.js [jobs] [capacity]      (alone; prints one JSON line)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Msg } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { subjects, type AttemptReport, type RunAttemptMessage } from '../libs/contracts/src';
import { ensureStreams } from '../libs/messaging/src/streams';
import { startNatsServer } from '../libs/messaging/src/nats-server';
import { tempDir } from '../libs/testing/src/temp-dir';
import { withDefaults } from './bench-kit';
import { Executor } from '../apps/executor/src/core/executor';
import { NodeProcessRunner } from '../apps/executor/src/node/node-process-runner';
import { FileReportOutbox, outboxDir } from '../apps/executor/src/node/file-report-outbox';
import { OrchestratorPeer } from '../apps/executor/src/testing/orchestrator-peer';

const silent = { info: () => undefined, warn: () => undefined, error: (f: object, m: string) => console.error(m, f) };

function quantile(sorted: number[], q: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

function spawnTrue(): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.once('error', reject);
    child.once('close', () => resolve(performance.now() - t0));
  });
}

async function bareSpawn(jobs: number, concurrency: number): Promise<{ jobsPerSec: number; p50Ms: number }> {
  const times: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < jobs) times.push(await spawnTrue());
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return { jobsPerSec: Math.round(jobs / seconds), p50Ms: quantile(times, 0.5) };
}

export interface SpawnBenchOptions {
  /** Jobs of the throughput run (default 2,000). */
  jobs: number;
  /** Executor slots, and the bare spawn's concurrency (default 4). */
  capacity: number;
}

export const SPAWN_DEFAULTS: SpawnBenchOptions = { jobs: 2000, capacity: 4 };

export async function runSpawnBench(options: Partial<SpawnBenchOptions> = {}) {
  const { jobs, capacity } = withDefaults(SPAWN_DEFAULTS, options);
  const tmp = tempDir('jobline-bench-spawn-');
  const server = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  await ensureStreams(await jetstreamManager(nc));
  // The orchestrator's side of claims and leases, without an event store.
  const peer = new OrchestratorPeer({ nc }).start();
  const executor = new Executor({
    nc,
    executorId: 'bench',
    runner: new NodeProcessRunner({ workRoot: join(tmp.path, 'work') }),
    outbox: new FileReportOutbox(outboxDir(join(tmp.path, 'work'), 'bench')),
    capacity,
    runtime: 'node bench',
    logger: silent,
  });
  await executor.start();

  const dispatchedAt = new Map<string, number>();
  const startedLatency: number[] = [];
  const durations: number[] = [];
  let finished = 0;
  let onFinished: () => void = () => undefined;
  const claims = nc.subscribe(subjects.claimsAll, {
    callback: (_err: Error | null, m: Msg) => {
      const t = dispatchedAt.get(m.json<AttemptReport>().jobId);
      if (t !== undefined) startedLatency.push(performance.now() - t);
    },
  });
  const sub = nc.subscribe(subjects.reportsAll);
  void (async () => {
    for await (const m of sub) {
      const r = m.json<AttemptReport>();
      if (r.kind === 'finished') {
        durations.push(r.durationMs);
        finished++;
        onFinished();
      }
    }
  })();
  const dispatch = (record: boolean) => {
    const jobId = randomUUID();
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId,
      owner: 'bench',
      attempt: 1,
      spec: { command: ['true'], priority: 'normal' },
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
      // Everything is queued at once here (a scheduler would send no more than the free slots): no start deadline.
      startBy: new Date(Date.now() + 3_600_000).toISOString(),
    };
    if (record) dispatchedAt.set(jobId, performance.now());
    return js.publish(subjects.work('bench'), JSON.stringify(msg));
  };
  const allFinished = (n: number) =>
    new Promise<void>((resolve) => {
      onFinished = () => finished >= n && resolve();
      onFinished();
    });

  // Warm-up, then throughput with everything queued at once.
  await Promise.all(Array.from({ length: 50 }, () => dispatch(false)));
  await allFinished(50);
  finished = 0;
  durations.length = 0;
  const t0 = performance.now();
  for (let i = 0; i < jobs; i++) await dispatch(false);
  await allFinished(jobs);
  const throughput = Math.round(jobs / ((performance.now() - t0) / 1000));
  durations.sort((a, b) => a - b);
  const attemptP50 = quantile(durations, 0.5);

  // Latency at a steady 50 jobs/s.
  finished = 0;
  const paced = 200;
  for (let i = 0; i < paced; i++) {
    await dispatch(true);
    await new Promise((r) => setTimeout(r, 20));
  }
  await allFinished(paced);
  startedLatency.sort((a, b) => a - b);

  const bare = await bareSpawn(jobs, capacity);
  await executor.stop();
  claims.unsubscribe();
  peer.stop();
  sub.unsubscribe();
  await nc.close();
  await server.stop();
  tmp.remove();
  return {
    jobs,
    capacity,
    executor: { jobsPerSec: throughput, attemptDurationP50Ms: attemptP50 },
    bareSpawn: bare,
    dispatchToStartedAt50PerSec: { p50Ms: quantile(startedLatency, 0.5), p99Ms: quantile(startedLatency, 0.99) },
  };
}

if (require.main === module) {
  runSpawnBench({ jobs: Number(process.argv[2] ?? SPAWN_DEFAULTS.jobs), capacity: Number(process.argv[3] ?? SPAWN_DEFAULTS.capacity) }).then(
    (result) => console.log(JSON.stringify({ bench: 'executor-spawn', ...result })),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
