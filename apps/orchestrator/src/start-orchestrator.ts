import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import type { JoblineConfig } from '../../../libs/config/src';
import { openEventStore } from '../../../libs/event-store/src';
import type { CheckpointStore, EventStore, SnapshotStore } from '../../../libs/event-store/src/event-store.port';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { connectBus, createLogger, messageLogger, startServiceHttp, streamOptions, watchBus, type BusState, type ServiceHttp, type ServiceLogger, startTracing } from '../../../libs/service/src';
import type { HandledCommand } from './job-command.handler';
import { Quotas, TERMINAL_PHASES, publicStatus } from '../../../libs/domain/src';
import type { Orchestrator } from './orchestrator';
import { createOrchestratorApp } from './orchestrator.module';
import { ChainCheckpointer } from './chain-checkpointer';
import { chainCheckpointStoreFor, loadSigningKey } from '../../../libs/event-store/src';
import { subjects, type WebhookAttempt } from '../../../libs/contracts/src';
import { readFileSync } from 'node:fs';
import { ConfigError, parseQuotasFile, parseWebhooksFile, type WebhooksFile } from '../../../libs/config/src';
import { WebhookReactor } from './webhooks/webhook-reactor';

/** What `jobline dev` and tests may hand in instead of what the configuration would open. */
export interface OrchestratorDeps {
  logger?: ServiceLogger;
  /** An open connection (left open by stop()). Default: a reconnecting connection of its own. */
  nc?: NatsConnection;
  /** An open store (left open by stop()), e.g. the SQLite instance dev shares with its api. */
  eventStore?: EventStore;
  checkpoints?: CheckpointStore;
  /** Snapshots of the lifecycle folds, with a given `eventStore` (default: none, a start folds from position 0). */
  snapshots?: SnapshotStore;
}

export interface OrchestratorHandle {
  orchestrator: Orchestrator;
  /** Delivers completion webhooks (README "Webhooks"). */
  webhooks: WebhookReactor;
  /** Counters and gauges of this orchestrator (dev serves them on the api's /metrics). */
  registry: Registry;
  /** The /healthz, /readyz, /metrics listener, when JOBLINE_ORCHESTRATOR_HTTP_PORT is not off. */
  http: ServiceHttp | null;
  /** Intake first (consumers), then scheduler and relay, then what it opened. */
  stop(): Promise<void>;
}

