import { resolve } from 'node:path';
import pino from 'pino';
import { z } from 'zod';
import { openEventStore } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { createOrchestratorApp } from './orchestrator.module';

/** The orchestrator service: the only file that reads the environment and handles signals. */

const EnvSchema = z.object({
  JOBLINE_NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
  JOBLINE_DATA_DIR: z.string().min(1).default('.jobline'),
  JOBLINE_EVENT_STORE: z.string().min(1).default('sqlite'),
  JOBLINE_NATS_USER: z.string().min(1).optional(),
  JOBLINE_NATS_PASSWORD: z.string().min(1).optional(),
  JOBLINE_LEASE_MS: z.coerce.number().int().min(1000).max(3_600_000).default(10_000),
});

export async function main(): Promise<void> {
  const logger = pino({ name: 'jobline-orchestrator' });
  const env = EnvSchema.safeParse(process.env);
  if (!env.success) {
    logger.error(`invalid configuration: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    process.exitCode = 2;
    return;
  }
  const c = env.data;
  const store = openEventStore(c.JOBLINE_EVENT_STORE, resolve(c.JOBLINE_DATA_DIR));
  const nc = await connectNats({ servers: c.JOBLINE_NATS_URL.split(','), name: 'jobline-orchestrator', user: c.JOBLINE_NATS_USER, pass: c.JOBLINE_NATS_PASSWORD });
  const log = {
    log: (m: string) => logger.info(m),
    debug: (m: string) => logger.debug(m),
    warn: (m: string) => logger.warn(m),
    error: (m: string, ...rest: unknown[]) => logger.error({ detail: rest.map(String) }, m),
  };
  const { app, orchestrator } = await createOrchestratorApp({ eventStore: store.eventStore, checkpoints: store.checkpoints, nc, logger: log, leaseMs: c.JOBLINE_LEASE_MS });
  logger.info(`orchestrator running: NATS ${c.JOBLINE_NATS_URL}, ${store.describe}`);
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await app.close();
    await orchestrator.stop();
    await nc.drain();
    await store.close();
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
