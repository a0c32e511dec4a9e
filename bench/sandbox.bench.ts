/**
 * The local sandbox (cgroup + namespaces + unprivileged user) against a bare spawn, with tiny jobs (`true`):
 *  - bare: child_process.spawn('true') → exit, at the given concurrency;
 *  - runner: SandboxRunner.launch → wait → dispose (cgroup created, limits written, namespaces, init, setpriv, cleanup);
 *  - executor: the same jobs through the Executor over NATS, every finished report stored.
 * The per-attempt overhead is the sandboxed p50 minus the bare p50. Needs root and cgroups;
 * elsewhere it says why and measures nothing.
 *
 *   npm run bench -- sandbox [--jobs=N] [--capacity=N]
 *   node dist/bench/sandbox.bench.js [jobs] [capacity]      (alone; prints one JSON line)
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { subjects, type AttemptReport, type RunAttemptMessage } from '../libs/contracts/src';
import { ensureStreams } from '../libs/messaging/src/streams';
import { startNatsServer } from '../libs/messaging/src/nats-server';
import { tempDir } from '../libs/testing/src/temp-dir';
import { Executor } from '../apps/executor/src/core/executor';
import type { ProcessRunner } from '../apps/executor/src/core/process-runner.port';
import { detectSandbox } from '../apps/executor/src/node/sandbox/detect';
import { SandboxRunner } from '../apps/executor/src/node/sandbox/sandbox-runner';
import { FileReportOutbox, outboxDir } from '../apps/executor/src/node/file-report-outbox';
import { OrchestratorPeer } from '../apps/executor/src/testing/orchestrator-peer';

const silent = { info: () => undefined, warn: () => undefined, error: (f: object, m: string) => console.error(m, f) };
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SandboxBenchOptions {
  /** Jobs per measurement (default 1,000). */
  jobs: number;
  /** Attempts at a time (default 4). */
  capacity: number;
}

export const SANDBOX_DEFAULTS: SandboxBenchOptions = { jobs: 1000, capacity: 4 };

function quantile(sorted: number[], q: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

/** Runs `one` jobs times with `concurrency` in flight; jobs/s and latency quantiles of one call. */
async function measure(jobs: number, concurrency: number, one: (i: number) => Promise<void>) {
  const times: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < jobs; i = next++) {
        const s = performance.now();
        await one(i);
        times.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return { jobsPerSec: Math.round(jobs / seconds), p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99) };
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.once('error', reject);
    child.once('close', () => resolve());
  });
}

async function runnerOnce(runner: ProcessRunner, id: string): Promise<void> {
  const proc = await runner.launch({ attemptId: id, argv: ['true'], env: { PATH }, resources: { cpu: 1, memoryMb: 256, pids: 64 } });
  const drain = async (s: AsyncIterable<Uint8Array>) => {
    for await (const _ of s) void _;
  };
  const [status] = await Promise.all([proc.wait(), drain(proc.stdout), drain(proc.stderr)]);
  await proc.dispose();
  if (status.exitCode !== 0) throw new Error(`sandboxed true exited ${status.exitCode}`);
}

export async function runSandboxBench(options: Partial<SandboxBenchOptions> = {}): Promise<object> {
  const { jobs, capacity } = { ...SANDBOX_DEFAULTS, ...options };
  const tmp = tempDir('jobline-bench-sandbox-');
  chmodSync(tmp.path, 0o755);
  const executorId = `bench${process.pid}`;
  const { runner, detection } = detectSandbox({ executorId, workRoot: join(tmp.path, 'work') });
  if (!(runner instanceof SandboxRunner)) {
    tmp.remove();
    return { jobs, capacity, skipped: `no sandbox on this host: ${detection.refused.join('; ')}` };
  }
  try {
    // Warm-up of both paths (page cache, first exec of each tool).
    await measure(50, capacity, () => spawnTrue());
    await measure(50, capacity, (i) => runnerOnce(runner, `warm-${i}`));
    const bare = await measure(jobs, capacity, () => spawnTrue());
    const sandboxed = await measure(jobs, capacity, (i) => runnerOnce(runner, `r-${i}`));
    const viaExecutor = await executorThroughput(runner, executorId, tmp.path, jobs, capacity);
    return {
      jobs,
      capacity,
      sandbox: detection.kind,
      note: detection.note ?? null,
      bareSpawn: bare,
      sandboxRunner: sandboxed,
      perAttemptOverheadP50Ms: Math.round((sandboxed.p50Ms - bare.p50Ms) * 100) / 100,
      executor: viaExecutor,
      target: { sandboxedJobsPerSec: 300 },
    };
  } finally {
    await runner.cleanupLeftovers();
    await runner.removeParent().catch(() => undefined);
    tmp.remove();
  }
}

/** Tiny jobs queued at once on one sandboxed executor, until every finished report is stored. */
async function executorThroughput(runner: SandboxRunner, executorId: string, dir: string, jobs: number, capacity: number) {
  const server = await startNatsServer({ storeDir: join(dir, 'nats') });
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  await ensureStreams(await jetstreamManager(nc));
  // The orchestrator's side of claims and leases, without an event store.
  const peer = new OrchestratorPeer({ nc }).start();
  const outbox = new FileReportOutbox(outboxDir(join(dir, 'outbox'), executorId));
  const executor = new Executor({ nc, executorId, runner, outbox, capacity, runtime: 'node bench', logger: silent });
  await executor.start();
  let finished = 0;
  let failed = 0;
  let onFinished: () => void = () => undefined;
  const sub = nc.subscribe(subjects.reportsAll);
  void (async () => {
    for await (const m of sub) {
      const r = m.json<AttemptReport>();
      if (r.kind !== 'finished') continue;
      finished++;
      if (r.exitCode !== 0) failed++;
      onFinished();
    }
  })();
  const dispatch = () => {
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId: randomUUID(),
      owner: 'bench',
      attempt: 1,
      spec: { command: ['true'], priority: 'normal' },
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
      // Everything is queued at once here (a scheduler would send no more than the free slots): no start deadline.
      startBy: new Date(Date.now() + 3_600_000).toISOString(),
    };
    return js.publish(subjects.work(executorId), JSON.stringify(msg));
  };
  const allFinished = (n: number) =>
    new Promise<void>((resolve) => {
      onFinished = () => finished >= n && resolve();
      onFinished();
    });
  try {
    const t0 = performance.now();
    for (let i = 0; i < jobs; i++) await dispatch();
    await allFinished(jobs);
    return { jobsPerSec: Math.round(jobs / ((performance.now() - t0) / 1000)), failed };
  } finally {
    await executor.stop();
    peer.stop();
    sub.unsubscribe();
    await nc.close();
    await server.stop();
  }
}

if (require.main === module) {
  runSandboxBench({ jobs: Number(process.argv[2] ?? SANDBOX_DEFAULTS.jobs), capacity: Number(process.argv[3] ?? SANDBOX_DEFAULTS.capacity) }).then(
    (result) => console.log(JSON.stringify({ bench: 'sandbox', ...result })),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
