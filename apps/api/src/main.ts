import { serveFromEnv } from '../../../libs/service/src';
import { startApi } from './start-api';

/** The api's process entry (`jobline api` does the same): configuration, start, signals. */
if (require.main === module) void serveFromEnv('api', process.env, (config, logger) => startApi(config, { logger }));
