import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { z } from 'zod';
import { ExecutorIdSchema } from '../../../../libs/contracts/src';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import { Executor, type ExecutorLogger } from '../core/executor';
import { NodeProcessRunner } from './node-process-runner';

/** The Node entry of the executor: the only place that reads the environment and handles signals. */

export interface NodeExecutorOptions {
  /** An open connection; the caller owns it (stop() does not close it). */
  nc: NatsConnection;
  /** Default 'local'. */
  executorId?: string;
  /** Default 4. */
  capacity?: number;
  /** Workspaces go to <workRoot>/<executorId>, so executors sharing a host never clean up each other's (default ./.jobline/work). */
  workRoot?: string;
  /** SIGTERM → SIGKILL grace when stopping an attempt (default 5000 ms). */
  graceMs?: number;
  heartbeatMs?: number;
  labels?: Record<string, string>;
  logger?: ExecutorLogger;
  /** Create the JetStream streams first (default true; `jobline dev` may have done it). */
  ensureStreams?: boolean;
}

export interface NodeExecutorHandle {
  executor: Executor;
  runner: NodeProcessRunner;
  /** Stops the executor (running attempts are shut down and reported); leaves the connection open. */
  stop(): Promise<void>;
}

export const NODE_RUNTIME = `node ${process.versions.node.split('.').slice(0, 2).join('.')}`;

/** Starts a local executor on an existing connection: cleans up after a crashed predecessor, ensures the streams, takes work. */
export async function startNodeExecutor(options: NodeExecutorOptions): Promise<NodeExecutorHandle> {
  const executorId = ExecutorIdSchema.parse(options.executorId ?? 'local');
  const logger = options.logger ?? pino({ name: 'jobline-executor' });
  const runner = new NodeProcessRunner({ workRoot: join(resolve(options.workRoot ?? './.jobline/work'), executorId) });
  await runner.cleanupLeftovers();
  if (options.ensureStreams ?? true) await ensureStreams(await jetstreamManager(options.nc));
  const executor = new Executor({
    nc: options.nc,
    executorId,
    runner,
    capacity: options.capacity,
    graceMs: options.graceMs,
    heartbeatMs: options.heartbeatMs,
    labels: options.labels,
    runtime: NODE_RUNTIME,
    logger,
  });
  await executor.start();
  return { executor, runner, stop: () => executor.stop() };
}

const optionalNumber = (schema: z.ZodNumber) =>
  z.preprocess((v) => (v === undefined || v === '' ? undefined : Number(v)), schema.optional());
const optionalString = <T extends z.ZodType<string>>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const EnvSchema = z.object({
  JOBLINE_NATS_URL: optionalString(z.string().min(1)),
  JOBLINE_NATS_USER: optionalString(z.string().min(1)),
  JOBLINE_NATS_PASSWORD: optionalString(z.string().min(1)),
  JOBLINE_EXECUTOR_ID: optionalString(ExecutorIdSchema),
  JOBLINE_EXECUTOR_CAPACITY: optionalNumber(z.number().int().min(1).max(1024)),
  JOBLINE_WORK_ROOT: optionalString(z.string().min(1)),
  JOBLINE_GRACE_MS: optionalNumber(z.number().int().min(0).max(3_600_000)),
});

export interface ExecutorConfig {
  natsUrl: string;
  natsUser?: string;
  natsPassword?: string;
  executorId: string;
  capacity: number;
  workRoot: string;
  graceMs: number;
}

/** Reads and validates the executor's configuration from an environment; throws with every problem listed. */
export function executorConfigFromEnv(env: Record<string, string | undefined>): ExecutorConfig {
  const r = EnvSchema.safeParse(env);
  if (!r.success) {
    throw new Error(`invalid executor configuration: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = r.data;
  return {
    natsUrl: e.JOBLINE_NATS_URL ?? 'nats://127.0.0.1:4222',
    natsUser: e.JOBLINE_NATS_USER,
    natsPassword: e.JOBLINE_NATS_PASSWORD,
    executorId: e.JOBLINE_EXECUTOR_ID ?? 'local',
    capacity: e.JOBLINE_EXECUTOR_CAPACITY ?? 4,
    workRoot: e.JOBLINE_WORK_ROOT ?? './.jobline/work',
    graceMs: e.JOBLINE_GRACE_MS ?? 5000,
  };
}

export async function main(): Promise<void> {
  const logger = pino({ name: 'jobline-executor' });
  let config: ExecutorConfig;
  try {
    config = executorConfigFromEnv(process.env);
  } catch (err) {
    logger.error({}, (err as Error).message);
    process.exitCode = 2;
    return;
  }
  const nc = await connect({ servers: config.natsUrl.split(','), name: `jobline-executor-${config.executorId}`, user: config.natsUser, pass: config.natsPassword });
  const handle = await startNodeExecutor({ ...config, nc, logger });
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await handle.stop();
    await nc.drain();
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
