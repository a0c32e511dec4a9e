import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { z } from 'zod';
import { ExecutorIdSchema } from '../../../../libs/contracts/src';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import { Executor, type ExecutorLogger } from '../core/executor';
import { executorConfigFromEnv as coreConfigFromEnv, type ExecutorConfig as CoreExecutorConfig } from '../core/executor-config';
import type { ProcessRunner } from '../core/process-runner.port';
import { startSshExecutor } from '../ssh/ssh-executor';
import { loadSshInventory, type SshInventory } from '../ssh/ssh-inventory';
import { detectSandbox, SandboxModeSchema, type SandboxDetection, type SandboxMode } from './sandbox/detect';
import { BundleStore } from '../../../../libs/messaging/src/bundle-store';
import { fileBundleCache } from './bundle-files';
import { ArtifactStore } from '../../../../libs/messaging/src/artifacts-store';
import { workspaceArtifactCollector } from './artifact-files';
import { FileReportOutbox, outboxDir } from './file-report-outbox';

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
  /** Heartbeat period (default 1000 ms). */
  heartbeatMs?: number;
  /** The orchestrator's lease until its first lease reply says (default 10,000 ms; at least 3 heartbeats). */
  leaseMs?: number;
  labels?: Record<string, string>;
  logger?: ExecutorLogger;
  /** Create the JetStream streams first (default true; `jobline dev` may have done it). */
  ensureStreams?: boolean;
  /**
   * auto (default): cgroup v2, else v1, else unsandboxed with a warning, whichever the host
   * allows; none: never sandbox; required: refuse to start without a sandbox.
   */
  sandbox?: SandboxMode;
  /** The unprivileged uid/gid sandboxed jobs run as (default 10001). */
  sandboxUid?: number;
  sandboxGid?: number;
  /** Largest total size of one attempt's `outputs` (default 256 MiB); above it no artifacts are stored and the job's log says why. */
  maxArtifactBytes?: number;
}

export interface NodeExecutorHandle {
  executor: Executor;
  runner: ProcessRunner;
  /** What start-up found the host allows (also in every started report). */
  sandbox: SandboxDetection;
  /** Stops the executor (running attempts are shut down and reported); leaves the connection open. */
  stop(): Promise<void>;
}

export const NODE_RUNTIME = `node ${process.versions.node.split('.').slice(0, 2).join('.')}`;

/** Starts a local executor on an existing connection: cleans up after a crashed predecessor, ensures the streams, takes work. */
export async function startNodeExecutor(options: NodeExecutorOptions): Promise<NodeExecutorHandle> {
  const executorId = ExecutorIdSchema.parse(options.executorId ?? 'local');
  const logger = options.logger ?? pino({ name: 'jobline-executor' });
  const workRoot = join(resolve(options.workRoot ?? './.jobline/work'), executorId);
  const { runner, detection } = detectSandbox(
    {
      mode: options.sandbox ?? 'auto',
      executorId,
      workRoot,
      uid: options.sandboxUid,
      gid: options.sandboxGid,
    },
    logger,
  );
  await runner.cleanupLeftovers?.();
  if (options.ensureStreams ?? true) await ensureStreams(await jetstreamManager(options.nc));
  // Fetched bundles are kept per host, beside (not inside) the executors' workspace folders.
  const bundles = { source: await BundleStore.open(options.nc), cache: fileBundleCache(join(resolve(options.workRoot ?? './.jobline/work'), '.bundles')) };
  const executor = new Executor({
    nc: options.nc,
    executorId,
    runner,
    // Finished reports wait here until the bus acknowledged them; the next start re-sends what is left.
    outbox: new FileReportOutbox(outboxDir(options.workRoot ?? './.jobline/work', executorId)),
    capacity: options.capacity,
    graceMs: options.graceMs,
    heartbeatMs: options.heartbeatMs,
    leaseMs: options.leaseMs,
    labels: options.labels,
    runtime: NODE_RUNTIME,
    logger,
    bundles,
    // Both runners keep an attempt's workspace at <workRoot>/<attemptId> until dispose().
    artifacts: workspaceArtifactCollector({ root: workRoot, sink: await ArtifactStore.open(options.nc), maxBytes: options.maxArtifactBytes }),
  });
  await executor.start();
  return { executor, runner, sandbox: detection, stop: () => executor.stop() };
}

const optionalId = z.preprocess((v) => (v === undefined || v === '' ? undefined : Number(v)), z.number().int().min(1).max(2 ** 32 - 2).optional());

/** The Node executor's own variables, on top of those every runtime reads (core/executor-config.ts). */
const SandboxEnvSchema = z.object({
  JOBLINE_SANDBOX: z.preprocess((v) => (v === '' ? undefined : v), SandboxModeSchema.optional()),
  JOBLINE_SANDBOX_UID: optionalId,
  JOBLINE_SANDBOX_GID: optionalId,
  JOBLINE_SSH_INVENTORY: z.preprocess((v) => (v === '' ? undefined : v), z.string().optional()),
});

export interface ExecutorConfig extends CoreExecutorConfig {
  sandbox: SandboxMode;
  sandboxUid?: number;
  sandboxGid?: number;
  /** An SSH inventory file: this process then runs one SSH executor per host in it instead of a local executor. */
  sshInventory?: string;
}

/** Reads and validates the executor's configuration from an environment; throws with every problem listed. */
export function executorConfigFromEnv(env: Record<string, string | undefined>): ExecutorConfig {
  const core = coreConfigFromEnv(env);
  const r = SandboxEnvSchema.safeParse(env);
  if (!r.success) {
    throw new Error(`invalid executor configuration: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return {
    ...core,
    sandbox: r.data.JOBLINE_SANDBOX ?? 'auto',
    sandboxUid: r.data.JOBLINE_SANDBOX_UID,
    sandboxGid: r.data.JOBLINE_SANDBOX_GID,
    sshInventory: r.data.JOBLINE_SSH_INVENTORY,
  };
}

export async function main(): Promise<void> {
  const logger = pino({ name: 'jobline-executor' });
  let config: ExecutorConfig;
  let inventory: SshInventory | undefined;
  try {
    config = executorConfigFromEnv(process.env);
    if (config.sshInventory) inventory = loadSshInventory(config.sshInventory);
  } catch (err) {
    logger.error({}, (err as Error).message);
    process.exitCode = 2;
    return;
  }
  const nc = await connect({ servers: config.natsUrl.split(','), name: `jobline-executor-${config.executorId}`, user: config.natsUser, pass: config.natsPassword });
  const handle = inventory
    ? await startSshExecutor({
        nc,
        inventory,
        agentSocket: process.env.SSH_AUTH_SOCK,
        graceMs: config.graceMs,
        workRoot: config.workRoot,
        runtime: NODE_RUNTIME,
        logger,
      })
    : await startNodeExecutor({ ...config, nc, logger });
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
