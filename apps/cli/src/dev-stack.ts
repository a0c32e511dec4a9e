import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { NATS_INSTALL_HINT, findNatsServer, startNatsServer, type RunningNatsServer } from '../../../libs/messaging/src/nats-server';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import type { ApiToken } from '../../api/src/api-tokens';
import type { GrpcServerOptions } from '../../api/src/grpc/jobs.grpc-server';
import { createApiApp, type ApiApp, type ApiTlsOptions } from '../../api/src/api.module';
import { JobsProjection } from '../../api/src/projections/jobs.projection';
import { startNodeExecutor, type NodeExecutorHandle } from '../../executor/src/node/main';
import type { Logger } from '../../orchestrator/src/logger';
import { createOrchestratorApp } from '../../orchestrator/src/orchestrator.module';
import { Packager, type PackagerOptions } from '../../packager/src/packager';
import type { Orchestrator } from '../../orchestrator/src/orchestrator';
import { killStaleProcess, writePidFile } from './pid-file';

export interface DevStackOptions {
  /** Everything persistent lives here (default ./.jobline). */
  dataDir: string;
  /** Use this NATS instead of starting a nats-server child. */
  natsUrl?: string;
  /** REST port (default 8080; taken → a free one, said in the log). 0 = a free port. false = no API. */
  apiPort?: number | false;
  apiHost?: string;
  /** Slots of the local executor (default: 4). 0 = no local executor. */
  executorCapacity?: number;
  /** SIGTERM → SIGKILL grace of the local executor (default 5000 ms). */
  graceMs?: number;
  /** An executor silent this long has lost its attempts (default 10 s). */
  leaseMs?: number;
  /** The packager's options (what it may fetch: file:// git URLs, private addresses...); false: no packager. */
  packager?: PackagerOptions | false;
  /** More API credentials besides the dev token (e.g. a second, non-admin owner in tests). */
  extraTokens?: readonly ApiToken[];
  /** Also serve gRPC (mTLS) with the API; see GrpcServerOptions (its host defaults to apiHost). */
  grpc?: GrpcServerOptions;
  /** Serve REST and /v1/ws over HTTPS (TLS 1.3; a client certificate of `ca` names the caller, else the bearer token). Default: plain HTTP. */
  apiTls?: ApiTlsOptions;
  logger: Logger & { info?(message: string, ...rest: unknown[]): void };
}

