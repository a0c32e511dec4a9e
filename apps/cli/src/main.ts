import { Command, InvalidArgumentError, Option } from 'commander';
import { consoleLogger } from './console-logger';
import { startDevStack } from './dev-stack';
import { runFirstJob } from './first-job';
import { replay } from './replay';

/** The `jobline` command. Only this file reads process.env and installs signal handlers. */

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number 0..65535');
  return n;
}
function count(max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n > max) throw new InvalidArgumentError(`expected an integer 0..${max}`);
    return n;
  };
}
function natsUrl(value: string): string {
  if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(value)) throw new InvalidArgumentError('expected a NATS URL such as nats://127.0.0.1:4222');
  return value;
}

export function buildProgram(): Command {
  const program = new Command('jobline')
    .description('Runs commands and remembers every step.')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });

  program
    .command('dev')
    .description('run the whole system in one process on the embedded defaults (SQLite, a local executor, a nats-server child)')
    .addOption(new Option('--data-dir <dir>', 'where events, read models, the NATS store and workspaces live').env('JOBLINE_DATA_DIR').default('.jobline'))
    .addOption(new Option('--nats <url>', 'use this NATS server instead of starting one').env('JOBLINE_NATS_URL').argParser(natsUrl))
    .addOption(new Option('--port <port>', 'REST port (taken → a free one)').env('JOBLINE_API_PORT').argParser(port).default(8080))
    .addOption(new Option('--host <host>', 'REST listen address').env('JOBLINE_API_HOST').default('127.0.0.1'))
    .addOption(new Option('--capacity <n>', 'slots of the local executor').env('JOBLINE_EXECUTOR_CAPACITY').argParser(count(1024)).default(4))
    .addOption(new Option('--grace-ms <ms>', 'SIGTERM → SIGKILL grace when stopping a job').argParser(count(3_600_000)).default(5000))
    .addOption(new Option('--log-level <level>', 'debug | info | warn | error').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .option('--first-job', 'submit `echo hello from jobline` over REST and print its log and status')
    .option('--exit', 'stop after start-up (and the first job, with --first-job); for scripts and smoke tests')
    .action(async (o: { dataDir: string; nats?: string; port: number; host: string; capacity: number; graceMs: number; logLevel: 'debug' | 'info' | 'warn' | 'error'; firstJob?: boolean; exit?: boolean }) => {
      const logger = consoleLogger('dev', o.logLevel);
      const stack = await startDevStack({ dataDir: o.dataDir, natsUrl: o.nats, apiPort: o.port, apiHost: o.host, executorCapacity: o.capacity, graceMs: o.graceMs, logger });
      let stopping: Promise<void> | null = null;
      const shutdown = (why: string) => {
        if (!stopping) {
          logger.log(`dev: ${why}, stopping (API, executor, orchestrator, store, NATS)`);
          stopping = stack.stop().then(() => logger.log('dev: stopped'));
        }
        return stopping;
      };
      process.once('SIGINT', () => void shutdown('SIGINT').then(() => process.exit(130)));
      process.once('SIGTERM', () => void shutdown('SIGTERM').then(() => process.exit(143)));
      process.stdout.write(
        [
          '',
          `Jobline is running (data in ${stack.dataDir}).`,
          `  REST      ${stack.apiUrl}`,
          `  NATS      ${stack.natsUrl}`,
          `  token     ${stack.token}   (owner "dev", admin; also in ${stack.dataDir}/dev-token)`,
          '',
          'Try:',
          `  export JOBLINE_TOKEN=${stack.token}`,
          `  curl -s -H "Authorization: Bearer $JOBLINE_TOKEN" -H 'content-type: application/json' \\`,
          `       -d '{"command":"echo hello"}' ${stack.apiUrl}/v1/jobs`,
          `  curl -s -H "Authorization: Bearer $JOBLINE_TOKEN" ${stack.apiUrl}/v1/jobs`,
          '',
          '',
        ].join('\n'),
      );
      let code = 0;
      if (o.firstJob) {
        const job = await runFirstJob(stack.apiUrl!, stack.token, (s) => process.stdout.write(s));
        code = job.status === 'succeeded' ? 0 : 1;
      }
      if (o.exit) {
        await shutdown('--exit given');
        process.exit(code);
      }
      logger.log('dev: ready; Ctrl-C stops it');
    });

  program
    .command('replay')
    .description('rebuild the read models from position 0 into a new file, verify every job history, and compare with the live read model')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev`').env('JOBLINE_DATA_DIR').default('.jobline'))
    .option('--json', 'print the result as JSON')
    .action(async (o: { dataDir: string; json?: boolean }) => {
      const result = await replay({ dataDir: o.dataDir });
      if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      else {
        process.stdout.write(
          `replayed ${result.events} events of ${result.jobs} jobs in ${result.rebuildMs} ms (${result.eventsPerSecond} events/s)\n` +
            `history: ${result.problems.length === 0 ? 'every stream decodes and folds' : `${result.problems.length} problem(s)`}\n` +
            result.problems.map((p) => `  - ${p}\n`).join('') +
            `live read model: ${result.liveMatches === null ? 'none found' : result.liveMatches ? 'identical to the rebuild' : `DIFFERS: ${result.differences.join('; ')}`}\n`,
        );
      }
      process.exitCode = result.problems.length === 0 && result.liveMatches !== false ? 0 : 1;
    });

  program
    .command('executor')
    .description('run a local executor against a NATS server (configured by JOBLINE_* environment variables)')
    .action(async () => {
      const { main } = await import('../../executor/src/node/main');
      await main();
    });

  return program;
}

if (require.main === module) {
  buildProgram()
    .parseAsync(process.argv)
    .catch((err: unknown) => {
      process.stderr.write(`jobline: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
