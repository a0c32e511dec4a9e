import { join, resolve } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import pino from 'pino';
import { ExecutorIdSchema } from '../../../../libs/contracts/src';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import { Executor, type ExecutorLogger } from '../core/executor';
import { nodeLogHasher } from './node-log-hasher';
import type { ProcessRunner } from '../core/process-runner.port';
import { detectSandbox, type SandboxDetection, type SandboxMode } from './sandbox/detect';
import { SandboxRunner } from './sandbox/sandbox-runner';
import { NodeProcessRunner } from './node-process-runner';
import { serveFromEnv } from '../../../../libs/service/src';
import { BundleStore } from '../../../../libs/messaging/src/bundle-store';
import { fileBundleCache } from './bundle-files';
import { ArtifactStore } from '../../../../libs/messaging/src/artifacts-store';
import { workspaceArtifactCollector } from './artifact-files';
import { FileReportOutbox, outboxDir } from './file-report-outbox';

/** The local Node executor: startNodeExecutor, and the process entry. */

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
   * auto (default): as root, a cgroup v2 (else v1) sandbox or refuse to start (SandboxUnavailableError);
   * not as root, unsandboxed as this user, said in every JobStarted. required: a sandbox or refuse
   * to start. none: never sandbox (recorded in every JobStarted).
   */
  sandbox?: SandboxMode;
  /** The unprivileged uid/gid sandboxed jobs run as (default 10001). */
  sandboxUid?: number;
  sandboxGid?: number;
  /** Largest total size of one attempt's `outputs` (default 256 MiB); above it no artifacts are stored and the job's log says why. */
  maxArtifactBytes?: number;
  /** Byte budget of the host's bundle cache (<workRoot>/.bundles), least recently used removed first; default none. */
  bundleCacheMaxBytes?: number;
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
  const bundles = { source: await BundleStore.open(options.nc), cache: fileBundleCache(join(resolve(options.workRoot ?? './.jobline/work'), '.bundles'), { maxBytes: options.bundleCacheMaxBytes }) };
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
    logHasher: nodeLogHasher,
    bundles,
    // Both runners keep an attempt's workspace at <workRoot>/<attemptId> until dispose().
    artifacts: workspaceArtifactCollector({ root: workRoot, sink: await ArtifactStore.open(options.nc), maxBytes: options.maxArtifactBytes }),
  });
  await executor.start();
  const stop = async () => {
    await executor.stop();
    // The launcher kills whatever of ours is left; the parent cgroup is named by the work root, a later start makes it again.
    if (runner instanceof SandboxRunner || runner instanceof NodeProcessRunner) await runner.close();
    if (runner instanceof SandboxRunner) await runner.removeParent().catch(() => undefined);
  };
  return { executor, runner, sandbox: detection, stop };
}

/** The Node executor's process entry (`jobline executor` does the same): configuration, start, signals. */
if (require.main === module) {
  void import('./start-executor').then(({ startExecutor }) => serveFromEnv('executor', process.env, (config, logger) => startExecutor(config, { logger })));
}
