import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats } from '../../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import { Executor, type ExecutorLogger } from '../core/executor';
import { EXECUTOR_ENV_VARS, executorConfigFromEnv, natsHostPorts, type ExecutorConfig } from '../core/executor-config';
import { DenoProcessRunner } from './deno-process-runner.deno';
import { DenoFileReportOutbox } from './file-report-outbox.deno';
import { denoPermissionFlags } from './deno-command';

/**
 * The Deno entry of the executor: the only place that reads the environment, checks
 * Deno's permissions and handles signals. NATS goes through @nats-io/transport-node,
 * which runs on Deno's Node compatibility layer (@nats-io/transport-deno is not a dependency).
 *
 *   deno run --no-config --no-lock --no-remote --no-prompt --sloppy-imports --node-modules-dir=manual \
 *     --allow-net=<nats host:port> --allow-env=JOBLINE_... --allow-read=<work root> --allow-write=<work root> \
 *     --allow-run apps/executor/src/deno/main.deno.ts
 *
 * (see deno-command.ts for why each flag).
 */

export const DENO_RUNTIME = `deno ${Deno.version.deno.split('.').slice(0, 2).join('.')}`;

export interface DenoExecutorOptions extends Omit<ExecutorConfig, 'natsUrl' | 'natsUser' | 'natsPassword'> {
  /** An open connection; the caller owns it (stop() does not close it). */
  nc: NatsConnection;
  logger: ExecutorLogger;
  /** Create the JetStream streams first (default true). */
  ensureStreams?: boolean;
}

export interface DenoExecutorHandle {
  executor: Executor;
  runner: DenoProcessRunner;
  /** Stops the executor (running attempts are shut down and reported); leaves the connection open. */
  stop(): Promise<void>;
}

/** Starts a local executor on an existing connection: cleans up after a crashed predecessor, ensures the streams, takes work. */
export async function startDenoExecutor(o: DenoExecutorOptions): Promise<DenoExecutorHandle> {
  const runner = new DenoProcessRunner({ workRoot: `${o.workRoot}/${o.executorId}` });
  await runner.cleanupLeftovers();
  if (o.ensureStreams ?? true) await ensureStreams(await jetstreamManager(o.nc));
  const executor = new Executor({
    nc: o.nc,
    executorId: o.executorId,
    runner,
    // Beside the workspaces, as under Node: the runner's clean-up never touches it.
    outbox: new DenoFileReportOutbox(`${o.workRoot}/.outbox/${o.executorId}`),
    capacity: o.capacity,
    graceMs: o.graceMs,
    heartbeatMs: o.heartbeatMs,
    leaseMs: o.leaseMs,
    runtime: DENO_RUNTIME,
    logger: o.logger,
  });
  await executor.start();
  return { executor, runner, stop: () => executor.stop() };
}

/** The executor's variables, read one by one (Deno grants them by name); throws naming the flag when one is not granted. */
export function readExecutorEnv(): Record<string, string | undefined> {
  const denied = EXECUTOR_ENV_VARS.filter((name) => Deno.permissions.querySync({ name: 'env', variable: name }).state !== 'granted');
  if (denied.length > 0) throw new Error(`Deno does not grant reading ${denied.join(', ')}: run with --allow-env=${EXECUTOR_ENV_VARS.join(',')}`);
  return Object.fromEntries(EXECUTOR_ENV_VARS.map((name) => [name, Deno.env.get(name)]));
}

/** The permissions this configuration needs that Deno does not grant, as the flags that would grant them. */
export function missingPermissions(config: ExecutorConfig): string[] {
  const granted = (d: Deno.PermissionDescriptor) => Deno.permissions.querySync(d).state === 'granted';
  const missing: string[] = [];
  const hosts = natsHostPorts(config.natsUrl).filter((host) => !granted({ name: 'net', host }));
  if (hosts.length > 0) missing.push(`--allow-net=${hosts.join(',')}`);
  if (!granted({ name: 'read', path: config.workRoot })) missing.push(`--allow-read=${config.workRoot}`);
  if (!granted({ name: 'write', path: config.workRoot })) missing.push(`--allow-write=${config.workRoot}`);
  if (!granted({ name: 'run' })) missing.push('--allow-run');
  return missing;
}

