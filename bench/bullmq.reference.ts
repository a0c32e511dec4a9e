/**
 * The reference of the tiny-jobs target (DESIGN.md "Targets"): a BullMQ queue and worker in
 * one process, the worker spawning the same `true` command our executor runs, against a
 * redis-server started here on a free loopback port (no persistence) and stopped after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { freePort } from '../libs/messaging/src/free-port';
import { tempDir } from '../libs/testing/src/temp-dir';
import { binaryVersion, onPath, ownCpuMs, perSecond, procCpuMs, progress, roundMs, within } from './bench-kit';

export interface BullmqReferenceOptions {
  jobs: number;
  /** Worker concurrency (the same as our executor's capacity). */
  concurrency: number;
  warmupJobs: number;
  /** redis-server binary; default: found on PATH. */
  redisServer?: string;
}

export type BullmqReferenceResult =
  | { skipped: true; reason: string }
  | {
      skipped: false;
      bullmq: string;
      redisServer: string | null;
      /** The Redis client BullMQ used. */
      redisClient: string;
      jobs: number;
      concurrency: number;
      jobsPerSec: number;
      /** CPU time of this process (queue, worker, spawns) and of redis-server over the throughput run, per job. */
      cpuMsPerJob: number;
      cpuMsPerJobByProcess: { bullmq: number; 'redis-server': number };
      totalMs: number;
      addBulkMs: number;
      failed: number;
    };

const BENCH = 'jobs/bullmq';

export async function runBullmqReference(o: BullmqReferenceOptions): Promise<BullmqReferenceResult> {
  const bin = o.redisServer ?? onPath('redis-server');
  if (!bin) return { skipped: true, reason: 'no redis-server binary found on PATH (set REDIS_SERVER_BIN to use one elsewhere)' };
  let bullmq: typeof import('bullmq');
  try {
    bullmq = await import('bullmq');
  } catch (err) {
    return { skipped: true, reason: `bullmq cannot be loaded (npm install --save-dev bullmq): ${(err as Error).message}` };
  }
  const bullmqVersion = packageVersion('bullmq') ?? 'unknown';

  const tmp = tempDir('jobline-bench-redis-');
  let redis: RunningRedis | null = null;
  // Closed in this order: the worker, the queue, then the clients handed to them.
  const closers: (() => Promise<unknown>)[] = [];
  try {
    redis = await startRedis(bin, tmp.path);
    progress(BENCH, `redis-server on 127.0.0.1:${redis.port}`);
    const { connection, clientName, close: closeClients } = redisConnection(bullmq, redis.port);
    closers.push(closeClients);
    const queue = new bullmq.Queue('bench', { connection: connection() });
    closers.unshift(() => queue.close());
    let completed = 0;
    let failed = 0;
    let onDone: () => void = () => undefined;
    const worker = new bullmq.Worker('bench', () => spawnTrue(), { connection: connection(), concurrency: o.concurrency });
    closers.unshift(() => worker.close());
    worker.on('completed', () => {
      completed++;
      onDone();
    });
    worker.on('failed', (_job, err) => {
      failed++;
      progress(BENCH, `job failed: ${err.message}`);
      onDone();
    });
    worker.on('error', (err) => progress(BENCH, `worker error: ${err.message}`));
    await worker.waitUntilReady();
    const allDone = (n: number) =>
      new Promise<void>((resolve) => {
        onDone = () => completed + failed >= n && resolve();
        onDone();
      });
    const run = async (n: number, label: string) => {
      completed = 0;
      failed = 0;
      const cpu0 = { bullmq: ownCpuMs(), redis: procCpuMs(redis!.pid) };
      const t0 = performance.now();
      await queue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'true', data: { command: ['true'], i } })));
      const addBulkMs = performance.now() - t0;
      await within(allDone(n), Math.max(60_000, n * 100), `BullMQ ${label}`);
      const totalMs = performance.now() - t0;
      const perJob = (ms: number) => Math.round((ms / n) * 1000) / 1000;
      const cpu = { bullmq: perJob(ownCpuMs() - cpu0.bullmq), 'redis-server': perJob(procCpuMs(redis!.pid) - cpu0.redis) };
      return { totalMs, addBulkMs, failed, cpu };
    };

    progress(BENCH, `warm-up: ${o.warmupJobs} jobs (${clientName})`);
    await run(o.warmupJobs, 'warm-up');
    progress(BENCH, `throughput: ${o.jobs} jobs, concurrency ${o.concurrency}`);
    const r = await run(o.jobs, 'throughput');
    return {
      skipped: false,
      bullmq: bullmqVersion,
      redisServer: binaryVersion(bin, ['--version']),
      redisClient: clientName,
      jobs: o.jobs,
      concurrency: o.concurrency,
      jobsPerSec: perSecond(o.jobs, r.totalMs),
      cpuMsPerJob: Math.round((r.cpu.bullmq + r.cpu['redis-server']) * 1000) / 1000,
      cpuMsPerJobByProcess: r.cpu,
      totalMs: roundMs(r.totalMs),
      addBulkMs: roundMs(r.addBulkMs),
      failed: r.failed,
    };
  } finally {
    for (const close of closers) await close().catch((err: Error) => progress(BENCH, `close failed: ${err.message}`));
    await redis?.stop();
    tmp.remove();
  }
}

/** BullMQ's own client, ioredis (a dev dependency, so the reference always runs on it). */
function redisConnection(_bullmq: typeof import('bullmq'), port: number): { connection: () => object; clientName: string; close(): Promise<void> } {
  const ioredis = packageVersion('ioredis');
  if (!ioredis) throw new Error('ioredis is not installed (npm ci installs it with the dev dependencies)');
  return { connection: () => ({ host: '127.0.0.1', port, maxRetriesPerRequest: null }), clientName: `ioredis ${ioredis}`, close: async () => undefined };
}

/** The version of an installed package, or null when it is not installed. */
function packageVersion(name: string): string | null {
  let file: string;
  try {
    file = require.resolve(`${name}/package.json`);
  } catch {
    return null;
  }
  return z.object({ version: z.string() }).parse(JSON.parse(readFileSync(file, 'utf8'))).version;
}

/** What our executor does for `true`: spawn it in its own group, collect its output, wait for close. */
function spawnTrue(): Promise<{ exitCode: number | null; output: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = 0;
    child.stdout.on('data', (d: Buffer) => (output += d.length));
    child.stderr.on('data', (d: Buffer) => (output += d.length));
    child.once('error', reject);
    child.once('close', (exitCode) => resolve({ exitCode, output }));
  });
}

interface RunningRedis {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

async function startRedis(bin: string, dir: string): Promise<RunningRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    bin,
    ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log'), '--daemonize', 'no'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 10_000;
  while (!(await pings(port))) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${stderr.trim()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server did not answer on 127.0.0.1:${port} in time: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { port, pid: child.pid!, stop };
}

function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect({ host: '127.0.0.1', port });
    let answer = '';
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      answer += String(d);
      if (answer.includes('\r\n')) {
        sock.destroy();
        resolve(answer.startsWith('+PONG'));
      }
    });
    sock.once('error', () => resolve(false));
  });
}
