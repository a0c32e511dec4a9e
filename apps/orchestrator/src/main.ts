import { serveFromEnv } from '../../../libs/service/src';
import { startOrchestrator } from './start-orchestrator';

/** The orchestrator's process entry (`jobline orchestrator` does the same): configuration, start, signals. */
if (require.main === module) void serveFromEnv('orchestrator', process.env, (config, logger) => startOrchestrator(config, { logger }));
