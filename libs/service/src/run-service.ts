import { ConfigError, loadConfig, type JoblineConfig } from '../../config/src';
import { createLogger, type ServiceLogger } from './logger';
import { onBusClosedForGood } from './bus';

export interface Stoppable {
  stop(): Promise<void>;
}

export interface RunServiceOptions<H extends Stoppable> {
  /** For the log lines: api, orchestrator, packager, executor, dev. */
  name: string;
  logger: ServiceLogger;
  start: () => Promise<H>;
  /** Called once started (e.g. to print addresses). */
  started?: (handle: H) => void | Promise<void>;
  /** A stop that takes longer is abandoned and the process exits 1 (default 60 s). */
  stopTimeoutMs?: number;
}

/**
 * The one signal and shutdown path of every `jobline <service>` process: start, then on
 * SIGINT or SIGTERM stop (intake first, as each start function orders it) and exit 0; a second
 * signal, or a stop that hangs, exits 1 at once. A start that fails exits 1 (2 for a
 * configuration error), after stopping whatever had started.
 */
export async function runService<H extends Stoppable>(o: RunServiceOptions<H>): Promise<void> {
  let handle: H | null = null;
  let stopping: Promise<void> | null = null;
  let signalled: NodeJS.Signals | 'bus-closed' | null = null;
  let exitCode = 0;
  const stop = (signal: NodeJS.Signals | 'bus-closed') => {
    if (stopping) {
      o.logger.warn({ signal }, `${o.name}: second ${signal}, exiting at once`);
      process.exit(1);
    }
    signalled = signal;
    o.logger.info({ signal }, `${o.name}: ${signal}, stopping`);
    const timer = setTimeout(() => {
      o.logger.error({}, `${o.name}: stop took longer than ${o.stopTimeoutMs ?? 60_000} ms, exiting`);
      process.exit(1);
    }, o.stopTimeoutMs ?? 60_000);
    timer.unref();
    stopping = (handle ? handle.stop() : Promise.resolve()).then(
      () => {
        o.logger.info({}, `${o.name}: stopped`);
        process.exit(exitCode);
      },
      (err: unknown) => {
        o.logger.error({ err }, `${o.name}: stop failed`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  onBusClosedForGood(() => {
    exitCode = 1;
    if (!stopping) stop('bus-closed');
  });
  try {
    handle = await o.start();
  } catch (err) {
    // A configuration the host cannot honour (e.g. a sandbox it should have but cannot set up) is refused like a bad value.
    if (err instanceof ConfigError || (err as { code?: unknown }).code === 'SANDBOX_UNAVAILABLE') {
      process.stderr.write(`jobline ${o.name}: ${(err as Error).message}\n`);
      process.exit(2);
    }
    o.logger.error({ err }, `${o.name}: could not start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  if (signalled) {
    // A signal arrived while starting: stop what started now.
    stopping = null;
    stop(signalled);
    return;
  }
  await o.started?.(handle);
}

/**
 * A service process's whole main: the configuration from the environment (invalid: every
 * problem on stderr, exit 2), its logger, then runService. `jobline <service>` and each
 * app's main.ts call this with that service's start function.
 */
export async function serveFromEnv<H extends Stoppable>(
  name: 'api' | 'orchestrator' | 'packager' | 'executor',
  env: Readonly<Record<string, string | undefined>>,
  start: (config: JoblineConfig, logger: ServiceLogger) => Promise<H>,
): Promise<void> {
  let config: JoblineConfig;
  try {
    config = loadConfig(env, 'service');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`jobline ${name}: ${err.message}\n`);
    process.exit(2);
  }
  const logger = createLogger({ service: name, ...config.log });
  await runService({ name, logger, start: () => start(config, logger) });
}