/**
 * The Deno executor has no sandbox (cgroups and namespaces would need --allow-all), so it
 * fails closed like the Node one: `required` refuses to start, and so does `auto` as root
 * (jobs would run as root); only JOBLINE_SANDBOX=none runs as root, by explicit choice.
 */
export function sandboxRefusal(mode: ExecutorConfig['sandbox'], uid: number | null): string | null {
  if (mode === 'required') return 'JOBLINE_SANDBOX=required, but the Deno executor cannot sandbox jobs: run the Node executor (`jobline executor`) for a sandbox';
  if (mode === 'auto' && uid === 0) return 'running as root with JOBLINE_SANDBOX=auto: the Deno executor cannot sandbox, so its jobs would run as root; run it as an unprivileged user, or set JOBLINE_SANDBOX=none to run jobs as root on purpose';
  return null;
}

/** pino's JSON lines (level numbers, time, name, msg), so Node and Deno executors log alike. */
export function jsonLogger(name: string, write: (line: string) => void = (line) => console.log(line)): ExecutorLogger {
  const line = (level: number) => (fields: Record<string, unknown>, msg: string) =>
    write(JSON.stringify({ level, time: Date.now(), pid: Deno.pid, name, ...fields, msg }, (_key, v) => (v instanceof Error ? { type: v.name, message: v.message, stack: v.stack } : v)));
  return { info: line(30), warn: line(40), error: line(50) };
}

/** Runs the executor until SIGINT or SIGTERM; resolves with the process exit code. */
export async function main(): Promise<number> {
  const logger = jsonLogger('jobline-executor');
  let config: ExecutorConfig;
  try {
    config = executorConfigFromEnv(readExecutorEnv());
    const missing = missingPermissions(config);
    if (missing.length > 0) {
      throw new Error(`Deno lacks permissions this configuration needs: add ${missing.join(' ')} (all of them: ${denoPermissionFlags(config).join(' ')})`);
    }
    const refusal = sandboxRefusal(config.sandbox, Deno.uid());
    if (refusal) throw new Error(refusal);
  } catch (err) {
    logger.error({}, (err as Error).message);
    return 2;
  }

  const nc = await connectNats({ servers: config.natsUrl.split(','), name: `jobline-executor-${config.executorId}`, user: config.natsUser, pass: config.natsPassword });
  const handle = await startDenoExecutor({ ...config, nc, logger });

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      // A second signal takes the default action: a stuck shutdown can still be interrupted.
      Deno.removeSignalListener('SIGINT', onInt);
      Deno.removeSignalListener('SIGTERM', onTerm);
      logger.info({ signal }, 'shutting down');
      try {
        await handle.stop();
        await nc.drain();
        resolve(0);
      } catch (err) {
        logger.error({ err }, 'shutdown failed');
        resolve(1);
      }
    };
    const onInt = () => void shutdown('SIGINT');
    const onTerm = () => void shutdown('SIGTERM');
    Deno.addSignalListener('SIGINT', onInt);
    Deno.addSignalListener('SIGTERM', onTerm);
    // Reconnects are unlimited, so a closed connection means it was refused for good (e.g. credentials).
    void nc.closed().then(async (err) => {
      if (stopping) return;
      stopping = true;
      logger.error({ err }, 'NATS connection closed; exiting');
      // Running attempts are shut down; what cannot be reported now the next start cleans up.
      const bounded = new Promise((r) => setTimeout(r, config.graceMs + 5000));
      await Promise.race([handle.stop().catch(() => undefined), bounded]);
      resolve(1);
    });
  });
}

if (import.meta.main) {
  main().then(
    (code) => Deno.exit(code),
    (err) => {
      console.error(err);
      Deno.exit(1);
    },
  );
}
