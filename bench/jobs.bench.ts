/**
 * Tiny jobs (`true`) end to end through the whole system, submitted over NATS the way an
 * integration does and observed on the bus:
 *  - throughput: N jobs published at once, until every JobCompleted is on the bus; then
 *    every job's history is checked in the store and the read model;
 *  - latency: jobs published at a steady rate, publish call → JobStarted received;
 *  - reference: a BullMQ queue + worker spawning the same command (see bullmq.reference.ts).
 * In either topology: `dev`, the whole system in one process (startDevStack: nats-server child,
 * orchestrator, SQLite event store and read model, one local executor), or `processes`, the
 * deployed system as separate OS processes (nats-server from deploy/nats/jobline.conf, then
 * `jobline orchestrator`, `jobline executor` and `jobline api` from the built CLI with the
 * JOBLINE_* variables of deploy/README.md, started by the production-topology test's
 * startTopology). And on an empty store or one pre-filled with N events of finished jobs
 * (fillStore: real decider histories, filled once before any stack starts, copied into each
 * run's data folder; the fill is reported apart and is not in any figure).
 * Each run is made unsandboxed (what is compared with BullMQ) and with the executor's sandbox
 * on 'auto' (cgroups and namespaces, where the host allows them), each on a fresh stack.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { SubmitJobMessageSchema, jobStreamName, subjects, type SubmitJobMessage } from '../libs/contracts/src';
import { SqliteEventStore, type RecordedEvent } from '../libs/event-store/src';
import { connectNats } from '../libs/messaging/src/connection';
import { hopMarks } from '../libs/messaging/src/hop-marks';
import { JetStreamPublisher } from '../libs/messaging/src/publisher';
import { tempDir } from '../libs/testing/src/temp-dir';
import { startDevStack } from '../apps/cli/src/dev-stack';
import { DEFAULT_TIMINGS, startTopology, topologyUnavailable, type Topology } from '../test/e2e/topology/topology';
import { runBullmqReference, type BullmqReferenceResult } from './bullmq.reference';
import {
  childrenCpuMs,
  copyStore,
  fillStore,
  ownCpuMs,
  perSecond,
  percentiles,
  procCpuMs,
  progress,
  quietLogger,
  roundMs,
  sleep,
  sleepUntil,
  within,
  withDefaults,
  type Percentiles,
  type StoreFill,
} from './bench-kit';

export type JobsTopology = 'dev' | 'processes';

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
  /** Topologies measured (default dev): one process, or the services as separate processes. */
  topologies: JobsTopology[];
  /** Events stored before each stack starts, one run per count (default [0], an empty store). */
  historyEvents: number[];
  /** Times each topology's runs are made (default 1); the history order alternates round by round. */
  rounds: number;
  /** Skip the BullMQ reference. */
  noReference?: boolean;
  redisServer?: string;
  /** With --topology=processes: V8 CPU profiles of the orchestrator, executor and api processes, into DIR/<service>. */
  cpuProfDir?: string;
}

export const JOBS_DEFAULTS: JobsBenchOptions = {
  jobs: 2000,
  capacity: 8,
  ratePerSec: 50,
  seconds: 10,
  warmupJobs: 50,
  sandboxModes: ['none', 'auto'],
  topologies: ['dev'],
  historyEvents: [0],
  rounds: 1,
};

const BENCH = 'jobs';
const OWNER = 'bench';
const TERMINAL = new Set(['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut']);

type Measured = Awaited<ReturnType<typeof measureJobline>>;