export interface DevStack {
  dataDir: string;
  natsUrl: string;
  /** Base URL of the REST API, or null without one. */
  apiUrl: string | null;
  /** The gRPC port, when options.grpc was given. */
  grpcPort?: number;
  /** The local bearer token (owner `dev`). */
  token: string;
  nc: NatsConnection;
  eventStore: SqliteEventStore;
  projection: JobsProjection;
  orchestrator: Orchestrator;
  executor: NodeExecutorHandle | null;
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

/**
 * The whole system in one process on the embedded defaults: a nats-server child (unless
 * natsUrl), SQLite event store, checkpoints and read model in dataDir, the orchestrator,
 * one local executor and the REST API.
 */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const dataDir = resolve(options.dataDir);
  const log = options.logger;
  mkdirSync(dataDir, { recursive: true });
  const cleanups: (() => Promise<void> | void)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn(`dev: shutdown step failed: ${(err as Error).message}`);
      }
    }
    cleanups.length = 0;
  };

  try {
    let natsUrl = options.natsUrl;
    if (!natsUrl) {
      if (!findNatsServer()) throw new Error(`nats-server was not found. ${NATS_INSTALL_HINT}`);
      const pidFile = join(dataDir, 'nats-server.pid');
      // A previous run killed with SIGKILL leaves its nats-server child holding the store.
      if (await killStaleProcess(pidFile, ['nats-server', join(dataDir, 'nats')])) log.warn('dev: stopped the nats-server left by a previous run');
      const server: RunningNatsServer = await startNatsServer({ storeDir: join(dataDir, 'nats') });
      writePidFile(pidFile, server.process.pid!);
      cleanups.push(() => server.stop());
      natsUrl = server.url;
      log.log(`dev: nats-server (JetStream, store in ${join(dataDir, 'nats')}) on ${natsUrl}`);
    }
    const nc = await connectNats({ servers: natsUrl, name: 'jobline-dev' });
    cleanups.push(() => nc.drain());
    await ensureStreams(await jetstreamManager(nc));

    const eventStore = new SqliteEventStore({ path: join(dataDir, 'events.db') });
    cleanups.push(() => eventStore.close());
    const checkpoints = new SqliteCheckpointStore({ path: join(dataDir, 'checkpoints.db') });
    cleanups.push(() => checkpoints.close());

    const { app: orchestratorApp, orchestrator } = await createOrchestratorApp({ eventStore, checkpoints, nc, logger: log, leaseMs: options.leaseMs, packager: options.packager !== false });
    cleanups.push(() => orchestrator.stop());
    cleanups.push(() => orchestratorApp.close() as Promise<void>);
    if (options.packager !== false) {
      mkdirSync(join(dataDir, 'packager'), { recursive: true });
      const packager = await Packager.start(nc, { log: (m) => log.debug?.(m), warn: (m) => log.warn(m) }, { workDir: join(dataDir, 'packager'), ...options.packager });
      cleanups.push(() => packager.stop());
    }

    const projection = new JobsProjection({ path: join(dataDir, 'read-models.db'), onWarning: (m) => log.warn(`projection: ${m}`) });
    cleanups.push(() => projection.close());
    await projection.catchUp(eventStore);
    projection.start(eventStore);

    let executor: NodeExecutorHandle | null = null;
    const capacity = options.executorCapacity ?? 4;
    if (capacity > 0) {
      executor = await startNodeExecutor({
        nc,
        executorId: 'local',
        capacity,
        graceMs: options.graceMs,
        workRoot: join(dataDir, 'work'),
        ensureStreams: false,
        logger: pinoLike(log),
      });
      const running = executor;
      cleanups.push(() => running.stop());
      const sb = running.sandbox;
      log.log(`dev: local executor with ${capacity} slots, sandbox ${sb.kind}${sb.note ? ` (${sb.note})` : ''}`);
    }

    const token = devToken(dataDir);
    let api: ApiApp | null = null;
    if (options.apiPort !== false) {
      api = await startApi({ nc, eventStore, projection, token, extraTokens: options.extraTokens ?? [], grpc: options.grpc, tls: options.apiTls, host: options.apiHost ?? '127.0.0.1', port: options.apiPort ?? 8080, log });
      const started = api;
      cleanups.push(() => started.close());
    }

    return {
      dataDir,
      natsUrl,
      apiUrl: api?.url ?? null,
      ...(api?.grpcPort !== undefined ? { grpcPort: api.grpcPort } : {}),
      token,
      nc,
      eventStore,
      projection,
      orchestrator,
      executor,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function startApi(o: {
  nc: NatsConnection;
  eventStore: SqliteEventStore;
  projection: JobsProjection;
  token: string;
  extraTokens: readonly ApiToken[];
  grpc?: GrpcServerOptions;
  tls?: ApiTlsOptions;
  host: string;
  port: number;
  log: DevStackOptions['logger'];
}): Promise<ApiApp> {
  const base = { nc: o.nc, eventStore: o.eventStore, projection: o.projection, tokens: [{ sha256: sha256Hex(o.token), owner: DEV_OWNER, admin: true }, ...o.extraTokens], grpc: o.grpc, tls: o.tls, host: o.host, logger: { ...o.log, log: (m: string) => o.log.debug?.(m) } };
  // A taken port (REST or gRPC) falls back to a free one, said in the log; anything else fails.
  let port = o.port;
  let grpc = o.grpc;
  for (;;) {
    try {
      return await createApiApp({ ...base, grpc, port });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EADDRINUSE' && port !== 0) {
        o.log.warn(`dev: port ${port} is taken, using a free port for REST instead`);
        port = 0;
      } else if (grpc && grpc.port !== 0 && /EADDRINUSE/.test(String(e.message))) {
        o.log.warn(`dev: gRPC port ${grpc.port ?? 50051} is taken, using a free port instead`);
        grpc = { ...grpc, port: 0 };
      } else {
        throw err;
      }
    }
  }
}

function pinoLike(log: Logger) {
  const fmt = (fields: Record<string, unknown>) => (Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '');
  return {
    info: (fields: Record<string, unknown>, message: string) => log.debug?.(`executor: ${message}${fmt(fields)}`),
    warn: (fields: Record<string, unknown>, message: string) => log.warn(`executor: ${message}${fmt(fields)}`),
    error: (fields: Record<string, unknown>, message: string) => log.error(`executor: ${message}${fmt(fields)}`),
  };
}