/** Starts the orchestrator as configured: the only writer of job streams, the scheduler and the relay. */
export async function startOrchestrator(config: JoblineConfig, deps: OrchestratorDeps = {}): Promise<OrchestratorHandle> {
  const logger = deps.logger ?? createLogger({ service: 'orchestrator', ...config.log });
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.warn({ err }, 'orchestrator: a shutdown step failed');
      }
    }
  };
  // First in, last out: spans of the whole shutdown are still exported.
  const tracing = startTracing(config, 'orchestrator', logger);
  cleanups.push(() => tracing.stop());
  try {
    // Read first: an invalid file refuses the start before anything is opened.
    const quotas = loadQuotas(config);
    let nc = deps.nc;
    let bus: BusState;
    if (nc) bus = watchBus(nc, logger);
    else {
      const b = await connectBus(config, 'jobline-orchestrator', logger);
      nc = b.nc;
      bus = b.state;
      cleanups.push(() => b.close());
    }
    let eventStore = deps.eventStore;
    let checkpoints = deps.checkpoints;
    let snapshots = deps.snapshots;
    let describe = 'the given event store';
    if (!eventStore || !checkpoints) {
      const store = openEventStore(config.eventStore, resolve(config.dataDir));
      eventStore = store.eventStore;
      checkpoints = store.checkpoints;
      snapshots = store.snapshots;
      describe = store.describe;
      cleanups.push(() => store.close());
    }
    await ensureStreams(await jetstreamManager(nc), streamOptions(config));

    const registry = new Registry();
    const metrics = orchestratorMetrics(registry);
    const { app, orchestrator } = await createOrchestratorApp({
      eventStore,
      checkpoints,
      snapshots,
      nc,
      logger: messageLogger(logger),
      leaseMs: config.leaseMs,
      cancelConfirmMs: config.orchestrator.cancelConfirmMs,
      heartbeatMs: config.executor.heartbeatMs,
      packager: config.orchestrator.packager,
      retention: config.orchestrator.retention,
      quotas,
      onRecorded: metrics.record,
      ...(config.orchestrator.leadership === 'lease'
        ? { leadership: { id: config.orchestrator.id ?? `${hostname()}-${process.pid}`, leaseMs: config.orchestrator.leaderLeaseMs, replicas: config.streams.replicas } }
        : {}),
    });
    cleanups.push(() => orchestrator.stop());
    cleanups.push(() => (app as INestMicroservice).close());
    const webhooks = new WebhookReactor({
      nc,
      eventStore,
      owners: loadWebhookOwners(config),
      policy: { allowHttp: config.webhooks.allowHttp, allowedRanges: config.webhooks.allowedRanges, timeoutMs: config.webhooks.timeoutMs },
      maxAttempts: config.webhooks.maxAttempts,
      backoffMs: config.webhooks.backoffMs,
      publicUrl: config.publicUrl,
      logger: messageLogger(logger),
      onAttempt: metrics.webhookAttempt,
    });
    await webhooks.start();
    // Stopped before the orchestrator (cleanups run in reverse): no delivery outlives the connection.
    cleanups.push(() => webhooks.stop());
    const chainCheckpoints = config.orchestrator.checkpointIntervalMs > 0 ? chainCheckpointStoreFor(eventStore) : undefined;
    if (chainCheckpoints) {
      const bus = nc;
      const checkpointer = new ChainCheckpointer({
        eventStore,
        checkpoints: chainCheckpoints,
        key: loadSigningKey(resolve(config.signingKeyFile), { create: true }),
        publish: (c) => bus.publish(subjects.chainCheckpoint(), JSON.stringify(c)),
        intervalMs: config.orchestrator.checkpointIntervalMs,
        onError: (err) => logger.warn({ err }, 'orchestrator: a chain checkpoint was not signed'),
      });
      // Only the leader signs: one of several starts and stops signing with its lease.
      if (config.orchestrator.leadership === 'lease') orchestrator.onLeadership((leader) => (leader ? checkpointer.start() : checkpointer.stop({ signFinal: false })));
      else checkpointer.start();
      // Registered after the orchestrator's own stop: it runs first, so the final head is signed while the store is open (by a leader).
      cleanups.push(() => checkpointer.stop({ signFinal: orchestrator.acting() }));
    }
    const store = eventStore;
    new Gauge({
      name: 'jobline_orchestrator_leader',
      help: 'Whether this orchestrator acts as the leader now (1), or stands by (0); always 1 with JOBLINE_LEADERSHIP=single.',
      registers: [registry],
      collect() {
        this.set(orchestrator.acting() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'jobline_relay_lag_events',
      help: 'Stored events not yet published to the bus by the relay (store head − relay position).',
      registers: [registry],
      async collect() {
        this.set(Math.max(0, (await store.headPosition()) - orchestrator.relay.publishedPosition));
      },
    });

    let http: ServiceHttp | null = null;
    if (config.orchestrator.httpPort !== null) {
      http = await startServiceHttp({
        service: 'orchestrator',
        host: config.api.host,
        port: config.orchestrator.httpPort,
        registries: [registry],
        readiness: async () => {
          const reasons: string[] = [];
          if (!bus.connected) reasons.push(`nats: ${bus.reason}`);
          try {
            await store.headPosition();
          } catch (err) {
            reasons.push(`event store: ${err instanceof Error ? err.message : String(err)}`);
          }
          return { ready: reasons.length === 0, reasons };
        },
      });
      const h = http;
      cleanups.push(() => h.close());
    }
    logger.info({ store: describe, packager: config.orchestrator.packager, retention: orchestrator.retention ? config.orchestrator.retention : 'off', http: http?.url, role: orchestrator.role, leader: orchestrator.leader?.id }, 'orchestrator running');
    return { orchestrator, webhooks, registry, http, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The owners of JOBLINE_WEBHOOKS_FILE (none when it is not set); a missing or invalid file refuses the start. */
function loadWebhookOwners(config: JoblineConfig): WebhooksFile['owners'] {
  const file = config.webhooks.file;
  if (!file) return {};
  let text: string;
  try {
    text = readFileSync(resolve(file), 'utf8');
  } catch (err) {
    throw new ConfigError([{ variable: 'JOBLINE_WEBHOOKS_FILE', message: `${file} cannot be read: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  return parseWebhooksFile(text, file).owners;
}

/** The quotas of JOBLINE_QUOTAS_FILE (none when it is not set: no limits, equal weights); a missing or invalid file refuses the start. */
function loadQuotas(config: JoblineConfig): Quotas {
  const file = config.quotas.file;
  if (!file) return new Quotas();
  let text: string;
  try {
    text = readFileSync(resolve(file), 'utf8');
  } catch (err) {
    throw new ConfigError([{ variable: 'JOBLINE_QUOTAS_FILE', message: `${file} cannot be read: ${err instanceof Error ? err.message : String(err)}` }]);
  }
  return new Quotas(parseQuotasFile(text, file));
}

/** Counts what the orchestrator records: submissions, finished jobs by status, lost attempts, log bytes. */
function orchestratorMetrics(registry: Registry): { record: (handled: HandledCommand) => void; webhookAttempt: (a: WebhookAttempt) => void } {
  const registers = [registry];
  const submitted = new Counter({ name: 'jobline_jobs_submitted_total', help: 'Jobs submitted (JobSubmitted recorded).', registers });
  const finished = new Counter({ name: 'jobline_jobs_finished_total', help: 'Jobs that reached a terminal status, by status.', labelNames: ['status'], registers });
  const lost = new Counter({ name: 'jobline_attempts_lost_total', help: 'Attempts declared lost (executor silent, restarted or gone).', registers });
  const logBytes = new Counter({ name: 'jobline_log_bytes_total', help: 'Bytes of output recorded for finished attempts.', registers });
  const retries = new Counter({ name: 'jobline_retries_scheduled_total', help: 'Retries scheduled after a failed or lost attempt.', registers });
  const hooks = new Counter({ name: 'jobline_webhook_attempts_total', help: 'Webhook delivery attempts recorded, by outcome (delivered, retrying, failed, refused).', labelNames: ['outcome'], registers });
  return {
    webhookAttempt: (a) => hooks.inc({ outcome: a.outcome }),
    record: ({ job, events }) => {
      for (const e of events) {
        if (e.type === 'JobSubmitted') submitted.inc();
        else if (e.type === 'JobLost') lost.inc();
        else if (e.type === 'JobRetryScheduled') retries.inc();
        else if (e.type === 'JobCompleted') logBytes.inc(e.data.logBytes);
        else if (e.type === 'JobCancelled' && e.data.logBytes) logBytes.inc(e.data.logBytes);
      }
      if (events.length && TERMINAL_PHASES.has(job.phase)) finished.inc({ status: publicStatus(job.phase) });
    },
  };
}
