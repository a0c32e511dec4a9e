import { requestIdMiddleware } from './http/request-id';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { Logger, Module, type DynamicModule, type INestApplication, type LoggerService, type LogLevel, type NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { ServerOptions as HttpsServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';
import type { SigningKey } from '../../../libs/event-store/src/chain-checkpoint';
import { chainCheckpointStoreFor } from '../../../libs/event-store/src/chain-checkpoint.stores';
import { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { ensureStreams, type StreamOptions } from '../../../libs/messaging/src/streams';
import { httpTracingMiddleware } from './api-tracing';
import { API_CONTEXT, type ApiContext } from './api.context';
import { TokenRegistry, type ApiToken } from './api-tokens';
import { ExecutorsRegistry } from './executors.registry';
import { PastStates } from './history/past-states';
import { AuthGuard, TOKEN_REGISTRY } from './http/auth.guard';
import { ProblemFilter } from './http/problem.filter';
import { JobsController } from './jobs.controller';
import { JobsService } from './jobs.service';
import { ProvenanceController } from './provenance.controller';
import { ProvenanceService } from './provenance.service';
import { LogsService } from './logs/logs.service';
import { API_METRICS, ApiMetrics } from './metrics/api-metrics';
import { MetricsController } from './metrics/metrics.controller';
import type { JobsProjection } from './projections/jobs.projection';
import { HealthController, SystemController } from './system.controller';
import { DashboardAssets, defaultDashboardDir } from './web/dashboard-assets';
import { DASHBOARD_ASSETS, DashboardController } from './web/dashboard.controller';
import { WS_GATEWAY_DEFAULTS, WS_GATEWAY_OPTIONS, WsGateway, type WsGatewayOptions } from './ws/ws.gateway';
import { JoblineWsAdapter } from './ws/ws.adapter';
import { LogMemory, type LogMemoryOptions } from './logs/log-memory';
import { LogReader, eventStoreHistory, type LogReaderOptions } from '../../../libs/messaging/src/log-reader';
import { startGrpcServer, type GrpcServerHandle, type GrpcServerOptions } from './grpc/jobs.grpc-server';
import type { Registry } from 'prom-client';
import { watchBus, type BusState } from '../../../libs/service/src/bus';

export interface ApiOptions {
  /** An open connection; the caller owns it (close() leaves it open). */
  nc: NatsConnection;
  /** Read for job histories (events, `?at=` replays); the api never appends to it. */
  eventStore: EventStore;
  /**
   * The jobs read model. createApiApp starts it on `eventStore` (a no-op when the caller
   * already did); close() leaves it running and open: the caller owns it and closes it.
   */
  projection: JobsProjection;
  /** Who may call, by SHA-256 of the bearer token. */
  tokens: readonly ApiToken[];
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port (see the returned url). */
  port?: number;
  /** Nest logger, or the levels of its console logger (default ['error', 'warn']); false for none. */
  logger?: LoggerService | LogLevel[] | false;
  /** How long POST /v1/jobs waits for the submission to be recorded before a 503 (default 10,000 ms). */
  submitTimeoutMs?: number;
  /** An executor silent longer than this is shown as not alive (default 10,000 ms). */
  executorAliveMs?: number;
  /** Signs attestations and checks chain checkpoints; null (default): none (verify trusts no checkpoint, no attestations). */
  signingKey?: SigningKey | null;
  /** Create or update the JetStream streams at start (default true). */
  ensureStreams?: boolean;
  streams?: StreamOptions;
  /** WebSocket gateway (/v1/ws) limits; see WsGatewayOptions. */
  ws?: WsGatewayOptions;
  /** The log reader behind REST `?follow`, /v1/ws and gRPC Logs (window, read-ahead, pulls, retries); see LogReaderOptions. */
  logs?: Omit<LogReaderOptions, 'js' | 'jsm' | 'history'>;
  /** Full collections after log traffic (only when node runs with --expose-gc); see LogMemory. */
  logMemory?: LogMemoryOptions;
  /** Also serve gRPC (jobline.v1.JobService, mTLS, TLS 1.3) with these options; default: no gRPC. */
  grpc?: GrpcServerOptions;
  /**
   * Serve REST and /v1/ws over HTTPS (TLS 1.3 only) instead of plain HTTP. A client
   * certificate is asked for but not required: one that chains to `ca` names the caller
   * (CN = owner, OU=admin = admin, as on gRPC); without one, or with one that does not
   * verify, the bearer token decides. Default: plain HTTP.
   */
  tls?: ApiTlsOptions;
  /** The state of `nc` (default: followed from its status events). */
  bus?: BusState;
  /** More registries served on GET /metrics after the api's own (`jobline dev`: the other services'). */
  extraRegistries?: readonly Registry[];
  /**
   * The web dashboard at `/`: the folder `vite build` wrote (default <repository>/dist/web,
   * where `npm run build` puts it), or false for none. A folder without index.html is
   * served as a 404 saying how to build it.
   */
  dashboard?: { dir?: string } | false;
}

/** PEM (string or bytes) of the server certificate and key, and of the CA that client certificates must chain to. */
export interface ApiTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
}

export interface ApiApp {
  app: INestApplication;
  /** Where it listens, e.g. http://127.0.0.1:8080 (https:// with options.tls). */
  url: string;
  /** The gRPC port, when options.grpc was given. */
  grpcPort?: number;
  /** Ends log follows, stops listening and stops following heartbeats; leaves nc, the store and the projection open. */
  close(): Promise<void>;
}

/** Every controller of the api (the OpenAPI test checks each route is documented). */
export const API_CONTROLLERS = [JobsController, ProvenanceController, SystemController, HealthController, MetricsController, DashboardController];

@Module({})
export class ApiModule {
  static forRoot(ctx: ApiContext, tokens: TokenRegistry, metrics: ApiMetrics = new ApiMetrics(ctx), dashboard: DashboardAssets | null = null, ws: WsGatewayOptions = {}): DynamicModule {
    return {
      module: ApiModule,
      controllers: API_CONTROLLERS,
      providers: [
        { provide: API_CONTEXT, useValue: ctx },
        { provide: DASHBOARD_ASSETS, useValue: dashboard },
        { provide: TOKEN_REGISTRY, useValue: tokens },
        { provide: API_METRICS, useValue: metrics },
        { provide: WS_GATEWAY_OPTIONS, useValue: { ...WS_GATEWAY_DEFAULTS, ...stripUndefined(ws) } },
        JobsService,
        ProvenanceService,
        LogsService,
        AuthGuard,
        WsGateway,
      ],
    };
  }
}

/** Nest hands these to https.createServer as they are; its HttpsOptions type just lists fewer of them. */
function httpsOptions(tls: ApiTlsOptions): NestApplicationOptions['httpsOptions'] {
  const o: HttpsServerOptions = {
    cert: tls.cert,
    key: tls.key,
    ca: tls.ca,
    // Asked for, not required, so bearer tokens still work; callerFromRequest trusts only `socket.authorized`.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
  };
  return o as NestApplicationOptions['httpsOptions'];
}

/** The REST api as a Nest (express) application, listening once this resolves. */
export async function createApiApp(options: ApiOptions): Promise<ApiApp> {
  const tokens = new TokenRegistry(options.tokens);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 8080;
  const submitTimeoutMs = options.submitTimeoutMs ?? 10_000;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port ${port}`);
  if (!(submitTimeoutMs > 0)) throw new Error(`invalid submitTimeoutMs ${submitTimeoutMs}`);

  const { nc } = options;
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  if (options.ensureStreams ?? true) await ensureStreams(jsm, options.streams);
  options.projection.start(options.eventStore);
  const executors = new ExecutorsRegistry(nc, { aliveMs: options.executorAliveMs });
  executors.start();
  const logs = new LogReader({
    onStall: (jobId, afterSeq) => {
      if (options.logger !== false) new Logger('logs').warn(`a read of the log of job ${jobId} got nothing while behind (after stream sequence ${afterSeq}): opened again from there`);
    },
    ...options.logs,
    js,
    jsm,
    // The projection's per-job listener nudges the reader; the history itself is read from the store.
    history: eventStoreHistory(options.eventStore, (jobId, listener) => options.projection.onChange(jobId, () => listener())),
  });
  const logMemory = new LogMemory(logs, options.logMemory);
  // Past read models go beside the live one (same volume), or to the temp folder for one in memory.
  const past = new PastStates(options.eventStore, { dir: options.projection.file ? dirname(options.projection.file) : undefined });
  const ctx: ApiContext = {
    nc,
    js,
    jsm,
    eventStore: options.eventStore,
    projection: options.projection,
    past,
    publisher: new JetStreamPublisher(js, { timeoutMs: Math.min(submitTimeoutMs, 5000) }),
    executors,
    submitTimeoutMs,
    bus: options.bus ?? watchBus(nc),
    logs,
    signingKey: options.signingKey ?? null,
    chainCheckpoints: chainCheckpointStoreFor(options.eventStore) ?? null,
  };

  const metrics = new ApiMetrics({ ...ctx, extraRegistries: options.extraRegistries });
  const dashboardDir = options.dashboard === false ? null : (options.dashboard?.dir ?? defaultDashboardDir());
  const dashboard = dashboardDir === null ? null : DashboardAssets.load(dashboardDir);
  if (dashboardDir !== null && !dashboard && options.logger !== false) {
    new Logger('api').warn(`no dashboard in ${dashboardDir} (run \`npm run build\`): / answers 404`);
  }
  let app: INestApplication;
  let grpcServer: GrpcServerHandle | null = null;
  try {
    app = await NestFactory.create(ApiModule.forRoot(ctx, tokens, metrics, dashboard, options.ws), {
      // Bodies are read by the routes that take one (JsonBody), after authentication, with a 1 MiB limit.
      bodyParser: false,
      logger: options.logger ?? ['error', 'warn'],
      abortOnError: false,
      forceCloseConnections: true,
      ...(options.tls ? { httpsOptions: httpsOptions(options.tls) } : {}),
    });
    const logger = options.logger === false ? undefined : new Logger('api');
    app.useGlobalFilters(new ProblemFilter(logger));
    (app.getHttpAdapter().getInstance() as { disable(setting: string): void }).disable('x-powered-by');
    // Before the routes (registered by listen): every request gets its id (a malformed X-Request-Id is refused here) and is timed.
    app.use(requestIdMiddleware());
    app.use(httpTracingMiddleware());
    app.use(metrics.httpMiddleware());
    app.useWebSocketAdapter(new JoblineWsAdapter(app, tokens));
    await app.listen(port, host);
  } catch (err) {
    logMemory.stop();
    logs.close();
    executors.stop();
    await past.close();
    throw err;
  }
  if (options.grpc) {
    try {
      grpcServer = await startGrpcServer(ctx, app.get(JobsService), { host, ...options.grpc }, app.get(ProvenanceService));
    } catch (err) {
      logMemory.stop();
      logs.close();
      executors.stop();
      await app.close();
      await past.close();
      throw err;
    }
  }
  const address = app.getHttpServer().address() as AddressInfo;
  const url = `${options.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  let closing: Promise<void> | null = null;
  return {
    app,
    url,
    ...(grpcServer ? { grpcPort: grpcServer.port } : {}),
    close: () =>
      (closing ??= (async () => {
        executors.stop();
        await grpcServer?.close();
        // Every follow still open ends (cut, not ended: its follower resumes elsewhere from its last offset).
        logs.close();
        logMemory.stop();
        await app.close();
        await past.close();
      })()),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
