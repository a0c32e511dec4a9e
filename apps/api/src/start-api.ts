import type { NatsConnection } from '@nats-io/nats-core';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import { ConfigError, type JoblineConfig } from '../../../libs/config/src';
import { loadSigningKey, openEventStore } from '../../../libs/event-store/src';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';
import { connectBus, createLogger, enableExplicitGc, nestLogger, readTlsDir, streamOptions, watchBus, type BusState, type ServiceLogger, type TlsFiles, startTracing } from '../../../libs/service/src';
import { ApiTokensSchema, type ApiToken } from './api-tokens';
import { createApiApp, type ApiApp } from './api.module';
import { JobsProjection } from './projections/jobs.projection';

export interface ApiDeps {
  logger?: ServiceLogger;
  /** An open connection (left open by stop()). Default: a reconnecting connection of its own. */
  nc?: NatsConnection;
  /** An open store (left open by stop()), e.g. the SQLite instance dev shares with its orchestrator. */
  eventStore?: EventStore;
  /** Credentials besides JOBLINE_TOKENS_FILE (dev's own token); with them the file is optional. */
  extraTokens?: readonly ApiToken[];
  /** Served on the api's /metrics too (dev: the other services' registries). */
  extraRegistries?: readonly Registry[];
  /** A taken REST or gRPC port falls back to a free one, said in the log (dev). Default false: a taken port is an error. */
  portFallback?: boolean;
}

export interface ApiHandle {
  api: ApiApp;
  url: string;
  grpcPort?: number;
  projection: JobsProjection;
  stop(): Promise<void>;
}

/** The API tokens of JOBLINE_TOKENS_FILE, validated; problems name the file. */
export function readTokensFile(file: string): ApiToken[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError([{ variable: 'JOBLINE_TOKENS_FILE', message: `${file}: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  const tokens = ApiTokensSchema.safeParse(raw);
  if (!tokens.success) {
    throw new ConfigError([{ variable: 'JOBLINE_TOKENS_FILE', message: `${file}: ${tokens.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}` }]);
  }
  return tokens.data;
}

/**
 * What the TLS folder allows: gRPC (mTLS) wherever the certificates are there, HTTPS when
 * asked. Fails closed: a TLS folder, gRPC port or HTTPS asked for explicitly without the
 * certificates stops start-up rather than serving less than configured.
 */
export function apiTls(config: JoblineConfig): { files: TlsFiles | null; grpc: boolean; https: boolean; note: string | null } {
  const dir = resolve(config.api.tlsDir);
  const files = readTlsDir(dir);
  const missing = `${dir} lacks ca.crt, server.crt or server.key (\`jobline certs init\` writes them)`;
  const problems = [];
  if (!files && config.api.tlsDirExplicit) problems.push({ variable: 'JOBLINE_TLS_DIR', message: missing });
  if (!files && config.api.https) problems.push({ variable: 'JOBLINE_API_HTTPS', message: `HTTPS needs certificates: ${missing}` });
  if (!files && config.api.grpcPort !== null && config.explicit.has('JOBLINE_GRPC_PORT')) problems.push({ variable: 'JOBLINE_GRPC_PORT', message: `gRPC needs mTLS certificates: ${missing}; or set it to off` });
  if (problems.length) throw new ConfigError(problems);
  const grpc = files !== null && config.api.grpcPort !== null;
  return { files, grpc, https: config.api.https, note: !files && config.api.grpcPort !== null ? `gRPC off: ${missing}` : null };
}

/** Starts the api as configured: REST, WebSocket, gRPC (with certificates), the jobs read model. */
export async function startApi(config: JoblineConfig, deps: ApiDeps = {}): Promise<ApiHandle> {
  const logger = deps.logger ?? createLogger({ service: 'api', ...config.log });
  // Log traffic leaves Buffers only a full collection frees: let the api ask for one (LogMemory).
  enableExplicitGc();
  const fileTokens = config.api.tokensFile ? readTokensFile(resolve(config.api.tokensFile)) : null;
  if (!fileTokens && !deps.extraTokens) {
    throw new ConfigError([{ variable: 'JOBLINE_TOKENS_FILE', message: 'is required: a JSON file [{"sha256": "<hex of the token>", "owner": "...", "admin": false}]' }]);
  }
  const tokens = [...(fileTokens ?? []), ...(deps.extraTokens ?? [])];
  if (tokens.length === 0) logger.warn({}, 'api: no API tokens configured: every /v1 request will be refused');
  const tls = apiTls(config);
  if (tls.note) logger.info({}, `api: ${tls.note}`);

  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err }, 'api: a shutdown step failed');
      }
    }
  };
  // First in, last out: spans of the whole shutdown are still exported.
  const tracing = startTracing(config, 'api', logger);
  cleanups.push(() => tracing.stop());
  try {
    let nc = deps.nc;
    let bus: BusState;
    if (nc) bus = watchBus(nc, logger);
    else {
      const b = await connectBus(config, 'jobline-api', logger);
      nc = b.nc;
      bus = b.state;
      cleanups.push(() => b.close());
    }
    let eventStore = deps.eventStore;
    let describe = 'the given event store';
    if (!eventStore) {
      // The api only reads the store (histories, replays); the checkpoints file that comes with it stays unused.
      const store = openEventStore(config.eventStore, resolve(config.dataDir));
      eventStore = store.eventStore;
      describe = store.describe;
      cleanups.push(() => store.close());
    }
    const projection = new JobsProjection({
      path: join(resolve(config.dataDir), 'read-models.db'),
      onWarning: (message, error) => logger.warn({ err: error }, `projection: ${message}`),
    });
    cleanups.push(() => projection.close());
    // Answer from a read model that has caught up with the store (readiness says so while it follows).
    await projection.catchUp(eventStore);
    const base = {
      nc,
      bus,
      signingKey: loadSigningKey(resolve(config.signingKeyFile), { create: true }),
      eventStore,
      projection,
      tokens,
      host: config.api.host,
      submitTimeoutMs: config.api.submitTimeoutMs,
      executorAliveMs: config.leaseMs,
      streams: streamOptions(config),
      logger: nestLogger(logger),
      extraRegistries: deps.extraRegistries,
      dashboard: config.api.dashboardDir === false ? (false as const) : config.api.dashboardDir ? { dir: resolve(config.api.dashboardDir) } : {},
      ...(tls.https && tls.files ? { tls: tls.files } : {}),
    };
    let port = config.api.port;
    let grpcPort = config.api.grpcPort ?? 50051;
    let api: ApiApp;
    for (;;) {
      try {
        api = await createApiApp({ ...base, port, ...(tls.grpc && tls.files ? { grpc: { port: grpcPort, tls: tls.files } } : {}) });
        break;
      } catch (err) {
        const message = String((err as Error).message);
        if (deps.portFallback && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && port !== 0) {
          logger.warn({ port }, `api: port ${port} is taken, using a free port for REST instead`);
          port = 0;
        } else if (deps.portFallback && tls.grpc && grpcPort !== 0 && /EADDRINUSE/.test(message)) {
          logger.warn({ port: grpcPort }, `api: gRPC port ${grpcPort} is taken, using a free port instead`);
          grpcPort = 0;
        } else throw err;
      }
    }
    cleanups.push(() => api.close());
    logger.info({ url: api.url, grpcPort: api.grpcPort, store: describe, https: tls.https }, 'api listening');
    return { api, url: api.url, ...(api.grpcPort !== undefined ? { grpcPort: api.grpcPort } : {}), projection, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
