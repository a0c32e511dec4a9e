/**
 * What the log benchmarks share: the orchestrator, executor and NATS of a dev stack in this
 * process, the api in a child process of its own (its memory is measured apart), followers in
 * another child, and a count of the JetStream consumers opened on the logs stream (from the
 * server's advisories, so it counts whatever the api does).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { STREAMS, subjects } from '../libs/contracts/src';
import { tempDir, type TempDir } from '../libs/testing/src/temp-dir';
import { startDevStack, sha256Hex, type DevStack } from '../apps/cli/src/dev-stack';
import { API_PROCESS_ENV, API_PROCESS_NODE_ARGS, startApiProcess, type ApiProcess } from '../apps/api/src/testing/api-process';
import { createCa, issueCertificate, type KeyPairPem } from '../apps/cli/src/certs/dev-pki';
import type { FollowersConfig, FollowersReport } from './log-followers.child';
import { procCpuMs, progress, quietLogger, within } from './bench-kit';

export interface LogBenchStack {
  stack: DevStack;
  api: ApiProcess;
  token: string;
  wsUrl: string;
  grpcAddress: string;
  /** CA and a client certificate (CN=bench, OU=admin) for gRPC. */
  ca: KeyPairPem;
  client: KeyPairPem;
  logger: ReturnType<typeof quietLogger>;
  submit(spec: unknown): Promise<string>;
  job(id: string): Promise<{ status: string; startedAt: string | null; finishedAt: string | null; logBytes: number }>;
  /** When the logs stream stored the job's first and last chunk (server time, ms since the epoch); null without chunks. */
  storedSpan(jobId: string): Promise<{ firstMs: number; lastMs: number } | null>;
  /** CPU time used so far (ms, user + system) by the api process, this process (orchestrator, executor) and the nats-server. */
  cpuMs(): { api: number; executor: number; nats: number };
  /** Consumers created on JOBLINE_LOGS since the stack started. */
  consumersOpened(): number;
  /** Samples the api's RSS every 100 ms; returns a stop function giving the peak (bytes). */
  sampleApiRss(): () => number;
  stop(): Promise<void>;
}

