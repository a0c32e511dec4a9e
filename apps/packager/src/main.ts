import { serveFromEnv } from '../../../libs/service/src';
import { startPackager } from './start-packager';

/** The packager's process entry (`jobline packager` does the same): configuration, start, signals. */
if (require.main === module) void serveFromEnv('packager', process.env, (config, logger) => startPackager(config, { logger }));
