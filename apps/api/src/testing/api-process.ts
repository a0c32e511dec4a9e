/**
 * For tests and benchmarks: the api in a child process of its own, so its memory can be
 * measured apart from whatever drives it (the orchestrator, the executor, the followers).
 * The parent runs NATS, the orchestrator and the executor (e.g. `startDevStack({apiPort:
 * false})`); the child opens the same SQLite event store and a read model of its own, and
 * serves REST, /v1/ws and (optionally) gRPC exactly as createApiApp does in production.
 *
 * The child is this file, compiled (dist/apps/api/src/testing/api-process.js): run it with
 * one argument, the JSON of ApiProcessConfig; it prints one line `{"url", "grpcPort"}` once
 * it listens and stops on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApiToken } from '../api-tokens';
import type { GrpcTlsOptions } from '../grpc/jobs.grpc-server';
import type { WsGatewayOptions } from '../ws/ws.gateway';

export interface ApiProcessConfig {
  natsUrl: string;
  /** The SQLite event store the orchestrator writes (opened for reading). */
  eventsDb: string;
  /** The child's own jobs read model (created). */
  readModelDb: string;
  tokens: ApiToken[];
  /** Serve gRPC on a free port with these certificates (PEM). */
  grpcTls?: GrpcTlsOptions;
  ws?: WsGatewayOptions;
}

export interface ApiProcess {
  url: string;
  grpcPort?: number;
  pid: number;
  child: ChildProcess;
  /** Resident memory now (VmRSS) and its peak so far (VmHWM), in bytes. */
  memory(): { rssBytes: number; peakRssBytes: number };
  /** SIGTERM, then SIGKILL after 10 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

const ROOT = join(__dirname, '../../../..');

/**
 * The compiled child entry. Under jest (SWC, sources) the compiled file is in dist/; a
 * benchmark runs from dist/ already.
 */
function childEntry(): string {
  return __filename.endsWith('.js') ? __filename : join(ROOT, 'dist/apps/api/src/testing/api-process.js');
}

/** Starts the api child; rejects with its stderr if it exits before listening. */
/**
 * How the api is meant to run (README, "Memory"): V8 may collect fully after log traffic
 * (--expose-gc, see LogMemory) and glibc hands large freed blocks back to the system.
 */
export const API_PROCESS_NODE_ARGS = ['--expose-gc'];
export const API_PROCESS_ENV = { MALLOC_MMAP_THRESHOLD_: '32768' };

export interface ApiProcessOptions {
  /** Node options before the entry (default API_PROCESS_NODE_ARGS). */
  nodeArgs?: string[];
  /** Added to the environment (default API_PROCESS_ENV). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export async function startApiProcess(config: ApiProcessConfig, options: ApiProcessOptions = {}): Promise<ApiProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? API_PROCESS_NODE_ARGS), childEntry(), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(options.env ?? API_PROCESS_ENV) },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 64 * 1024) stderr = stderr.slice(-32 * 1024);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<{ url: string; grpcPort?: number }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the api process did not start within ${options.timeoutMs ?? 30_000} ms: ${stderr}`));
    }, options.timeoutMs ?? 30_000);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      out += d;
      // Node options may print lines of their own (e.g. --trace-gc): the answer is the line with the url.
      const line = out.split('\n').find((l) => l.startsWith('{"url"'));
      if (!line) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as { url: string; grpcPort?: number });
      } catch (err) {
        reject(err as Error);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the api process exited (${code ?? signal}) before listening: ${stderr}`));
    });
  });
  const pid = child.pid!;
  return {
    ...ready,
    pid,
    child,
    memory: () => processMemory(pid),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** VmRSS and VmHWM of a process, from /proc (Linux). */
export function processMemory(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

async function childMain(config: ApiProcessConfig): Promise<void> {
  // Loaded here, not at the top: the parent side of this file stays light.
  const { SqliteEventStore } = await import('../../../../libs/event-store/src');
  const { connectNats } = await import('../../../../libs/messaging/src/connection');
  const { createApiApp } = await import('../api.module');
  const { JobsProjection } = await import('../projections/jobs.projection');
  const nc = await connectNats({ servers: config.natsUrl, name: 'jobline-api-process' });
  const eventStore = new SqliteEventStore({ path: config.eventsDb });
  const projection = new JobsProjection({ path: config.readModelDb, onWarning: (m) => process.stderr.write(`api projection: ${m}\n`) });
  await projection.catchUp(eventStore);
  const api = await createApiApp({
    nc,
    eventStore,
    projection,
    tokens: config.tokens,
    port: 0,
    logger: ['error', 'warn'],
    ensureStreams: false,
    ...(config.ws ? { ws: config.ws } : {}),
    ...(config.grpcTls ? { grpc: { port: 0, tls: config.grpcTls } } : {}),
  });
  process.stdout.write(`${JSON.stringify({ url: api.url, ...(api.grpcPort !== undefined ? { grpcPort: api.grpcPort } : {}) })}\n`);
  process.once('SIGTERM', () => {
    void (async () => {
      await api.close();
      await projection.close();
      await eventStore.close();
      await nc.drain();
      process.exit(0);
    })();
  });
}

if (require.main === module) {
  childMain(JSON.parse(process.argv[2] ?? '{}') as ApiProcessConfig).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
