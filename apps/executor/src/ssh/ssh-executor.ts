import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { BundleStore } from '../../../../libs/messaging/src/bundle-store';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import type { Bundles } from '../core/bundle';
import { Executor, type ExecutorLogger } from '../core/executor';
import { nodeLogHasher } from '../node/node-log-hasher';
import { fileBundleCache } from '../node/bundle-files';
import { FileReportOutbox, outboxDir } from '../node/file-report-outbox';
import { SshRunner } from './ssh-runner';
import type { SshInventory } from './ssh-inventory';

export interface SshExecutorOptions {
  /** An open connection; the caller owns it. */
  nc: NatsConnection;
  inventory: SshInventory;
  /** The ssh-agent socket for hosts with `agent: true` (main passes SSH_AUTH_SOCK). */
  agentSocket?: string;
  /** SIGTERM → SIGKILL grace when stopping an attempt (default 5000 ms). */
  graceMs?: number;
  /** Heartbeat period (default 1000 ms). */
  heartbeatMs?: number;
  /** The orchestrator's lease until its first lease reply says (default 10,000 ms). */
  leaseMs?: number;
  logger?: ExecutorLogger;
  /** The runtime, for heartbeats. */
  runtime: string;
  /** Where bundles come from and are cached on this machine before the upload (default: the bundle store, cached under <workRoot>/.bundles). */
  bundles?: Bundles;
  /** The local folder for the bundle cache and the report outboxes (default ./.jobline/work), as for a local executor. */
  workRoot?: string;
  /** Create the JetStream streams first (default true). */
  ensureStreams?: boolean;
  /** Byte budget of the local bundle cache, least recently used removed first; default none. */
  bundleCacheMaxBytes?: number;
}

export interface SshExecutorHandle {
  /** One executor per inventory host, its id the host's name. */
  executors: Map<string, { executor: Executor; runner: SshRunner }>;
  /** Stops every host's executor (running attempts are shut down and reported) and closes the SSH connections. */
  stop(): Promise<void>;
}

/**
 * Starts one executor per inventory host. Each advertises kind 'ssh' with its host name as
 * executor id (what `target.host` matches) and label `host`, and heartbeats only while its
 * host is reachable, so the scheduler sends work only to reachable hosts and marks the
 * attempts of a host that dropped off lost once its lease expires.
 */
export async function startSshExecutor(options: SshExecutorOptions): Promise<SshExecutorHandle> {
  const logger = options.logger ?? pino({ name: 'jobline-ssh-executor' });
  if (options.ensureStreams ?? true) await ensureStreams(await jetstreamManager(options.nc));
  const executors = new Map<string, { executor: Executor; runner: SshRunner }>();
  const inv = options.inventory;
  // Bundles are fetched and verified here once, then copied to each attempt's workspace on the host.
  const bundles = options.bundles ?? {
    source: await BundleStore.open(options.nc),
    cache: fileBundleCache(join(resolve(options.workRoot ?? './.jobline/work'), '.bundles'), { maxBytes: options.bundleCacheMaxBytes }),
  };
  try {
    for (const host of inv.hosts) {
      const runner = new SshRunner({ host, settings: inv, agentSocket: options.agentSocket, logger });
      const executor = new Executor({
        nc: options.nc,
        executorId: host.name,
        runner,
        outbox: new FileReportOutbox(outboxDir(options.workRoot ?? './.jobline/work', host.name)),
        capacity: host.capacity,
        graceMs: options.graceMs,
        heartbeatMs: options.heartbeatMs,
        leaseMs: options.leaseMs,
        labels: { ...host.labels, host: host.name },
        runtime: options.runtime,
        logger,
        available: () => runner.available(),
        bundles,
        logHasher: nodeLogHasher,
      });
      executors.set(host.name, { executor, runner });
      runner.start();
      await executor.start();
    }
  } catch (err) {
    await stopAll(executors);
    throw err;
  }
  return { executors, stop: () => stopAll(executors) };
}

async function stopAll(executors: Map<string, { executor: Executor; runner: SshRunner }>): Promise<void> {
  await Promise.allSettled([...executors.values()].map((e) => e.executor.stop()));
  for (const e of executors.values()) e.runner.close();
}