export async function runJobsBench(options: Partial<JobsBenchOptions> = {}) {
  const o = withDefaults(JOBS_DEFAULTS, options);
  if (o.topologies.includes('processes')) {
    const why = topologyUnavailable();
    if (why) throw new Error(`the processes topology cannot run here: ${why}`);
  }
  const tmp = tempDir('jobline-bench-jobs-fill-');
  const references: { round: number; result: BullmqReferenceResult }[] = [];
  const reference = async (round: number) => {
    progress(BENCH, `reference: BullMQ${o.rounds > 1 ? ` (round ${round})` : ''}`);
    const result = await runBullmqReference({ jobs: o.jobs, concurrency: o.capacity, warmupJobs: o.warmupJobs, redisServer: o.redisServer });
    if (result.skipped) progress(BENCH, `reference skipped: ${result.reason}`);
    else progress(BENCH, `reference: ${result.jobsPerSec} jobs/s, ${result.cpuMsPerJob} ms CPU per job`);
    return { round, result };
  };
  const runs: {
    topology: JobsTopology;
    round: number;
    /** The pre-filled store, or null for an empty one. */
    history: Omit<StoreFill, 'dir'> | null;
    unsandboxed: Measured | null;
    sandboxed: Measured | null;
  }[] = [];
  try {
    // Every store is filled before any stack runs: the fill's own load is over by the first measurement.
    const fills = new Map<number, StoreFill>();
    for (const n of o.historyEvents.filter((n) => n > 0)) {
      if (fills.has(n)) continue;
      progress(BENCH, `filling a store with ${n} events (not measured)`);
      const fill = await fillStore(join(tmp.path, `history-${n}`), n, BENCH);
      progress(BENCH, `stored ${fill.events} events (${fill.jobs} jobs) in ${Math.round(fill.fillMs / 1000)} s`);
      fills.set(n, fill);
    }
    const histories = [...new Set(o.historyEvents)];
    for (const [t, topology] of o.topologies.entries()) {
      for (let round = 1; round <= o.rounds; round++) {
        const byHistory = new Map<number, { unsandboxed: Measured | null; sandboxed: Measured | null }>(histories.map((n) => [n, { unsandboxed: null, sandboxed: null }]));
        // The stored histories back to back for each sandbox mode, in turn first and last
        // round by round (ABBA), so that neither gains from coming later (a warmer JIT) or loses to a passing load.
        const order = round % 2 === 1 ? histories : [...histories].reverse();
        // The BullMQ reference runs once in each round of the first topology (the one it is compared
        // with), after our runs in odd rounds and before them in even ones.
        const withReference = t === 0 && !o.noReference;
        if (withReference && round % 2 === 0) references.push(await reference(round));
        for (const mode of o.sandboxModes) {
          for (const n of order) byHistory.get(n)![mode === 'none' ? 'unsandboxed' : 'sandboxed'] = await measureJobline(o, topology, mode, fills.get(n) ?? null);
        }
        if (withReference && round % 2 === 1) references.push(await reference(round));
        for (const [n, r] of byHistory) {
          const fill = fills.get(n);
          runs.push({ topology, round, history: fill ? { events: fill.events, jobs: fill.jobs, fillMs: fill.fillMs, fillEventsPerSec: fill.fillEventsPerSec } : null, ...r });
        }
      }
    }
  } finally {
    tmp.remove();
  }

  const measuredReferences = references.flatMap((r) => (r.result.skipped ? [] : [{ round: r.round, ...r.result }]));
  const skipped = references.find((r) => r.result.skipped)?.result;
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
  const referenceOfRound = (round: number) => measuredReferences.find((r) => r.round === round) ?? null;
  // Each run against the reference of its own round.
  const vs = (ours: Measured | null, round: number) => {
    const ref = referenceOfRound(round);
    return ref && ours ? ratio(ours.throughput.jobsPerSec, ref.jobsPerSec) : null;
  };
  // What the target is judged on: the first run's figure (the first topology, the first history count), the median over the rounds.
  const firstOf = runs.filter((r) => r.topology === runs[0]?.topology && r.history?.events === runs[0]?.history?.events);
  const oursMedian = median(firstOf.flatMap((r) => (r.unsandboxed ? [r.unsandboxed.throughput.jobsPerSec] : [])));
  const oursCpuMedian = median(firstOf.flatMap((r) => (r.unsandboxed ? [r.unsandboxed.throughput.cpuMsPerJob] : [])));
  const refMedian = median(measuredReferences.map((r) => r.jobsPerSec));
  const refCpuMedian = median(measuredReferences.map((r) => r.cpuMsPerJob));
  const first = runs[0];
  return {
    executorCapacity: o.capacity,
    /** The first run's (the first topology, the first history count, round 1). */
    unsandboxed: first?.unsandboxed ?? null,
    sandboxed: first?.sandboxed ?? null,
    runs: runs.map((r) => ({ ...r, jobsPerSecVsReference: vs(r.unsandboxed, r.round), sandboxedJobsPerSecVsReference: vs(r.sandboxed, r.round) })),
    history: historyRatios(runs),
    /** The reference of round 1 (or why it was skipped); `rounds`: every round's. */
    reference: (measuredReferences[0] ?? skipped ?? { skipped: true, reason: 'not asked for (--no-reference)' }) as BullmqReferenceResult,
    references: measuredReferences,
    /**
     * Our unsandboxed jobs/s ÷ BullMQ's (DESIGN.md: ≥ 1.1): the medians over the rounds of the first
     * topology's first history count; `ByRound`: each round's own ratio.
     */
    jobsPerSecVsReference: measuredReferences.length && Number.isFinite(oursMedian) ? ratio(oursMedian, refMedian) : null,
    jobsPerSecVsReferenceByRound: firstOf.map((r) => vs(r.unsandboxed, r.round)),
    /** The same medians' CPU per job, ours ÷ BullMQ's (below 1: less CPU per job than the reference). */
    cpuMsPerJobVsReference: measuredReferences.length && Number.isFinite(oursCpuMedian) ? Math.round((oursCpuMedian / refCpuMedian) * 100) / 100 : null,
    sandboxedJobsPerSecVsReference: vs(first?.sandboxed ?? null, first?.round ?? 1),
  };
}

