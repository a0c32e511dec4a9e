import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig, type JoblineConfig } from '../../../libs/config/src';
import { SqliteCheckpointStore, SqliteEventStore, SqliteSnapshotStore, openEventStore } from '../../../libs/event-store/src';
import type { CheckpointStore, EventStore, SnapshotStore } from '../../../libs/event-store/src/event-store.port';
import { connectNats } from '../../../libs/messaging/src/connection';
import { NATS_INSTALL_HINT, findNatsServer, startNatsServer, type RunningNatsServer } from '../../../libs/messaging/src/nats-server';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { busClosedForGood, createLogger, loggerTo, streamOptions, type ServiceLogger } from '../../../libs/service/src';
import type { ApiToken } from '../../api/src/api-tokens';
import { JobsProjection } from '../../api/src/projections/jobs.projection';
import { startApi } from '../../api/src/start-api';
import { startExecutorThread, type ExecutorThreadHandle } from '../../executor/src/node/executor-thread';
import type { Orchestrator } from '../../orchestrator/src/orchestrator';
import { startOrchestrator } from '../../orchestrator/src/start-orchestrator';
import { startPackager } from '../../packager/src/start-packager';
import { killStaleProcess, writePidFile } from './pid-file';

/** A message-first logger (what tests and benchmarks pass to count or silence what the services log). */
export interface DevLogger {
  debug?(message: string, ...rest: unknown[]): void;
  log(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

export interface DevStackOptions {
  /** Everything persistent lives here (JOBLINE_DATA_DIR; default ./.jobline). */
  dataDir: string;
  /** JOBLINE_* variables, as the environment gives them; the typed options below win over them. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Use this NATS instead of starting a nats-server child (JOBLINE_NATS_URL). */
  natsUrl?: string;
  /** REST port (JOBLINE_API_PORT; default 8080, a taken one falls back to a free one). 0 = a free port. false = no API. */
  apiPort?: number | false;
  apiHost?: string;
  /** Slots of the local executor (JOBLINE_EXECUTOR_CAPACITY; default 4). 0 = no local executor. */
  executorCapacity?: number;
  /** JOBLINE_GRACE_MS. */
  graceMs?: number;
  /** JOBLINE_LEASE_MS. */
  leaseMs?: number;
  /** Packager settings as JOBLINE_PACKAGER_* would give them; false: no packager (JOBLINE_PACKAGER=false). */
  packager?: { allowFileUrls?: boolean; allowPrivateAddresses?: boolean } | false;
  /** More API credentials besides the dev token (e.g. a second, non-admin owner in tests). */
  extraTokens?: readonly ApiToken[];
  /** Where the services log (default: each its own pino logger, as configured). */
  logger?: DevLogger;
}

export interface DevStack {
  dataDir: string;
  config: JoblineConfig;
  natsUrl: string;
  /** Base URL of the REST API, or null without one. */
  apiUrl: string | null;
  /** The gRPC port, when the TLS folder holds the certificates. */
  grpcPort?: number;
  /** The local bearer token (owner `dev`). */
  token: string;
  /** A connection of dev's own (for tests and tools; the services have theirs). */
  nc: NatsConnection;
  eventStore: EventStore;
  /** The jobs read model (the api's; without an api, one dev keeps for tools and benchmarks). */
  projection: JobsProjection;
  orchestrator: Orchestrator;
  /** The executors (local, and SSH hosts of JOBLINE_SSH_INVENTORY) on their thread, if any run. */
  executors: ExecutorThreadHandle | null;
  /** Stops everything, in the order that loses nothing: intake first, the bus last. */
  stop(): Promise<void>;
}

export const DEV_OWNER = 'dev';

/** The dev token, created once per data folder (readable by its owner only). */
export function devToken(dataDir: string): string {
  const file = join(dataDir, 'dev-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = `jl_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}

export const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** The environment a DevStackOptions stands for: its typed fields as the JOBLINE_* variables they are. */
export function devEnv(o: DevStackOptions): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...o.env, JOBLINE_DATA_DIR: o.dataDir };
  if (o.natsUrl !== undefined) env.JOBLINE_NATS_URL = o.natsUrl;
  if (o.apiPort !== undefined && o.apiPort !== false) env.JOBLINE_API_PORT = String(o.apiPort);
  if (o.apiHost !== undefined) env.JOBLINE_API_HOST = o.apiHost;
  if (o.executorCapacity !== undefined) env.JOBLINE_EXECUTOR_CAPACITY = String(o.executorCapacity);
  if (o.graceMs !== undefined) env.JOBLINE_GRACE_MS = String(o.graceMs);
  if (o.leaseMs !== undefined) env.JOBLINE_LEASE_MS = String(o.leaseMs);
  if (o.packager === false) env.JOBLINE_PACKAGER = 'false';
  else if (o.packager) {
    if (o.packager.allowFileUrls !== undefined) env.JOBLINE_PACKAGER_ALLOW_FILE_URLS = String(o.packager.allowFileUrls);
    if (o.packager.allowPrivateAddresses !== undefined) env.JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES = String(o.packager.allowPrivateAddresses);
  }
  return env;
}

/** `jobline dev` for tests and tools: the options as variables, then exactly what `jobline dev` runs. */
export function startDevStack(o: DevStackOptions): Promise<DevStack> {
  return startDev(loadConfig(devEnv(o), 'dev'), { api: o.apiPort !== false, extraTokens: o.extraTokens, logger: o.logger });
}

export interface DevExtras {
  /** Run the api (default true). */
  api?: boolean;
  extraTokens?: readonly ApiToken[];
  logger?: DevLogger;
  /** The executor thread ended without being asked to (`jobline dev` stops, exit 1). */
  onExecutorLost?: (why: string) => void;
}

/**
 * The whole system in one process on the embedded defaults, from the same start functions and
 * configuration as the separate services: a nats-server child (unless JOBLINE_NATS_URL), the
 * orchestrator, a packager (unless JOBLINE_PACKAGER=false), a local executor (unless capacity
 * 0) and the SSH hosts of JOBLINE_SSH_INVENTORY on a worker thread of their own, and the api
 * with a dev token. In one process
 * the api and the orchestrator share one event store instance, so the read model follows
 * appends at once instead of by polling.
 */
export async function startDev(config: JoblineConfig, extras: DevExtras = {}): Promise<DevStack> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const loggerFor = (service: string): ServiceLogger =>
    extras.logger ? loggerTo(extras.logger, service, config.log.level) : createLogger({ service, ...config.log });
  const log = loggerFor('dev');
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ err }, `dev: shutdown step failed: ${(err as Error).message}`);
      }
    }
  };

  try {
    let natsUrl = config.nats.servers?.join(',');
    if (!natsUrl) {
      if (!findNatsServer()) throw new Error(`nats-server was not found. ${NATS_INSTALL_HINT}`);
      const pidFile = join(dataDir, 'nats-server.pid');
      // A previous run killed with SIGKILL leaves its nats-server child holding the store.
      if (await killStaleProcess(pidFile, ['nats-server', join(dataDir, 'nats')])) log.warn({}, 'dev: stopped the nats-server left by a previous run');
      const server: RunningNatsServer = await startNatsServer({ storeDir: join(dataDir, 'nats') });
      writePidFile(pidFile, server.process.pid!);
      cleanups.push(() => server.stop());
      natsUrl = server.url;
      log.info({ url: natsUrl }, `dev: nats-server (JetStream, store in ${join(dataDir, 'nats')}) on ${natsUrl}`);
    }
    // From here on every service reads the same configuration, with the bus dev started.
    const cfg: JoblineConfig = { ...config, nats: { ...config.nats, servers: natsUrl.split(',') } };
    const nc = await connectNats({ servers: cfg.nats.servers!, name: 'jobline-dev', user: cfg.nats.user, pass: cfg.nats.password });
    cleanups.push(() => nc.drain());
    await ensureStreams(await jetstreamManager(nc), streamOptions(cfg));

    // One store instance for the orchestrator and the api (SQLite wakes its own subscribers at once).
    let eventStore: EventStore;
    let checkpoints: CheckpointStore;
    let snapshots: SnapshotStore | undefined;
    if (cfg.eventStore === 'sqlite') {
      const events = new SqliteEventStore({ path: join(dataDir, 'events.db') });
      const cps = new SqliteCheckpointStore({ path: join(dataDir, 'checkpoints.db') });
      cleanups.push(() => events.close());
      cleanups.push(() => cps.close());
      eventStore = events;
      checkpoints = cps;
      snapshots = new SqliteSnapshotStore({ db: events.database });
    } else {
      const opened = openEventStore(cfg.eventStore, dataDir);
      cleanups.push(() => opened.close());
      eventStore = opened.eventStore;
      checkpoints = opened.checkpoints;
      snapshots = opened.snapshots;
    }

    const orchestrator = await startOrchestrator(cfg, { logger: loggerFor('orchestrator'), eventStore, checkpoints, snapshots });
    cleanups.push(() => orchestrator.stop());
    const registries = [orchestrator.registry];
    if (cfg.orchestrator.packager) {
      const packager = await startPackager(cfg, { logger: loggerFor('packager') });
      cleanups.push(() => packager.stop());
      registries.push(packager.registry);
    }
    let executors: ExecutorThreadHandle | null = null;
    if (cfg.executor.capacity > 0 || cfg.executor.sshInventory) {
      // On a thread of its own (startExecutor there, the same configuration): its work does not
      // wait for the orchestrator's and the api's turns on this event loop.
      executors = await startExecutorThread(cfg, {
        ...(extras.logger ? { logger: extras.logger } : {}),
        onBusClosedForGood: busClosedForGood,
        onUnexpectedExit: (why) => {
          log.error({}, `dev: ${why}; its attempts are lost at their lease, no more run here`);
          extras.onExecutorLost?.(why);
        },
      });
      const ex = executors;
      cleanups.push(() => ex.stop());
      registries.push(ex.registry);
      const sb = ex.sandbox;
      if (sb) log.info({ sandbox: sb.kind }, `dev: local executor with ${cfg.executor.capacity} slots, sandbox ${sb.kind}${sb.note ? ` (${sb.note})` : ''}, on thread ${ex.threadId}`);
      if (ex.sshHosts.length) log.info({ hosts: ex.sshHosts }, `dev: SSH executors for ${ex.sshHosts.join(', ')}`);
    }

    const token = devToken(dataDir);
    let api: Awaited<ReturnType<typeof startApi>> | null = null;
    if (extras.api ?? true) {
      api = await startApi(cfg, {
        logger: loggerFor('api'),
        eventStore,
        extraTokens: [{ sha256: sha256Hex(token), owner: DEV_OWNER, admin: true }, ...(extras.extraTokens ?? [])],
        extraRegistries: registries,
        portFallback: true,
      });
      const a = api;
      cleanups.push(() => a.stop());
    }
    let projection = api?.projection;
    if (!projection) {
      const own = new JobsProjection({ path: join(dataDir, 'read-models.db'), onWarning: (m) => log.warn({}, `projection: ${m}`) });
      cleanups.push(() => own.close());
      await own.catchUp(eventStore);
      own.start(eventStore);
      projection = own;
    }

    return {
      dataDir,
      config: cfg,
      natsUrl,
      apiUrl: api?.url ?? null,
      ...(api?.grpcPort !== undefined ? { grpcPort: api.grpcPort } : {}),
      token,
      nc,
      eventStore,
      projection,
      orchestrator: orchestrator.orchestrator,
      executors,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
