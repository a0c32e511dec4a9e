import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { Packager } from './packager';
import { packagerConfigFromEnv } from './packager-config';

/** The packager as its own process: the only place that reads the environment and handles signals. */
export async function main(): Promise<void> {
  let config;
  try {
    config = packagerConfigFromEnv(process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 2;
    return;
  }
  const nc = await connect({ servers: config.natsUrl.split(','), name: 'jobline-packager' });
  await ensureStreams(await jetstreamManager(nc));
  const packager = await Packager.start(nc, { log: (m) => console.log(m), warn: (m) => console.warn(m) }, config.options);
  console.log(`packager: taking package orders from ${config.natsUrl}`);
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await packager.stop();
    await nc.drain();
  };
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