/** The median of the finite values (NaN for none). */
function median(xs: number[]): number {
  const v = xs.filter(Number.isFinite).sort((x, y) => x - y);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * Each filled store against the empty one of the same topology and sandbox mode (DESIGN.md:
 * within 10%): the ratio of the medians over the rounds, and each round's own ratio (its range).
 */
function historyRatios(runs: { topology: JobsTopology; round: number; history: { events: number } | null; unsandboxed: Measured | null; sandboxed: Measured | null }[]) {
  const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? Math.round((a / b) * 1000) / 1000 : null);
  const figures = {
    jobsPerSec: (m: Measured) => m.throughput.jobsPerSec,
    cpuMsPerJob: (m: Measured) => m.throughput.cpuMsPerJob,
    submitToStartedP50: (m: Measured) => m.latency.submitToStarted.p50Ms,
    submitToStartedP99: (m: Measured) => m.latency.submitToStarted.p99Ms,
  };
  const out = [];
  const topologies = [...new Set(runs.map((r) => r.topology))];
  const counts = [...new Set(runs.flatMap((r) => (r.history ? [r.history.events] : [])))];
  for (const topology of topologies) {
    for (const mode of ['unsandboxed', 'sandboxed'] as const) {
      const of = (events: number | null) => runs.filter((r) => r.topology === topology && (r.history?.events ?? null) === events && r[mode]).map((r) => ({ round: r.round, m: r[mode]! }));
      const empty = of(null);
      if (empty.length === 0) continue;
      for (const events of counts) {
        const full = of(events);
        if (full.length === 0) continue;
        const entry: Record<string, unknown> = { topology, sandboxMode: full[0].m.sandboxMode, events, rounds: full.length };
        for (const [name, f] of Object.entries(figures)) {
          entry[`${name}Ratio`] = ratio(median(full.map((x) => f(x.m))), median(empty.map((x) => f(x.m))));
          entry[`${name}RatioByRound`] = full.map((x) => {
            const e = empty.find((y) => y.round === x.round);
            return e ? ratio(f(x.m), f(e.m)) : null;
          });
        }
        out.push(entry as {
          topology: JobsTopology;
          sandboxMode: 'none' | 'auto';
          events: number;
          rounds: number;
          jobsPerSecRatio: number | null;
          cpuMsPerJobRatio: number | null;
          submitToStartedP50Ratio: number | null;
          submitToStartedP99Ratio: number | null;
          jobsPerSecRatioByRound: (number | null)[];
          submitToStartedP99RatioByRound: (number | null)[];
        });
      }
    }
  }
  return out;
}

/** What a measurement needs of a running system, whichever its topology. */
interface SystemUnderTest {
  /** A NATS connection of the bench's own, as an integration would have. */
  connect(): Promise<NatsConnection>;
  readStream(jobId: string): Promise<RecordedEvent[]>;
  /** How many of the jobs the read model shows succeeded, once it has caught up (or after 30 s). */
  readModelSucceeded(ids: string[]): Promise<number>;
  /**
   * CPU time (user + system) used so far by each process of the system and by this one (`bench`),
   * in ms; `launcher`: the executor's living children (its launchers), not the jobs that have ended.
   */
  cpuMs(): Record<string, number>;
  /** Warnings and errors the services logged. */
  problems(): { warnings: number; errors: number };
  stop(): Promise<void>;
}