export async function startLogBenchStack(bench: string, o: { capacity: number; nodeArgs?: string[]; /** Run the api without --expose-gc and the glibc setting. */ plainMemory?: boolean }): Promise<LogBenchStack> {
  const tmp: TempDir = tempDir(`jobline-bench-${bench}-`);
  const logger = quietLogger(bench);
  let stack: DevStack | null = null;
  let api: ApiProcess | null = null;
  try {
    stack = await startDevStack({ dataDir: join(tmp.path, 'data'), apiPort: false, executorCapacity: o.capacity, packager: false, logger });
    const ca = await createCa();
    const server = await issueCertificate(ca, { commonName: 'localhost', serverNames: ['localhost', '127.0.0.1'] });
    const client = await issueCertificate(ca, { commonName: 'bench', admin: true });
    const token = `bench-${Math.random().toString(36).slice(2)}`;
    let consumers = 0;
    const sub = stack.nc.subscribe(`$JS.EVENT.ADVISORY.CONSUMER.CREATED.${STREAMS.logs}.*`, {
      callback: () => {
        consumers++;
      },
    });
    api = await startApiProcess(
      {
        natsUrl: stack.natsUrl,
        eventsDb: join(stack.dataDir, 'events.db'),
        readModelDb: join(tmp.path, 'api-read-models.db'),
        tokens: [{ sha256: sha256Hex(token), owner: 'bench', admin: true }],
        grpcTls: { ca: ca.certPem, cert: server.certPem, key: server.keyPem },
      },
      // As deployed (README, "Memory"), plus the benchmark's own node options (e.g. CPU profiling).
      { nodeArgs: o.plainMemory ? (o.nodeArgs ?? []) : [...API_PROCESS_NODE_ARGS, ...(o.nodeArgs ?? [])], env: o.plainMemory ? {} : API_PROCESS_ENV },
    );
    const started = { stack, api };
    const natsPid = Number(readFileSync(join(stack.dataDir, 'nats-server.pid'), 'utf8').trim());
    const rest = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(`${started.api.url}${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      if (res.status >= 300) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
      return res.json() as Promise<Record<string, unknown>>;
    };
    return {
      stack,
      api,
      token,
      wsUrl: `${api.url.replace(/^http/, 'ws')}/v1/ws`,
      grpcAddress: `127.0.0.1:${api.grpcPort}`,
      ca,
      client,
      logger,
      submit: async (spec) => (await rest('/v1/jobs', { method: 'POST', body: JSON.stringify(spec) })).id as string,
      job: async (id) => (await rest(`/v1/jobs/${id}`)) as never,
      consumersOpened: () => consumers,
      cpuMs: () => {
        const u = process.cpuUsage();
        return { api: procCpuMs(started.api.pid), executor: (u.user + u.system) / 1000, nats: procCpuMs(natsPid) };
      },
      storedSpan: async (jobId) => {
        const js = jetstream(started.stack.nc);
        const jsm = await jetstreamManager(started.stack.nc);
        let last;
        try {
          last = await jsm.streams.getMessage(STREAMS.logs, { last_by_subj: subjects.logs(jobId) });
        } catch {
          return null;
        }
        if (!last) return null;
        // The first chunk: one message of a consumer of the job's subject from the stream's start.
        const c = await js.consumers.get(STREAMS.logs, { filter_subjects: subjects.logs(jobId) });
        try {
          const first = await c.next({ expires: 5_000 });
          if (!first) return null;
          return { firstMs: first.info.timestampNanos / 1e6, lastMs: last.time.getTime() };
        } finally {
          await c.delete().catch(() => undefined);
        }
      },
      sampleApiRss: () => {
        let peak = started.api.memory().rssBytes;
        const t = setInterval(() => {
          try {
            peak = Math.max(peak, started.api.memory().rssBytes);
          } catch {
            // the process is gone: the peak so far stands
          }
        }, 100);
        return () => {
          clearInterval(t);
          return peak;
        };
      },
      stop: async () => {
        sub.unsubscribe();
        await started.api.stop();
        await started.stack.stop();
        tmp.remove();
      },
    };
  } catch (err) {
    await api?.stop();
    await stack?.stop();
    tmp.remove();
    throw err;
  }
}

/** A shell command printing exactly `bytes` bytes: `line` (ending in a newline) over and over. */
export const printCommand = (line: string, bytes: number) => `yes '${line}' | head -c ${bytes}`;

/** sha256 of what printCommand prints. */
export function printedSha256(line: string, bytes: number): string {
  const unit = Buffer.from(`${line}\n`);
  const block = Buffer.alloc(Math.max(unit.length, Math.floor((1 << 20) / unit.length) * unit.length));
  for (let i = 0; i < block.length; i += unit.length) unit.copy(block, i);
  const h = createHash('sha256');
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, block.length);
    h.update(n === block.length ? block : block.subarray(0, n));
    left -= n;
  }
  return h.digest('hex');
}

const ReportSchema = z.object({ connectMs: z.number(), followers: z.array(z.object({}).passthrough()) });

/** Runs the follower child to its report. */
export async function runLogFollowers(bench: string, config: FollowersConfig, timeoutMs: number): Promise<FollowersReport> {
  const child = spawn(process.execPath, [join(__dirname, 'log-followers.child.js'), JSON.stringify({ ...config, timeoutMs })], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => progress(bench, d.trimEnd()));
  const done = new Promise<FollowersReport>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) return reject(new Error(`the followers' process exited with code ${code}`));
      try {
        resolve(ReportSchema.parse(JSON.parse(out.trim())) as unknown as FollowersReport);
      } catch (err) {
        reject(new Error(`the followers' report is unreadable: ${(err as Error).message}`));
      }
    });
  });
  return within(done, timeoutMs + 30_000, 'the followers').finally(() => child.kill('SIGKILL'));
}

export const mb = (bytes: number) => Math.round((bytes / (1 << 20)) * 10) / 10;
