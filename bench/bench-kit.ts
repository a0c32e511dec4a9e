/**
 * What every benchmark shares: progress on stderr (stdout carries only results), a quiet
 * logger for the components under test, percentiles, pacing, and the machine description
 * attached to every result.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, freemem, release, totalmem, type as osType } from 'node:os';
import { findNatsServer } from '../libs/messaging/src/nats-server';
import type { Logger } from '../apps/orchestrator/src/logger';
import { encodeJobEvent, jobStreamName, newTimeOrderedId, type JobEvent } from '../libs/contracts/src';
import { parseJobSpec } from '../libs/contracts/src';
import { decide, evolve, initialState, type Job, type JobCommand } from '../libs/domain/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../libs/event-store/src';
import type { EventStore } from '../libs/event-store/src/event-store.port';

/** Progress and diagnostics: stderr only, so stdout stays one JSON object per line. */
export function progress(bench: string, message: string): void {
  process.stderr.write(`[bench ${bench}] ${message}\n`);
}

/**
 * A logger for the system under test: its routine output is dropped (it would cost time and
 * bury the results), warnings and errors still reach stderr and are counted in the result.
 */
export function quietLogger(bench: string): Logger & { warnings: number; errors: number } {
  const logger = {
    warnings: 0,
    errors: 0,
    debug: () => undefined,
    log: () => undefined,
    warn: (message: string) => {
      logger.warnings++;
      progress(bench, `warn: ${message}`);
    },
    error: (message: string, ...rest: unknown[]) => {
      logger.errors++;
      progress(bench, `error: ${message}${rest.length ? ` ${rest.map(String).join(' ')}` : ''}`);
    },
  };
  return logger;
}

export interface Percentiles {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Nearest-rank percentiles of durations in ms, rounded to µs. */
export function percentiles(valuesMs: readonly number[]): Percentiles {
  const sorted = Float64Array.from(valuesMs).sort();
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]);
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return { count: sorted.length, p50Ms: round(at(0.5)), p90Ms: round(at(0.9)), p99Ms: round(at(0.99)), maxMs: round(at(1)) };
}

export const perSecond = (count: number, ms: number) => Math.round((count / ms) * 1000 * 10) / 10;
export const roundMs = (ms: number) => Math.round(ms * 10) / 10;
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Sleeps until performance.now() reaches `at` (timers wake a little late, never early). */
export async function sleepUntil(at: number): Promise<void> {
  for (let left = at - performance.now(); left > 0; left = at - performance.now()) await sleep(left);
}

/** Resolves with `promise`, or rejects with a clear message after timeoutMs. */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryTotalMb: number;
  memoryFreeMb: number;
  os: string;
  node: string;
  natsServer: string | null;
}

/** Where the figures were measured. */
export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryTotalMb: Math.round(totalmem() / 2 ** 20),
    memoryFreeMb: Math.round(freemem() / 2 ** 20),
    os: `${osType()} ${release()}`,
    node: process.version,
    natsServer: binaryVersion(findNatsServer(), ['--version']),
  };
}

/** The first line a binary prints for its version flag, or null if it cannot be run. */
export function binaryVersion(bin: string | null, args: string[]): string | null {
  if (!bin) return null;
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 5000 });
  if (r.status !== 0) return null;
  return (r.stdout || r.stderr).trim().split('\n')[0] ?? null;
}

/** The path of `name` on PATH, or null. */
export function onPath(name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  const found = r.stdout.trim();
  return r.status === 0 && found ? found : null;
}

/** `defaults` overridden by the options that are set (an option given as undefined keeps its default). */
export function withDefaults<T extends object>(defaults: T, options: Partial<T>): T {
  const set = Object.entries(options).filter(([, v]) => v !== undefined);
  return { ...defaults, ...Object.fromEntries(set) } as T;
}

/**
 * One job's history, decided command by command by the real decider on the folded state and
 * appended at once as a new stream: how the store benchmarks fill a store fast. Returns the
 * number of events.
 */
export async function storeHistory(store: EventStore, jobId: string, commands: JobCommand[], now: string): Promise<number> {
  let job: Job = initialState();
  const history: JobEvent[] = [];
  for (const c of commands) {
    for (const e of decide(c, job)) {
      history.push(e);
      job = evolve(job, e);
    }
  }
  const envelope = { jobId, occurredAt: now, actor: 'bench', causationId: 'bench', correlationId: jobId };
  await store.appendToStream(
    jobStreamName(jobId),
    history.map((e) => encodeJobEvent(e, { ...envelope, id: newTimeOrderedId() })),
    'no_stream',
  );
  return history.length;
}