async function measureJobline(o: JobsBenchOptions, topology: JobsTopology, sandboxMode: 'none' | 'auto', fill: StoreFill | null) {
  const label = `${BENCH} ${topology} sandbox=${sandboxMode} history=${fill?.events ?? 0}`;
  const tmp = tempDir('jobline-bench-jobs-');
  let system: SystemUnderTest | null = null;
  let client: NatsConnection | null = null;
  try {
    progress(label, `starting (executor capacity ${o.capacity})`);
    const t0 = performance.now();
    system = topology === 'dev' ? await startDevSystem(o, label, sandboxMode, tmp.path, fill) : await startProcessesSystem(o, sandboxMode, tmp.path, fill);
    const startMs = roundMs(performance.now() - t0);
    progress(label, `started in ${startMs} ms`);
    client = await system.connect();
    const bus = new BusWatcher(client);
    await client.flush();
    const publisher = new JetStreamPublisher(jetstream(client));

    progress(label, `warm-up: ${o.warmupJobs} jobs`);
    await submitBatch(publisher, bus, o.warmupJobs, 'warm-up');

    progress(label, `throughput: ${o.jobs} jobs`);
    const cpu0 = system.cpuMs();
    const batch = await submitBatch(publisher, bus, o.jobs, 'throughput');
    const cpu1 = system.cpuMs();
    const perJob = (ms: number) => Math.round((ms / o.jobs) * 1000) / 1000;
    const cpuMsPerJobByProcess = Object.fromEntries(Object.keys(cpu1).map((k) => [k, perJob(cpu1[k] - cpu0[k])]));
    const cpuMs = Object.keys(cpu1).reduce((sum, k) => sum + cpu1[k] - cpu0[k], 0);
    progress(label, `throughput: ${batch.jobsPerSec} jobs/s; checking every history`);
    const history = await checkHistories(system, batch.ids);

    const total = Math.round(o.ratePerSec * o.seconds);
    progress(label, `latency: ${total} jobs at ${o.ratePerSec}/s`);
    const latency = await pacedRun(publisher, bus, total, o.ratePerSec);

    bus.close();
    return {
      topology,
      sandboxMode,
      /** As recorded in JobStarted. */
      sandbox: history.sandbox,
      /** Events in the store before the stack started. */
      historyEvents: fill?.events ?? 0,
      /** Start → ready of the whole system (with a filled store: the folds and the read model catching up). */
      startMs,
      throughput: {
        jobs: o.jobs,
        jobsPerSec: batch.jobsPerSec,
        totalMs: batch.totalMs,
        publishMs: batch.publishMs,
        /** CPU time of every process of the system (and of the bench's client) over the run, per job. */
        cpuMsPerJob: perJob(cpuMs),
        /** The same by process (dev: `bench` is the whole stack but nats-server, with the bench's client). */
        cpuMsPerJobByProcess,
        failed: batch.failed,
        historiesComplete: history.complete,
        eventsPerJob: history.eventsPerJob,
        readModelSucceeded: history.readModelSucceeded,
      },
      latency,
      ...system.problems(),
    };
  } finally {
    await client?.close();
    await system?.stop();
    tmp.remove();
  }
}

/**
 * `jobline dev` as it runs: startDevStack with the capacity and sandbox mode as
 * JOBLINE_EXECUTOR_CAPACITY and JOBLINE_SANDBOX (the local executor on its thread, id 'local',
 * work root in the data dir), no api.
 */
