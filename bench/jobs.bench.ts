/**
 * Tiny jobs (`true`) end to end through the whole system in one process (`startDevStack`:
 * nats-server child, orchestrator, SQLite event store and read model, one local executor),
 * submitted over NATS the way an integration does and observed on the bus:
 *  - throughput: N jobs published at once, until every JobCompleted is on the bus; then
 *    every job's history is checked in the store and the read model;
 *  - latency: jobs published at a steady rate, publish call → JobStarted received;
 *  - reference: a BullMQ queue + worker spawning the same command (see bullmq.reference.ts).
 * Both runs are made unsandboxed (what is compared with BullMQ) and with the executor's
 * sandbox on 'auto' (cgroups and namespaces, where the host allows them), each on a fresh stack.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { SubmitJobMessageSchema, jobStreamName, subjects, type SubmitJobMessage } from '../libs/contracts/src';
import { connectNats } from '../libs/messaging/src/connection';
import { JetStreamPublisher } from '../libs/messaging/src/publisher';
import { tempDir } from '../libs/testing/src/temp-dir';
import { startDevStack, type DevStack } from '../apps/cli/src/dev-stack';
import { startNodeExecutor, type NodeExecutorHandle } from '../apps/executor/src/node/main';
import { runBullmqReference, type BullmqReferenceResult } from './bullmq.reference';
import { perSecond, percentiles, progress, quietLogger, roundMs, sleepUntil, within, withDefaults, type Percentiles } from './bench-kit';

export interface JobsBenchOptions {
  /** Jobs of the throughput run (default 2,000). */
  jobs: number;
  /** Slots of the local executor, and the BullMQ worker's concurrency (default 8). */
  capacity: number;
  /** Submissions per second of the latency run (default 50). */
  ratePerSec: number;
  /** Length of the latency run in seconds (default 10). */
  seconds: number;
  /** Jobs run first on both systems, not measured (default 50). */
  warmupJobs: number;
  /**
   * Executor sandbox modes measured, each on a fresh stack (default both): 'none' is what
   * the BullMQ comparison uses, 'auto' sandboxes as far as the host allows.
   */
  sandboxModes: ('none' | 'auto')[];
  /** Skip the BullMQ reference. */
  noReference?: boolean;
  redisServer?: string;
}

export const JOBS_DEFAULTS: JobsBenchOptions = { jobs: 2000, capacity: 8, ratePerSec: 50, seconds: 10, warmupJobs: 50, sandboxModes: ['none', 'auto'] };

const BENCH = 'jobs';
const OWNER = 'bench';
const TERMINAL = new Set(['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut']);

export async function runJobsBench(options: Partial<JobsBenchOptions> = {}) {
  const o = withDefaults(JOBS_DEFAULTS, options);
  const unsandboxed = o.sandboxModes.includes('none') ? await measureJobline(o, 'none') : null;
  const sandboxed = o.sandboxModes.includes('auto') ? await measureJobline(o, 'auto') : null;

  let reference: BullmqReferenceResult;
  if (o.noReference) reference = { skipped: true, reason: 'not asked for (--no-reference)' };
  else {
    progress(BENCH, 'reference: BullMQ');
    reference = await runBullmqReference({ jobs: o.jobs, concurrency: o.capacity, warmupJobs: o.warmupJobs, redisServer: o.redisServer });
    if (reference.skipped) progress(BENCH, `reference skipped: ${reference.reason}`);
  }
  const vs = (ours: { throughput: { jobsPerSec: number } } | null) =>
    reference.skipped || !ours ? null : Math.round((ours.throughput.jobsPerSec / reference.jobsPerSec) * 100) / 100;
  return {
    executorCapacity: o.capacity,
    unsandboxed,
    sandboxed,
    reference,
    /** Unsandboxed jobs/s ÷ BullMQ's (DESIGN.md: ≥ 1.1). */
    jobsPerSecVsReference: vs(unsandboxed),
    sandboxedJobsPerSecVsReference: vs(sandboxed),
  };
}

/**
 * The dev stack without its own executor, plus the same local executor it would start
 * (startNodeExecutor, id 'local', work root in the data dir) with the sandbox mode chosen here.
 */
