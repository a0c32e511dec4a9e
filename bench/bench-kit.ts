/**
 * What every benchmark shares: progress on stderr (stdout carries only results), a quiet
 * logger for the components under test, percentiles, pacing, and the machine description
 * attached to every result.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpus, freemem, release, totalmem, type as osType } from 'node:os';
import { findNatsServer } from '../libs/messaging/src/nats-server';
import type { Logger } from '../apps/orchestrator/src/logger';
import { encodeJobEvent, jobStreamName, type JobEvent } from '../libs/contracts/src';
import { decide, evolve, initialState, type Job, type JobCommand } from '../libs/domain/src';
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
    history.map((e) => encodeJobEvent(e, { ...envelope, id: randomUUID() })),
    'no_stream',
  );
  return history.length;
}
