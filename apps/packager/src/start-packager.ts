import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Counter, Registry } from 'prom-client';
import type { JoblineConfig } from '../../../libs/config/src';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { connectBus, createLogger, messageLogger, startServiceHttp, streamOptions, watchBus, type BusState, type ServiceHttp, type ServiceLogger, startTracing } from '../../../libs/service/src';
import { Packager, type PackagerOptions } from './packager';

export interface PackagerDeps {
  logger?: ServiceLogger;
  /** An open connection (left open by stop()). Default: a reconnecting connection of its own. */
  nc?: NatsConnection;
}

export interface PackagerHandle {
  packager: Packager;
  registry: Registry;
  http: ServiceHttp | null;
  stop(): Promise<void>;
}

/** The packager options the configuration asks for. */
export function packagerOptions(config: JoblineConfig): PackagerOptions {
  const p = config.packager;
  return {
    git: { allowFileUrls: p.allowFileUrls, ...(p.gitHosts ? { allowedHosts: p.gitHosts } : {}), timeoutMs: p.gitTimeoutMs, ...(p.gitCacheMaxBytes !== null ? { cacheMaxBytes: p.gitCacheMaxBytes } : {}) },
    data: {
      ...(p.dataHosts ? { allowedHosts: p.dataHosts } : {}),
      allowPrivateAddresses: p.allowPrivateAddresses,
      maxBytes: p.maxDataBytes,
      connectTimeoutMs: p.connectTimeoutMs,
      totalTimeoutMs: p.totalTimeoutMs,
    },
    baseImage: p.baseImage,
    concurrency: p.concurrency,
    workDir: resolve(p.workDir),
  };
}

/** Starts a packager as configured: builds the bundles of jobs with a source or data. */
export async function startPackager(config: JoblineConfig, deps: PackagerDeps = {}): Promise<PackagerHandle> {
  const logger = deps.logger ?? createLogger({ service: 'packager', ...config.log });
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err }, 'packager: a shutdown step failed');
      }
    }
  };
  // First in, last out: spans of the whole shutdown are still exported.
  const tracing = startTracing(config, 'packager', logger);
  cleanups.push(() => tracing.stop());
  try {
    let nc = deps.nc;
    let bus: BusState;
    if (nc) bus = watchBus(nc, logger);
    else {
      const b = await connectBus(config, 'jobline-packager', logger);
      nc = b.nc;
      bus = b.state;
      cleanups.push(() => b.close());
    }
    await ensureStreams(await jetstreamManager(nc), streamOptions(config));
    const options = packagerOptions(config);
    mkdirSync(options.workDir!, { recursive: true });
    const registry = new Registry();
    const results = new Counter({ name: 'jobline_bundles_total', help: 'Packaging results published, by result (packaged | failed).', labelNames: ['result'], registers: [registry] });
    const log = messageLogger(logger);
    const packager = await Packager.start(nc, { log: (m) => log.debug(m), warn: (m) => log.warn(m) }, { ...options, onResult: (r) => results.inc({ result: r.kind }) });
    cleanups.push(() => packager.stop());
    let http: ServiceHttp | null = null;
    if (config.packager.httpPort !== null) {
      http = await startServiceHttp({
        service: 'packager',
        host: config.api.host,
        port: config.packager.httpPort,
        registries: [registry],
        readiness: () => (bus.connected ? { ready: true, reasons: [] } : { ready: false, reasons: [`nats: ${bus.reason}`] }),
      });
      const h = http;
      cleanups.push(() => h.close());
    }
    logger.info({ workDir: options.workDir, http: http?.url }, 'packager taking package orders');
    return { packager, registry, http, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