async function measureJobline(o: JobsBenchOptions, sandboxMode: 'none' | 'auto') {
  const label = `${BENCH} sandbox=${sandboxMode}`;
  const logger = quietLogger(label);
  const tmp = tempDir('jobline-bench-jobs-');
  // Searchable (not listable) by others, as a data dir under a home usually is: the
  // sandbox's unprivileged uid must reach its workspace below it.
  chmodSync(tmp.path, 0o711);
  let stack: DevStack | null = null;
  let executor: NodeExecutorHandle | null = null;
  let client: NatsConnection | null = null;
  try {
    progress(label, `starting the dev stack (executor capacity ${o.capacity})`);
    const dataDir = join(tmp.path, 'data');
    stack = await startDevStack({ dataDir, apiPort: false, executorCapacity: 0, logger });
    executor = await startNodeExecutor({
      nc: stack.nc,
      executorId: 'local',
      capacity: o.capacity,
      workRoot: join(dataDir, 'work'),
      ensureStreams: false,
      sandbox: sandboxMode,
      logger: {
        info: () => undefined,
        warn: (_fields, message) => logger.warn(`executor: ${message}`),
        error: (_fields, message) => logger.error(`executor: ${message}`),
      },
    });
    progress(label, `executor sandbox: ${executor.sandbox.kind}`);
    // A connection of its own, as an integration would have.
    client = await connectNats({ servers: stack.natsUrl, name: 'jobline-bench' });
    const bus = new BusWatcher(client);
    await client.flush();
    const publisher = new JetStreamPublisher(jetstream(client));

    progress(label, `warm-up: ${o.warmupJobs} jobs`);
    await submitBatch(publisher, bus, o.warmupJobs, 'warm-up');

    progress(label, `throughput: ${o.jobs} jobs`);
    const batch = await submitBatch(publisher, bus, o.jobs, 'throughput');
    progress(label, `throughput: ${batch.jobsPerSec} jobs/s; checking every history`);
    const history = await checkHistories(stack, batch.ids);

    const total = Math.round(o.ratePerSec * o.seconds);
    progress(label, `latency: ${total} jobs at ${o.ratePerSec}/s`);
    const latency = await pacedRun(publisher, bus, total, o.ratePerSec);

    bus.close();
    return {
      sandboxMode,
      /** As recorded in JobStarted. */
      sandbox: history.sandbox,
      throughput: {
        jobs: o.jobs,
        jobsPerSec: batch.jobsPerSec,
        totalMs: batch.totalMs,
        publishMs: batch.publishMs,
        failed: batch.failed,
        historiesComplete: history.complete,
        eventsPerJob: history.eventsPerJob,
        readModelSucceeded: history.readModelSucceeded,
      },
      latency,
      warnings: logger.warnings,
      errors: logger.errors,
    };
  } finally {
    await client?.close();
    await executor?.stop();
    await stack?.stop();
    tmp.remove();
  }
}

interface Tracked {
  sentAt: number;
  /** When each event type of the job was first seen on the bus. */
  seen: Map<string, number>;
  startedAt?: number;
  finishedAt?: number;
  finishedAs?: string;
}

/**
 * Everything the relay publishes, seen on a plain core-NATS subscription: the subject says
 * the job and the event type, so no payload is parsed on the measuring path.
 */
class BusWatcher {
  private readonly jobs = new Map<string, Tracked>();
  private finished = 0;
  private waiter: { count: number; resolve: () => void } | null = null;
  private readonly sub;

  constructor(nc: NatsConnection) {
    this.sub = nc.subscribe('jobline.evt.*.*', {
      callback: (err, msg) => {
        if (err) return progress(BENCH, `event subscription: ${err.message}`);
        const at = performance.now();
        const [, , jobId, type] = msg.subject.split('.');
        const t = this.jobs.get(jobId);
        if (!t) return;
        if (!t.seen.has(type)) t.seen.set(type, at);
        if (type === 'JobStarted') t.startedAt ??= at;
        else if (TERMINAL.has(type) && t.finishedAt === undefined) {
          t.finishedAt = at;
          t.finishedAs = type;
          this.finished++;
          if (this.waiter && this.finished >= this.waiter.count) this.waiter.resolve();
        }
      },
    });
  }

  track(jobId: string, sentAt: number): Tracked {
    const t: Tracked = { sentAt, seen: new Map() };
    this.jobs.set(jobId, t);
    return t;
  }

  /** Resolves once `count` tracked jobs (counted since the last reset) have finished. */
  finishedCount(count: number): Promise<void> {
    if (this.finished >= count) return Promise.resolve();
    return new Promise((resolve) => (this.waiter = { count, resolve }));
  }

  reset(): void {
    this.jobs.clear();
    this.finished = 0;
    this.waiter = null;
  }

  close(): void {
    this.sub.unsubscribe();
  }
}

const TINY_SPEC = { command: ['true'] };

function submission(jobId: string): SubmitJobMessage {
  return { jobId, spec: TINY_SPEC } as SubmitJobMessage;
}

async function submitBatch(publisher: JetStreamPublisher, bus: BusWatcher, n: number, label: string) {
  bus.reset();
  const ids = Array.from({ length: n }, () => randomUUID());
  // What goes on the wire is what an integration must send: check it once against the contract.
  SubmitJobMessageSchema.parse(submission(ids[0]));
  const items = ids.map((jobId) => ({ subject: subjects.submit(OWNER), payload: submission(jobId), msgId: jobId }));
  const t0 = performance.now();
  const tracked = ids.map((id) => bus.track(id, t0));
  await publisher.publishMany(items);
  const publishMs = performance.now() - t0;
  await within(bus.finishedCount(n), Math.max(60_000, n * 100), `${label}: ${n} jobs to finish`);
  const totalMs = Math.max(...tracked.map((t) => t.finishedAt ?? 0)) - t0;
  return {
    ids,
    jobsPerSec: perSecond(n, totalMs),
    totalMs: roundMs(totalMs),
    publishMs: roundMs(publishMs),
    failed: tracked.filter((t) => t.finishedAs !== 'JobCompleted').length,
  };
}