async function startDevSystem(o: JobsBenchOptions, label: string, sandboxMode: 'none' | 'auto', root: string, fill: StoreFill | null): Promise<SystemUnderTest> {
  const logger = quietLogger(label);
  // Searchable (not listable) by others, as a data dir under a home usually is: the
  // sandbox's unprivileged uid must reach its workspace below it.
  chmodSync(root, 0o711);
  const dataDir = join(root, 'data');
  if (fill) copyStore(fill, dataDir);
  const stack = await startDevStack({ dataDir, apiPort: false, executorCapacity: o.capacity, env: { JOBLINE_SANDBOX: sandboxMode }, logger });
  progress(label, `executor sandbox: ${stack.executors?.sandbox?.kind}`);
  const s = stack;
  const natsPid = Number(readFileSync(join(dataDir, 'nats-server.pid'), 'utf8').trim());
  return {
    connect: () => connectNats({ servers: s.natsUrl, name: 'jobline-bench' }),
    readStream: (id) => s.eventStore.readStream(jobStreamName(id)),
    readModelSucceeded: async (ids) => {
      const head = await s.eventStore.headPosition();
      if (!(await s.projection.waitForPosition(head, 30_000))) progress(BENCH, `the read model did not reach position ${head} in 30 s`);
      return ids.filter((id) => s.projection.get(id)?.status === 'succeeded').length;
    },
    cpuMs: () => ({ bench: ownCpuMs(), 'nats-server': procCpuMs(natsPid), launcher: childrenCpuMs(process.pid, [natsPid]) }),
    problems: () => ({ warnings: logger.warnings, errors: logger.errors }),
    stop: () => s.stop(),
  };
}

/**
 * The deployed system: nats-server, `jobline orchestrator`, `jobline executor` and `jobline api`
 * as processes of their own, from the built CLI and the variables of deploy/README.md (the
 * production-topology test's startTopology, with the timings at their defaults), the executor's
 * capacity and sandbox through JOBLINE_EXECUTOR_CAPACITY and JOBLINE_SANDBOX. The store is
 * SQLite, shared by the api and the orchestrator as the deploy guide says for one machine; the
 * read model is the api's, asked over REST.
 */
/** Node options making a service write a V8 CPU profile into its own folder of --cpu-prof-dir when it exits. */
function profileArgs(o: JobsBenchOptions, service: string): string[] {
  return o.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(o.cpuProfDir, service)}`] : [];
}

async function startProcessesSystem(o: JobsBenchOptions, sandboxMode: 'none' | 'auto', root: string, fill: StoreFill | null): Promise<SystemUnderTest> {
  const t: Topology<'orchestrator' | 'executor' | 'api'> = await startTopology(
    root,
    { kind: 'sqlite' },
    {
      services: ['orchestrator', 'executor', 'api'],
      timings: DEFAULT_TIMINGS,
      extraEnv: { executor: { JOBLINE_EXECUTOR_CAPACITY: String(o.capacity), JOBLINE_SANDBOX: sandboxMode } },
      nodeArgs: { orchestrator: profileArgs(o, 'orchestrator'), executor: profileArgs(o, 'executor'), api: profileArgs(o, 'api') },
      beforeStart: (layout) => {
        if (fill) copyStore(fill, layout.dataDirs.orchestrator);
      },
      // With a filled store the orchestrator folds all of it before it is ready (no lifecycle snapshot yet): minutes on a loaded machine.
      readyTimeoutMs: 10 * 60_000,
    },
  );
  const store = new SqliteEventStore({ path: join(t.layout.dataDirs.orchestrator, 'events.db') });
  const status = async (id: string) => {
    const res = await fetch(`${t.apiUrl}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${t.adminToken}` } });
    if (res.status !== 200) return `HTTP ${res.status}`;
    return ((await res.json()) as { status: string }).status;
  };
  return {
    connect: () => connectNats({ servers: `nats://127.0.0.1:${t.layout.natsPort}`, name: 'jobline-bench', user: 'jobline', pass: t.layout.natsPassword }),
    readStream: (id) => store.readStream(jobStreamName(id)),
    readModelSucceeded: async (ids) => {
      // The api's read model follows the store by polling it: give it time to catch up.
      const deadline = performance.now() + 30_000;
      let pending = ids;
      for (;;) {
        const statuses = await Promise.all(pending.map(status));
        pending = pending.filter((_, i) => statuses[i] !== 'succeeded');
        if (pending.length === 0 || performance.now() > deadline) break;
        await sleep(200);
      }
      if (pending.length) progress(BENCH, `the api's read model shows ${pending.length} jobs not succeeded after 30 s`);
      return ids.length - pending.length;
    },
    cpuMs: () => {
      const executor = t.all().find((p) => p.name === 'executor');
      return {
        bench: ownCpuMs(),
        ...Object.fromEntries(t.all().map((p) => [p.name, p.pid ? procCpuMs(p.pid) : NaN])),
        launcher: executor?.pid ? childrenCpuMs(executor.pid) : NaN,
      };
    },
    problems: () => countLogProblems(join(t.layout.root, 'logs')),
    stop: async () => {
      await store.close();
      const codes = await t.stop();
      const bad = Object.entries(codes).filter(([, c]) => c !== 0);
      if (bad.length) progress(BENCH, `processes that did not stop cleanly: ${bad.map(([n, c]) => `${n} (${c})`).join(', ')}`);
    },
  };
}

