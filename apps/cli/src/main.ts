import { Command, InvalidArgumentError, Option } from 'commander';
import { certsInit, certsIssue, serverTlsFiles } from './certs/dev-pki';
import { consoleLogger } from './console-logger';
import { historyCommand, listCommand, logsCommand, startCommand, statusCommand, stopCommand, type Output } from './remote/job-commands';
import { JobsRemote, describeError, exitCodeFor, resolveRemoteConfig } from './remote/jobs-remote';
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
    .addOption(new Option('--grpc-port <port>', 'gRPC port (mTLS; served once `jobline certs init` has made the certificates)').env('JOBLINE_GRPC_PORT').argParser(port).default(50051))
    .addOption(new Option('--capacity <n>', 'slots of the local executor').env('JOBLINE_EXECUTOR_CAPACITY').argParser(count(1024)).default(4))
    .addOption(new Option('--grace-ms <ms>', 'SIGTERM → SIGKILL grace when stopping a job').argParser(count(3_600_000)).default(5000))
    .addOption(new Option('--log-level <level>', 'debug | info | warn | error').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .addOption(new Option('--https', 'serve REST and WebSocket over HTTPS with the certificates of `jobline certs init` (a client certificate names the caller)').conflicts('firstJob'))
    .option('--first-job', 'submit `echo hello from jobline` over REST and print its log and status')
    .option('--exit', 'stop after start-up (and the first job, with --first-job); for scripts and smoke tests')
    .action(async (o: { dataDir: string; nats?: string; port: number; grpcPort: number; host: string; capacity: number; graceMs: number; logLevel: 'debug' | 'info' | 'warn' | 'error'; firstJob?: boolean; exit?: boolean; https?: boolean }) => {
      const logger = consoleLogger('dev', o.logLevel);
      const tlsFiles = serverTlsFiles(o.dataDir);
      const grpc = tlsFiles ? { port: o.grpcPort, tls: tlsFiles } : undefined;
      if (o.https && !tlsFiles) throw new Error('--https needs the certificates: run `jobline certs init` first');
      const apiTls = o.https ? (tlsFiles ?? undefined) : undefined;
      const stack = await startDevStack({ dataDir: o.dataDir, natsUrl: o.nats, apiPort: o.port, apiHost: o.host, executorCapacity: o.capacity, graceMs: o.graceMs, grpc, apiTls, logger });
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
          stack.grpcPort !== undefined
            ? `  gRPC      ${o.host}:${stack.grpcPort}   (mTLS, TLS 1.3; certificates in ${stack.dataDir}/certs)`
            : '  gRPC      off: run `jobline certs init` to create the certificates, then restart',
          `  WebSocket ${stack.apiUrl?.replace(/^http/, 'ws')}/v1/ws`,
          `  token     ${stack.token}   (owner "dev", admin; also in ${stack.dataDir}/dev-token)`,
          '',
          'Try:',
          `  export JOBLINE_TOKEN=${stack.token}`,
          `  curl -s${apiTls ? ` --cacert ${stack.dataDir}/certs/ca.crt` : ''} -H "Authorization: Bearer $JOBLINE_TOKEN" -H 'content-type: application/json' \\`,
          `       -d '{"command":"echo hello"}' ${stack.apiUrl}/v1/jobs`,
          `  curl -s${apiTls ? ` --cacert ${stack.dataDir}/certs/ca.crt` : ''} -H "Authorization: Bearer $JOBLINE_TOKEN" ${stack.apiUrl}/v1/jobs`,
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

  // Job commands over gRPC with mTLS; see resolveRemoteConfig for where the settings come from.
  const stdio: Output = {
    out: (d) => new Promise<void>((resolve) => (process.stdout.write(d) ? resolve() : process.stdout.once('drain', resolve))),
    err: (d) => new Promise<void>((resolve) => (process.stderr.write(d) ? resolve() : process.stderr.once('drain', resolve))),
  };
  const remoteCommand = (name: string, description: string) =>
    program
      .command(name)
      .description(description)
      .addOption(new Option('--address <host:port>', 'gRPC server (default 127.0.0.1:50051)').env('JOBLINE_GRPC_ADDRESS'))
      .addOption(new Option('--ca <file>', 'CA certificate (PEM)').env('JOBLINE_CA'))
      .addOption(new Option('--cert <file>', 'client certificate (PEM)').env('JOBLINE_CERT'))
      .addOption(new Option('--key <file>', 'client key (PEM)').env('JOBLINE_KEY'))
      .addOption(new Option('--config <file>', 'JSON file with address, ca, cert, key').env('JOBLINE_CONFIG'))
      .addOption(new Option('--data-dir <dir>', 'default certificates: <data-dir>/certs/admin.*').env('JOBLINE_DATA_DIR').default('.jobline'))
      .option('--json', 'machine-readable output');
  type RemoteFlags = { address?: string; ca?: string; cert?: string; key?: string; config?: string; dataDir: string; json?: boolean };
  const withRemote = async (o: RemoteFlags, run: (r: JobsRemote) => Promise<number>) => {
    let remote: JobsRemote | null = null;
    try {
      remote = new JobsRemote(resolveRemoteConfig({ address: o.address, ca: o.ca, cert: o.cert, key: o.key }, {}, o.config, o.dataDir));
      process.exitCode = await run(remote);
    } catch (err) {
      process.stderr.write(`jobline: ${describeError(err)}\n`);
      process.exitCode = exitCodeFor(err);
    } finally {
      remote?.close();
    }
  };
  remoteCommand('start', 'submit a job: jobline start [options] -- CMD [ARGS...] (one argument runs as a shell script)')
    .addOption(new Option('--priority <p>', 'low | normal | high').choices(['low', 'normal', 'high']))
    .addOption(new Option('--timeout <seconds>', 'wall-clock limit per attempt').argParser(count(604_800)))
    .addOption(new Option('--cpu <cores>', 'CPU limit, e.g. 0.5').argParser((v) => Number(v)))
    .addOption(new Option('--memory <mb>', 'memory limit in MiB').argParser(count(4 * 1024 * 1024)))
    .option('--git <url>', 'run from this git repository')
    .option('--commit <sha>', 'at this full commit hash')
    .option('--data <url...>', 'download these files into the workspace')
    .argument('[command...]')
    .action((command: string[], o: RemoteFlags & Parameters<typeof startCommand>[2]) => withRemote(o, (r) => startCommand(r, command, o, Boolean(o.json), stdio)));
  remoteCommand('status', "a job's status").argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => statusCommand(r, id, Boolean(o.json), stdio)));
  remoteCommand('logs', "a job's output; -f follows it and exits with the job's exit code")
    .option('-f, --follow', 'stream live output until the job ends')
    .argument('<id>')
    .action((id: string, o: RemoteFlags & { follow?: boolean }) => withRemote(o, (r) => logsCommand(r, id, Boolean(o.follow), Boolean(o.json), stdio)));
  remoteCommand('stop', 'stop (cancel) a job').argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => stopCommand(r, id, Boolean(o.json), stdio)));
  remoteCommand('list', 'your jobs (an admin: everyone\'s), newest first')
    .addOption(new Option('--status <s>', 'only this status').choices(['pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out']))
    .option('--owner <owner>', 'only this owner (admins)')
    .addOption(new Option('--limit <n>', 'at most n jobs (1-100)').argParser(count(100)))
    .action((o: RemoteFlags & { status?: string; owner?: string; limit?: number }) => withRemote(o, (r) => listCommand(r, o, Boolean(o.json), stdio)));
  remoteCommand('history', "a job's stored events, in order").argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => historyCommand(r, id, Boolean(o.json), stdio)));

  const certs = program.command('certs').description('development certificates for gRPC mTLS, in <data-dir>/certs');
  certs
    .command('init')
    .description('create a development CA, a server certificate (localhost, 127.0.0.1, ::1) and an admin client certificate')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev`').env('JOBLINE_DATA_DIR').default('.jobline'))
    .option('--force', 'replace an existing CA (every certificate it issued stops working)')
    .action(async (o: { dataDir: string; force?: boolean }) => {
      const r = await certsInit(o.dataDir, { force: o.force });
      process.stdout.write(
        `created in ${r.dir}:\n  CA      ${r.ca.cert}  (key ${r.ca.key}: keep it private)\n  server  ${r.server.cert}\n  admin   ${r.admin.cert}  (CN=admin, OU=admin)\n`,
      );
    });
  certs
    .command('issue <name>')
    .description('issue a client certificate for owner NAME (its CN), signed by the CA of `certs init`')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev`').env('JOBLINE_DATA_DIR').default('.jobline'))
    .option('--admin', 'mark it OU=admin: the holder sees and controls every owner\'s jobs')
    .addOption(new Option('--days <n>', 'validity in days').argParser(count(3650)).default(825))
    .action(async (name: string, o: { dataDir: string; admin?: boolean; days: number }) => {
      const r = await certsIssue(o.dataDir, name, { admin: o.admin, days: o.days });
      process.stdout.write(`issued ${r.cert} (key ${r.key}) for ${name}${o.admin ? ' (admin)' : ''}\n`);
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