/** Every job's stream in the store ends JobCompleted(exit 0), and the read model says succeeded. */
async function checkHistories(stack: DevStack, ids: string[]) {
  let complete = 0;
  let events = 0;
  let sandbox: string | null = null;
  for (const id of ids) {
    const stream = await stack.eventStore.readStream(jobStreamName(id));
    events += stream.length;
    const types = stream.map((e) => e.type);
    const last = stream[stream.length - 1];
    const started = stream.find((e) => e.type === 'JobStarted');
    sandbox ??= ((started?.data as { sandbox?: string } | undefined)?.sandbox ?? null);
    const exitCode = (last?.data as { exitCode?: number } | undefined)?.exitCode;
    if (types[0] === 'JobSubmitted' && types.includes('JobStarted') && last?.type === 'JobCompleted' && exitCode === 0) complete++;
  }
  const head = await stack.eventStore.headPosition();
  const caughtUp = await stack.projection.waitForPosition(head, 30_000);
  if (!caughtUp) progress(BENCH, `the read model did not reach position ${head} in 30 s`);
  let readModelSucceeded = 0;
  for (const id of ids) if (stack.projection.get(id)?.status === 'succeeded') readModelSucceeded++;
  return { complete, eventsPerJob: Math.round((events / ids.length) * 100) / 100, readModelSucceeded, sandbox };
}

/**
 * `total` jobs published one every 1/rate s on an absolute schedule (no drift); latencies from the publish call.
 * Where the time goes, per job: the command's PubAck (stored in JetStream), the gaps between the
 * job's events on the bus, and what the process (orchestrator, executor and this benchmark share
 * it) spent: CPU per job and the event loop's utilisation over the run.
 */
async function pacedRun(
  publisher: JetStreamPublisher,
  bus: BusWatcher,
  total: number,
  ratePerSec: number,
): Promise<{
  ratePerSec: number;
  achievedRatePerSec: number;
  jobs: number;
  submitToStarted: Percentiles;
  submitToCompleted: Percentiles;
  /** Publish call → each event of the job on the bus: where the time goes. */
  submitToEvent: Record<string, { p50Ms: number; p99Ms: number }>;
  /** Per-job stages: publish → PubAck of the submit; JobSubmitted → JobDispatched and JobDispatched → JobStarted on the bus (claim and its relay). */
  stages: Record<'commandStored' | 'submittedToDispatched' | 'dispatchedToStarted' | 'startedToCompleted', { p50Ms: number; p99Ms: number }>;
  /** CPU (user + system) of this process per job over the run, and the event loop's busy share (0–1). */
  processCpuMsPerJob: number;
  eventLoopUtilization: number;
  failed: number;
}> {
  bus.reset();
  const interval = 1000 / ratePerSec;
  const tracked: Tracked[] = [];
  const stored: number[] = [];
  const acks: Promise<unknown>[] = [];
  const start = performance.now() + interval;
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  for (let i = 0; i < total; i++) {
    await sleepUntil(start + i * interval);
    const jobId = randomUUID();
    const t = bus.track(jobId, performance.now());
    tracked.push(t);
    acks.push(publisher.publish(subjects.submit(OWNER), submission(jobId), { msgId: jobId }).then(() => void (stored[i] = performance.now() - t.sentAt)));
  }
  const sentMs = tracked[tracked.length - 1].sentAt - tracked[0].sentAt;
  await Promise.all(acks);
  await within(bus.finishedCount(total), 60_000, 'latency run: jobs to finish');
  const cpu = process.cpuUsage(cpu0);
  const elu = performance.eventLoopUtilization(elu0);
  const p50p99 = (values: number[]) => {
    const p = percentiles(values.filter(Number.isFinite));
    return { p50Ms: p.p50Ms, p99Ms: p.p99Ms };
  };
  const gap = (from: string, to: string) => p50p99(tracked.map((t) => (t.seen.get(to) ?? NaN) - (t.seen.get(from) ?? NaN)));
  return {
    ratePerSec,
    achievedRatePerSec: perSecond(total - 1, sentMs),
    jobs: total,
    submitToStarted: percentiles(tracked.map((t) => (t.startedAt ?? NaN) - t.sentAt).filter(Number.isFinite)),
    submitToCompleted: percentiles(tracked.map((t) => (t.finishedAt ?? NaN) - t.sentAt)),
    submitToEvent: Object.fromEntries(
      ['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted'].map((type) => [type, p50p99(tracked.map((t) => (t.seen.get(type) ?? NaN) - t.sentAt))]),
    ),
    stages: {
      commandStored: p50p99(stored),
      submittedToDispatched: gap('JobSubmitted', 'JobDispatched'),
      dispatchedToStarted: gap('JobDispatched', 'JobStarted'),
      startedToCompleted: gap('JobStarted', 'JobCompleted'),
    },
    processCpuMsPerJob: Math.round(((cpu.user + cpu.system) / 1000 / total) * 1000) / 1000,
    eventLoopUtilization: Math.round(elu.utilization * 1000) / 1000,
    failed: tracked.filter((t) => t.finishedAs !== 'JobCompleted').length,
  };
}