/** User + system CPU time of a process (Linux /proc; NaN where it cannot be read), in ms. */
export function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) in clock ticks, 100 per second on Linux.
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/**
 * CPU time used so far by the living children of a process (Linux /proc), in ms, leaving out the
 * pids in `except`: the executor's launchers, which fork every job. A child that has already exited
 * (a job's `true`) is in no figure, as in the reference's.
 */
export function childrenCpuMs(pid: number, except: number[] = []): number {
  let sum = 0;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return NaN;
  }
  for (const tid of tasks) {
    let children: string;
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean).map(Number)) {
      if (except.includes(child)) continue;
      const ms = procCpuMs(child);
      if (Number.isFinite(ms)) sum += ms;
    }
  }
  return sum;
}

/** CPU time used so far by this process (user + system), in ms. */
export function ownCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** A SQLite store filled ahead of a run (events.db and checkpoints.db in `dir`), and what the fill took. */
export interface StoreFill {
  dir: string;
  events: number;
  jobs: number;
  fillMs: number;
  fillEventsPerSec: number;
}

const HISTORY_SPEC = (() => {
  const parsed = parseJobSpec({ command: ['true'] });
  if (!parsed.ok) throw new Error(`bad bench spec: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
})();

/** The SQLite files a store is (the write-ahead logs too, when a file was left with one). */
const STORE_FILES = ['events.db', 'events.db-wal', 'checkpoints.db', 'checkpoints.db-wal'];

/**
 * At least `events` events of finished jobs (owner `history` unless `options.owner`; nine in ten
 * succeed, one in ten exits 1), each job's commands decided by the real decider and appended at
 * once (storeHistory), one second of submission time apart, the last `options.openJobs` (default
 * 0) only submitted (left queued); then the relay's checkpoint is set to the head, as if it had
 * published all of it. The store is closed (its write-ahead log folded in) on return.
 */
export async function fillStore(dir: string, events: number, bench: string, options: { openJobs?: number; owner?: string } = {}): Promise<StoreFill> {
  const openJobs = options.openJobs ?? 0;
  const owner = options.owner ?? 'history';
  mkdirSync(dir, { recursive: true });
  const store = new SqliteEventStore({ path: join(dir, 'events.db') });
  const t0 = performance.now();
  let stored = 0;
  let jobs = 0;
  try {
    const base = Date.UTC(2026, 0, 1);
    let lastReport = 0;
    while (stored < events) {
      const jobId = randomUUID();
      const now = new Date(base + jobs * 1000).toISOString();
      const exitCode = jobs % 10 === 9 ? 1 : 0;
      const submit: JobCommand = { type: 'SubmitJob', data: { jobId, owner, spec: HISTORY_SPEC, now } };
      // The last openJobs jobs (two events each) are only submitted: queued, open in the lifecycle.
      const open = events - stored <= openJobs * 2;
      stored += await storeHistory(
        store,
        jobId,
        open
          ? [submit]
          : [
              submit,
              { type: 'DispatchJob', data: { attempt: 1, executorId: 'local', now } },
              { type: 'RecordStarted', data: { attempt: 1, executorId: 'local', startedAt: now, sandbox: 'none' } },
              { type: 'RecordFinished', data: { attempt: 1, exitCode, signal: null, oomKilled: false, durationMs: 2, finishedAt: now, usage: null, logBytes: 0 } },
            ],
        now,
      );
      jobs++;
      if (stored - lastReport >= 200_000) {
        lastReport = stored;
        progress(bench, `${stored} of ${events} events stored`);
      }
    }
    const checkpoints = new SqliteCheckpointStore({ path: join(dir, 'checkpoints.db') });
    await checkpoints.save('relay', await store.headPosition());
    await checkpoints.close();
  } finally {
    await store.close();
  }
  const fillMs = performance.now() - t0;
  return { dir, events: stored, jobs, fillMs: roundMs(fillMs), fillEventsPerSec: perSecond(stored, fillMs) };
}

/** Copies a filled store into a data folder (before the services open it). */
export function copyStore(fill: StoreFill, toDir: string): void {
  mkdirSync(toDir, { recursive: true });
  for (const f of STORE_FILES) if (existsSync(join(fill.dir, f))) copyFileSync(join(fill.dir, f), join(toDir, f));
}