/** Warnings and errors in the services' JSON logs (pino levels 40 and 50+). */
function countLogProblems(dir: string): { warnings: number; errors: number } {
  let warnings = 0;
  let errors = 0;
  for (const f of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      const m = /"level":(\d+)/.exec(line);
      if (!m) continue;
      const level = Number(m[1]);
      if (level === 40) warnings++;
      else if (level >= 50) errors++;
    }
  }
  return { warnings, errors };
}

interface Tracked {
  sentAt: number;
  /** When each event type of the job was first seen on the bus. */
  seen: Map<string, number>;
  startedAt?: number;
  finishedAt?: number;
  finishedAs?: string;
  /** Dev topology, latency run: when each step of the job was first taken in-process (hop-marks.ts). */
  hops?: Map<string, number>;
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
async function checkHistories(system: SystemUnderTest, ids: string[]) {
  let complete = 0;
  let events = 0;
  let sandbox: string | null = null;
  for (const id of ids) {
    const stream = await system.readStream(id);
    events += stream.length;
    const types = stream.map((e) => e.type);
    const last = stream[stream.length - 1];
    const started = stream.find((e) => e.type === 'JobStarted');
    sandbox ??= ((started?.data as { sandbox?: string } | undefined)?.sandbox ?? null);
    const exitCode = (last?.data as { exitCode?: number } | undefined)?.exitCode;
    if (types[0] === 'JobSubmitted' && types.includes('JobStarted') && last?.type === 'JobCompleted' && exitCode === 0) complete++;
  }
  const readModelSucceeded = await system.readModelSucceeded(ids);
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
  /**
   * Dev topology only (empty otherwise): publish call → each step taken in-process (hop-marks.ts),
   * in the order of their p50: the command at the orchestrator, its append, the dispatch's append,
   * each relay batch out and acked by event type, the run order at the executor, its claim, the
   * claim at the orchestrator, the grant, the launch.
   */
  hops: Record<string, { p50Ms: number; p99Ms: number }>;
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
  // In the dev topology every service runs here: their steps are timed in-process (none in the processes topology).
  const byId = new Map<string, Tracked>();
  hopMarks.record = (jobId, step) => {
    const hops = byId.get(jobId)?.hops;
    if (hops && !hops.has(step)) hops.set(step, performance.now());
  };
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  for (let i = 0; i < total; i++) {
    await sleepUntil(start + i * interval);
    const jobId = randomUUID();
    const t = bus.track(jobId, performance.now());
    t.hops = new Map();
    byId.set(jobId, t);
    tracked.push(t);
    acks.push(publisher.publish(subjects.submit(OWNER), submission(jobId), { msgId: jobId }).then(() => void (stored[i] = performance.now() - t.sentAt)));
  }
  const sentMs = tracked[tracked.length - 1].sentAt - tracked[0].sentAt;
  await Promise.all(acks);
  await within(bus.finishedCount(total), 60_000, 'latency run: jobs to finish').finally(() => void (hopMarks.record = null));
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
    hops: hopsOf(tracked),
    processCpuMsPerJob: Math.round(((cpu.user + cpu.system) / 1000 / total) * 1000) / 1000,
    eventLoopUtilization: Math.round(elu.utilization * 1000) / 1000,
    failed: tracked.filter((t) => t.finishedAs !== 'JobCompleted').length,
  };
}

/** Publish call → each in-process step (p50/p99 over the jobs that took it), steps ordered by p50. */
function hopsOf(tracked: Tracked[]): Record<string, { p50Ms: number; p99Ms: number }> {
  const steps = new Set<string>();
  for (const t of tracked) for (const k of t.hops?.keys() ?? []) steps.add(k);
  const rows = [...steps].map((step) => {
    const p = percentiles(tracked.map((t) => (t.hops?.get(step) ?? NaN) - t.sentAt).filter(Number.isFinite));
    return [step, { p50Ms: p.p50Ms, p99Ms: p.p99Ms }] as const;
  });
  return Object.fromEntries(rows.sort((a, b) => a[1].p50Ms - b[1].p50Ms));
}
