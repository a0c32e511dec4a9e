import type { JoblineConfig } from '../../config/src';
import type { StreamOptions } from '../../messaging/src/streams';

/** The JetStream stream settings the configuration asks for (every service ensures the same). */
export function streamOptions(config: JoblineConfig): StreamOptions {
  return { logsMaxAgeMs: config.streams.logsMaxAgeMs, logsMaxBytes: config.streams.logsMaxBytes, replicas: config.streams.replicas };
}
