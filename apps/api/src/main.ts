import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Logger } from '@nestjs/common';
import { z } from 'zod';
import { openEventStore } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { createApiApp } from './api.module';
import { ApiTokensSchema, type ApiToken } from './api-tokens';
import { JobsProjection } from './projections/jobs.projection';

/** The api's process entry: the only place that reads the environment and handles signals. */

const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
const optionalInt = (min: number, max: number) =>
  z.preprocess((v) => (v === undefined || v === '' ? undefined : Number(v)), z.number().int().min(min).max(max).optional());

const EnvSchema = z.object({
  JOBLINE_NATS_URL: optional(z.string().min(1)),
  JOBLINE_DATA_DIR: optional(z.string().min(1)),
  JOBLINE_EVENT_STORE: optional(z.string().min(1)),
  JOBLINE_NATS_USER: optional(z.string().min(1)),
  JOBLINE_NATS_PASSWORD: optional(z.string().min(1)),
  JOBLINE_API_HOST: optional(z.string().min(1)),
  JOBLINE_API_PORT: optionalInt(0, 65535),
  JOBLINE_TOKENS_FILE: z.string({ error: 'is required: a JSON file [{"sha256": "<hex of the token>", "owner": "...", "admin": false}]' }).min(1),
  JOBLINE_SUBMIT_TIMEOUT_MS: optionalInt(1, 600_000),
});

export interface ApiConfig {
  natsServers: string[];
  natsUser?: string;
  natsPassword?: string;
  /** Holds read-models.db (and events.db with the SQLite store). */
  dataDir: string;
  /** `sqlite` (<dataDir>/events.db, shared with the orchestrator) or an esdb:// connection string. */
  eventStore: string;
  host: string;
  port: number;
  tokens: ApiToken[];
  submitTimeoutMs: number;
}

/** Reads and validates the api's configuration; throws one error listing every problem. */
export function apiConfigFromEnv(env: Record<string, string | undefined>, readFile: (path: string) => string = (p) => readFileSync(p, 'utf8')): ApiConfig {
  const r = EnvSchema.safeParse(env);
  if (!r.success) throw new Error(`invalid api configuration: ${r.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  const e = r.data;
  let raw: unknown;
  try {
    raw = JSON.parse(readFile(e.JOBLINE_TOKENS_FILE));
  } catch (err) {
    throw new Error(`invalid api configuration: JOBLINE_TOKENS_FILE ${e.JOBLINE_TOKENS_FILE}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const tokens = ApiTokensSchema.safeParse(raw);
  if (!tokens.success) {
    const issues = tokens.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new Error(`invalid api configuration: JOBLINE_TOKENS_FILE ${e.JOBLINE_TOKENS_FILE}: ${issues}`);
  }
  return {
    natsServers: (e.JOBLINE_NATS_URL ?? 'nats://127.0.0.1:4222').split(',').map((s) => s.trim()).filter(Boolean),
    ...(e.JOBLINE_NATS_USER !== undefined ? { natsUser: e.JOBLINE_NATS_USER } : {}),
    ...(e.JOBLINE_NATS_PASSWORD !== undefined ? { natsPassword: e.JOBLINE_NATS_PASSWORD } : {}),
    // The orchestrator's default too, so both find the same SQLite store.
    dataDir: resolve(e.JOBLINE_DATA_DIR ?? '.jobline'),
    eventStore: e.JOBLINE_EVENT_STORE ?? 'sqlite',
    host: e.JOBLINE_API_HOST ?? '127.0.0.1',
    port: e.JOBLINE_API_PORT ?? 8080,
    tokens: tokens.data,
    submitTimeoutMs: e.JOBLINE_SUBMIT_TIMEOUT_MS ?? 10_000,
  };
}

export async function main(): Promise<void> {
  const logger = new Logger('jobline-api');
  let config: ApiConfig;
  try {
    config = apiConfigFromEnv(process.env);
  } catch (err) {
    logger.error((err as Error).message);
    process.exitCode = 2;
    return;
  }
  if (config.tokens.length === 0) logger.warn('no API tokens configured: every /v1 request will be refused');
  const nc = await connectNats({ servers: config.natsServers, name: 'jobline-api', user: config.natsUser, pass: config.natsPassword });
  // The api only reads the store (histories, replays); the checkpoints file that comes with it stays unused.
  const store = openEventStore(config.eventStore, config.dataDir);
  const eventStore = store.eventStore;
  const projection = new JobsProjection({
    path: join(config.dataDir, 'read-models.db'),
    onWarning: (message, error) => logger.warn(error ? `${message}: ${error instanceof Error ? error.message : String(error)}` : message),
  });
  projection.start(eventStore);
  const api = await createApiApp({
    nc,
    eventStore,
    projection,
    tokens: config.tokens,
    host: config.host,
    port: config.port,
    submitTimeoutMs: config.submitTimeoutMs,
    logger: ['log', 'error', 'warn'],
  });
  logger.log(`listening on ${api.url}: NATS ${config.natsServers.join(',')}, ${store.describe}`);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal}: shutting down`);
    await api.close();
    await projection.close();
    await store.close();
    await nc.drain();
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
