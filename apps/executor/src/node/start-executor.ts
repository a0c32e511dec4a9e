import type { NatsConnection } from '@nats-io/nats-core';
import { resolve } from 'node:path';
import { Gauge, Registry } from 'prom-client';
import type { JoblineConfig } from '../../../../libs/config/src';
import { connectBus, createLogger, startServiceHttp, watchBus, type BusState, type ServiceHttp, type ServiceLogger, startTracing } from '../../../../libs/service/src';
import type { Executor } from '../core/executor';
import { startSshExecutor, type SshExecutorHandle } from '../ssh/ssh-executor';
import { loadSshInventory } from '../ssh/ssh-inventory';
import { NODE_RUNTIME, startNodeExecutor, type NodeExecutorHandle } from './main';

export interface ExecutorDeps {
  logger?: ServiceLogger;
  /** An open connection (left open by stop()). Default: a reconnecting connection of its own. */
  nc?: NatsConnection;
  /**
   * Run the local executor (default: unless an SSH inventory is configured, so `jobline
   * executor` with JOBLINE_SSH_INVENTORY serves only its hosts; `jobline dev` runs both).
   */
  local?: boolean;
  /** The JetStream streams exist already (dev ensured them). */
  streamsReady?: boolean;
}

export interface ExecutorServiceHandle {
  /** The local executor, if one runs. */
  local: NodeExecutorHandle | null;
  /** The SSH hosts' executors, if an inventory is configured. */
  ssh: SshExecutorHandle | null;
  registry: Registry;
  http: ServiceHttp | null;
  /** Stops taking work, stops running attempts (reported), then closes what it opened. */
  stop(): Promise<void>;
}

/** Starts the executors this configuration asks for: a local one, and one per SSH host of the inventory. */
export async function startExecutor(config: JoblineConfig, deps: ExecutorDeps = {}): Promise<ExecutorServiceHandle> {
  const c = config.executor;
  const logger = deps.logger ?? createLogger({ service: 'executor', ...config.log });
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const stop = async () => {
    for (const s of cleanups.splice(0).reverse()) {
      try {
        await s();
      } catch (err) {
        logger.warn({ err }, 'executor: a shutdown step failed');
      }
    }
  };
  // First in, last out: spans of the whole shutdown are still exported.
  const tracing = startTracing(config, 'executor', logger);
  cleanups.push(() => tracing.stop());
  try {
    // Read before connecting: a bad inventory stops start-up with its problems listed.
    const inventory = c.sshInventory ? loadSshInventory(c.sshInventory) : null;
    let nc = deps.nc;
    let bus: BusState;
    if (nc) bus = watchBus(nc, logger);
    else {
      const b = await connectBus(config, `jobline-executor-${c.id}`, logger);
      nc = b.nc;
      bus = b.state;
      cleanups.push(() => b.close());
    }
    const workRoot = resolve(c.workRoot);
    let local: NodeExecutorHandle | null = null;
    if ((deps.local ?? !inventory) && c.capacity > 0) {
      local = await startNodeExecutor({
        nc,
        executorId: c.id,
        capacity: c.capacity,
        workRoot,
        graceMs: c.graceMs,
        heartbeatMs: c.heartbeatMs,
        leaseMs: config.leaseMs,
        labels: c.labels,
        logger,
        ensureStreams: !deps.streamsReady,
        sandbox: c.sandbox,
        sandboxUid: c.sandboxUid,
        sandboxGid: c.sandboxGid,
        maxArtifactBytes: c.maxArtifactBytes,
        ...(c.bundleCacheMaxBytes !== null ? { bundleCacheMaxBytes: c.bundleCacheMaxBytes } : {}),
      });
      const l = local;
      cleanups.push(() => l.stop());
    }
    let ssh: SshExecutorHandle | null = null;
    if (inventory) {
      ssh = await startSshExecutor({
        nc,
        inventory,
        agentSocket: process.env.SSH_AUTH_SOCK,
        graceMs: c.graceMs,
        heartbeatMs: c.heartbeatMs,
        leaseMs: config.leaseMs,
        workRoot,
        runtime: NODE_RUNTIME,
        logger,
        ensureStreams: !deps.streamsReady && !local,
        ...(c.bundleCacheMaxBytes !== null ? { bundleCacheMaxBytes: c.bundleCacheMaxBytes } : {}),
      });
      const s = ssh;
      cleanups.push(() => s.stop());
    }
    const executors = (): Executor[] => [...(local ? [local.executor] : []), ...(ssh ? [...ssh.executors.values()].map((e) => e.executor) : [])];
    const registry = new Registry();
    new Gauge({
      name: 'jobline_executor_slots_busy',
      help: 'Attempt slots in use, summed over the executors of this process.',
      registers: [registry],
      collect() {
        this.set(executors().reduce((n, e) => n + e.running.length, 0));
      },
    });
    new Gauge({
      name: 'jobline_executor_slots',
      help: 'Attempt slots, summed over the executors of this process.',
      registers: [registry],
      collect() {
        this.set((local ? c.capacity : 0) + (inventory?.hosts.reduce((n, h) => n + h.capacity, 0) ?? 0));
      },
    });
    let http: ServiceHttp | null = null;
    if (c.httpPort !== null) {
      http = await startServiceHttp({
        service: 'executor',
        host: config.api.host,
        port: c.httpPort,
        registries: [registry],
        readiness: () => (bus.connected ? { ready: true, reasons: [] } : { ready: false, reasons: [`nats: ${bus.reason}`] }),
      });
      const h = http;
      cleanups.push(() => h.close());
    }
    if (!local && !ssh) logger.warn({}, 'executor: nothing to run (capacity 0 and no SSH inventory)');
    return { local, ssh, registry, http, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
