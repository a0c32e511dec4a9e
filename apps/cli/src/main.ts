/* Services are imported when their command runs: a client command (status, logs...) loads none of them. */
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError, VARIABLES, VARIABLE_NAMES, effectiveVariables, formatEffectiveConfig, loadConfig, type ConfigProfile, type JoblineConfig, type VariableSpec } from '../../../libs/config/src';
import { createLogger, runService, type ServiceLogger } from '../../../libs/service/src';
import { JOB_ORDERS, JOB_STATUSES, parseRfc3339 } from '../../../libs/contracts/src';
import type { DevStack } from './dev-stack';
import { completionScript } from './completion';
import {
  attestationCommand,
  compareCommand,
  executorsCommand,
  historyCommand,
  listCommand,
  logsCommand,
  rerunCommand,
  startCommand,
  statusCommand,
  stopCommand,
  type ListFlags,
  type Output,
} from './remote/job-commands';
import { colourWanted, createStyle } from './terminal-style';
import { JobsRemote, describeError, exitCodeFor, resolveRemoteConfig } from './remote/jobs-remote';
import { runFirstJob } from './first-job';

/** The `jobline` command. Only this file (and libs/service's runService) reads process.env and handles signals. */

/** The version in the repository's package.json, found from the build (dist/apps/cli/src) or the sources (apps/cli/src, under jest). */
export const VERSION: string = (() => {
  for (let dir = __dirname, i = 0; i < 6; i++, dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  throw new Error('package.json not found above the CLI');
})();

/** The configuration, or (invalid) every problem on stderr and exit 2. */
function configOrExit(env: Readonly<Record<string, string | undefined>>, profile: ConfigProfile): JoblineConfig {
  try {
    return loadConfig(env, profile);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`jobline: ${err.message}\n`);
    process.exit(2);
  }
}

/** What `jobline dev` prints once everything runs. */
function devBanner(stack: DevStack): string {
  const https = stack.config.api.https;
  const curlCa = https ? ` --cacert ${stack.dataDir}/certs/ca.crt` : '';
  return [
    '',
    `Jobline is running (data in ${stack.dataDir}).`,
    `  REST      ${stack.apiUrl}`,
    `  NATS      ${stack.natsUrl}`,
    stack.grpcPort !== undefined
      ? `  gRPC      ${stack.config.api.host}:${stack.grpcPort}   (mTLS, TLS 1.3; certificates in ${stack.config.api.tlsDir})`
      : '  gRPC      off: run `jobline certs init` to create the certificates, then restart',
    `  WebSocket ${stack.apiUrl?.replace(/^http/, 'ws')}/v1/ws`,
    `  token     ${stack.token}   (owner "dev", admin; also in ${stack.dataDir}/dev-token)`,
    '',
    'Try:',
    `  export JOBLINE_TOKEN=${stack.token}`,
    `  curl -s${curlCa} -H "Authorization: Bearer $JOBLINE_TOKEN" -H 'content-type: application/json' \\`,
    `       -d '{"command":"echo hello"}' ${stack.apiUrl}/v1/jobs`,
    `  curl -s${curlCa} -H "Authorization: Bearer $JOBLINE_TOKEN" ${stack.apiUrl}/v1/jobs`,
    '',
    '',
  ].join('\n');
}

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
function range(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    return n;
  };
}
/** `--at`: an RFC 3339 instant, as typed (the server refuses one before the epoch or in its future). */
function instant(value: string): string {
  const parsed = parseRfc3339(value);
  if (!parsed.ok) throw new InvalidArgumentError(parsed.message);
  return value;
}
function natsUrl(value: string): string {
  if (!/^(nats|tls|ws|wss):\/\/[^\s]+$/.test(value)) throw new InvalidArgumentError('expected a NATS URL such as nats://127.0.0.1:4222');
  return value;
}

export function buildProgram(): Command {
  const program = new Command('jobline')
    .description('Runs commands and remembers every step.')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(s) });

  program
    .command('dev')
    .description('run the whole system in one process on the embedded defaults (SQLite, a local executor, a nats-server child); reads the same JOBLINE_* variables as the services')
    .option('--data-dir <dir>', 'JOBLINE_DATA_DIR: where events, read models, the NATS store and workspaces live')
    .addOption(new Option('--nats <url>', 'JOBLINE_NATS_URL: use this NATS server instead of starting one').argParser(natsUrl))
    .addOption(new Option('--port <port>', 'JOBLINE_API_PORT: REST port (taken → a free one)').argParser(port))
    .option('--host <host>', 'JOBLINE_API_HOST: REST and gRPC listen address')
    .addOption(new Option('--grpc-port <port>', 'JOBLINE_GRPC_PORT: gRPC port (mTLS; served once `jobline certs init` has made the certificates)').argParser(port))
    .addOption(new Option('--capacity <n>', 'JOBLINE_EXECUTOR_CAPACITY: slots of the local executor').argParser(count(1024)))
    .addOption(new Option('--grace-ms <ms>', 'JOBLINE_GRACE_MS: SIGTERM → SIGKILL grace when stopping a job').argParser(count(3_600_000)))
    .addOption(new Option('--log-level <level>', 'JOBLINE_LOG_LEVEL').choices(['debug', 'info', 'warn', 'error']))
    .addOption(new Option('--https', 'JOBLINE_API_HTTPS=true: serve REST and WebSocket over HTTPS with the certificates of `jobline certs init` (a client certificate names the caller)').conflicts('firstJob'))
    .option('--first-job', 'submit `echo hello from jobline` over REST and print its log and status')
    .option('--exit', 'stop after start-up (and the first job, with --first-job); for scripts and smoke tests')
    .action(async (o: { dataDir?: string; nats?: string; port?: number; grpcPort?: number; host?: string; capacity?: number; graceMs?: number; logLevel?: string; firstJob?: boolean; exit?: boolean; https?: boolean }) => {
      const flags: Record<string, string | undefined> = {
        JOBLINE_DATA_DIR: o.dataDir,
        JOBLINE_NATS_URL: o.nats,
        JOBLINE_API_PORT: o.port?.toString(),
        JOBLINE_API_HOST: o.host,
        JOBLINE_GRPC_PORT: o.grpcPort?.toString(),
        JOBLINE_EXECUTOR_CAPACITY: o.capacity?.toString(),
        JOBLINE_GRACE_MS: o.graceMs?.toString(),
        JOBLINE_LOG_LEVEL: o.logLevel,
        JOBLINE_API_HTTPS: o.https ? 'true' : undefined,
      };
      const env = { ...process.env, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) };
      const config = configOrExit(env, 'dev');
      const logger = createLogger({ service: 'dev', ...config.log });
      let running: DevStack | null = null;
      await runService({
        name: 'dev',
        logger,
        start: async () =>
          (await import('./dev-stack')).startDev(config, {
            // Never a dev process that looks alive with no executor: stop, exit 1.
            onExecutorLost: () => void (running?.stop() ?? Promise.resolve()).finally(() => process.exit(1)),
          }),
        started: async (stack) => {
          running = stack;
          process.stdout.write(devBanner(stack));
          let code = 0;
          if (o.firstJob) {
            const job = await runFirstJob(stack.apiUrl!, stack.token, (s) => process.stdout.write(s));
            code = job.status === 'succeeded' ? 0 : 1;
          }
          if (o.exit) {
            logger.info({}, 'dev: --exit given, stopping');
            await stack.stop();
            process.exit(code);
          }
          logger.info({}, 'dev: ready; Ctrl-C stops it');
        },
      });
    });

  // One binary, one service per subcommand: the same start functions `jobline dev` composes.
  const service = (name: 'api' | 'orchestrator' | 'packager' | 'executor', description: string, start: (config: JoblineConfig, logger: ServiceLogger) => Promise<{ stop(): Promise<void> }>) =>
    program
      .command(name)
      .description(`${description} (configured by JOBLINE_* variables: \`jobline config --list\`)`)
      .action(async () => {
        const config = configOrExit(process.env, 'service');
        const logger = createLogger({ service: name, ...config.log });
        await runService({ name, logger, start: () => start(config, logger) });
      });
  service('api', 'run the api: REST, WebSocket, gRPC (mTLS), the jobs read model', async (c, logger) => (await import('../../api/src/start-api')).startApi(c, { logger }));
  service('orchestrator', 'run the orchestrator: records commands and reports, schedules, relays events to the bus', async (c, logger) => (await import('../../orchestrator/src/start-orchestrator')).startOrchestrator(c, { logger }));
  service('packager', 'run a packager: builds the bundles of jobs with a source or data', async (c, logger) => (await import('../../packager/src/start-packager')).startPackager(c, { logger }));
  service('executor', 'run an executor: a local one, or one per host of JOBLINE_SSH_INVENTORY', async (c, logger) => (await import('../../executor/src/node/start-executor')).startExecutor(c, { logger }));

  program
    .command('config')
    .description('print the effective configuration (every JOBLINE_* variable, secrets masked); exit 2 if it is invalid')
    .option('--dev', 'as `jobline dev` reads it (its defaults differ: NATS child, side HTTP ports off)')
    .option('--list', 'list every variable: who reads it, what it accepts, its default')
    .option('--json', 'print JSON')
    .action((o: { dev?: boolean; list?: boolean; json?: boolean }) => {
      if (o.list) {
        const rows = VARIABLE_NAMES.map((name) => {
          const v: VariableSpec = VARIABLES[name];
          return { name, services: v.services, accepts: v.accepts, default: v.defaultText, meaning: v.doc };
        });
        process.stdout.write(o.json ? `${JSON.stringify(rows, null, 2)}\n` : rows.map((r) => `${r.name}\n    ${r.meaning}\n    accepts ${r.accepts}; default ${r.default || '(unset)'}; used by ${r.services.join(', ')}\n`).join(''));
        return;
      }
      const config = configOrExit(process.env, o.dev ? 'dev' : 'service');
      const rows = effectiveVariables(config, process.env);
      process.stdout.write(o.json ? `${JSON.stringify(Object.fromEntries(rows.map((r) => [r.name, { value: r.value, source: r.source }])), null, 2)}\n` : formatEffectiveConfig(rows));
    });

  program
    .command('replay')
    .description('rebuild the read models from position 0 into a new file, verify every job history, and compare with the live read model')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev`').env('JOBLINE_DATA_DIR').default('.jobline'))
    .option('--json', 'print the result as JSON')
    .action(async (o: { dataDir: string; json?: boolean }) => {
      const result = await (await import('./replay')).replay({ dataDir: o.dataDir });
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
    .command('verify')
    .description('recompute the hash chain of the event store (or one job): exit 0 intact, 1 tampered (naming the first bad position), 2 when it cannot be read')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev` (its events.db)').env('JOBLINE_DATA_DIR').default('.jobline'))
    .addOption(new Option('--store <spec>', 'sqlite, or a postgres:// or kurrentdb:// URL').env('JOBLINE_EVENT_STORE').default('sqlite'))
    .option('--job <id>', 'only this job')
    .option('--public-key <pem>', 'trust checkpoints signed by this public key (repeatable; default: the signing key file\'s)', collect, [])
    .option('--checkpoint <file>', 'a checkpoint you kept (JSON, as published on jobline.chain.checkpoint; repeatable)', collect, [])
    .addOption(new Option('--signing-key-file <file>', 'the orchestrator\'s key (its public half is trusted by default)').env('JOBLINE_SIGNING_KEY_FILE'))
    .option('--attestation <file>', 'instead: check a downloaded attestation (GET /v1/jobs/{id}/attestation) offline against --public-key')
    .option('--subject <file>', 'with --attestation: this file\'s sha256 must be one of the attested subjects (e.g. the artifacts; repeatable)', collect, [])
    .option('--json', 'print the result as JSON')
    .action(async (o: { dataDir: string; store: string; job?: string; json?: boolean; publicKey: string[]; checkpoint: string[]; signingKeyFile?: string; attestation?: string; subject: string[] }) => {
      const { verify, formatVerification, verifyAttestationFile, formatAttestation } = await import('./verify');
      if (o.attestation) {
        let checked;
        try {
          if (o.publicKey.length === 0) throw new Error('--attestation needs --public-key (the PEM the api publishes)');
          checked = verifyAttestationFile(o.attestation, o.publicKey, o.subject);
        } catch (err) {
          process.stderr.write(`jobline verify: cannot verify: ${err instanceof Error ? err.message : String(err)}\n`);
          process.exitCode = 2;
          return;
        }
        process.stdout.write(o.json ? `${JSON.stringify(checked, null, 2)}\n` : formatAttestation(checked, o.attestation));
        process.exitCode = checked.ok ? 0 : 1;
        return;
      }
      if (o.subject.length > 0) {
        process.stderr.write('jobline verify: --subject goes with --attestation\n');
        process.exitCode = 2;
        return;
      }
      let result;
      try {
        result = await verify({ ...o, publicKeys: o.publicKey, checkpointFiles: o.checkpoint });
      } catch (err) {
        process.stderr.write(`jobline verify: cannot verify: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 2;
        return;
      }
      process.stdout.write(o.json ? `${JSON.stringify(result, null, 2)}\n` : formatVerification(result, o.job ? `job ${o.job}` : 'event store'));
      process.exitCode = result.intact ? 0 : 1;
    });

  // Job commands over gRPC with mTLS; see resolveRemoteConfig for where the settings come from.
  // Colours only on a terminal (NO_COLOR, TERM=dumb and FORCE_COLOR respected); progress notes only when stderr is one.
  const stdio: Output = {
    out: (d) => new Promise<void>((resolve) => (process.stdout.write(d) ? resolve() : process.stdout.once('drain', resolve))),
    err: (d) => new Promise<void>((resolve) => (process.stderr.write(d) ? resolve() : process.stderr.once('drain', resolve))),
    style: createStyle(colourWanted(process.env, Boolean(process.stdout.isTTY))),
    progress: Boolean(process.stderr.isTTY),
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
      .option('--json', 'print the documented JSON shapes (those of the REST API) instead of text');
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
    .option('--notify <url...>', 'webhooks told when the job ends (README "Webhooks")')
    .argument('[command...]')
    .action((command: string[], o: RemoteFlags & Parameters<typeof startCommand>[2]) => withRemote(o, (r) => startCommand(r, command, o, Boolean(o.json), stdio)));
  remoteCommand('status', "a job's status").argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => statusCommand(r, id, Boolean(o.json), stdio)));
  remoteCommand('logs', "a job's output; -f follows it (saying while it is queued) and exits with the job's exit code; --json: one log frame per line")
    .option('-f, --follow', 'stream live output until the job ends')
    .argument('<id>')
    .action((id: string, o: RemoteFlags & { follow?: boolean }) => withRemote(o, (r) => logsCommand(r, id, Boolean(o.follow), Boolean(o.json), stdio)));
  remoteCommand('stop', 'stop (cancel) a job').argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => stopCommand(r, id, Boolean(o.json), stdio)));
  remoteCommand('list', 'your jobs (an admin: everyone\'s), newest first, one page at a time with the total')
    .addOption(new Option('--status <s>', 'only this status').choices(JOB_STATUSES))
    .addOption(new Option('--priority <p>', 'only this priority').choices(['low', 'normal', 'high']))
    .option('--owner <owner>', 'only this owner (admins)')
    .addOption(new Option('--limit <n>', 'jobs per page, 1-100 (default 20)').argParser(range(1, 100)))
    .option('--cursor <cursor>', 'the page after the one that printed this cursor (same filters and order)')
    .addOption(new Option('--order <order>', 'sort order (default -submittedAt: newest first)').choices([...JOB_ORDERS]))
    .addOption(new Option('--at <time>', 'the list as it stood then, from the recorded events (RFC 3339, e.g. 2025-01-31T12:00:00Z)').argParser(instant))
    .action((o: RemoteFlags & ListFlags) => withRemote(o, (r) => listCommand(r, o, Boolean(o.json), stdio)));
  remoteCommand('executors', 'which jobs are on each executor (with --at: were, then), and how many wait for one')
    .addOption(new Option('--at <time>', 'as the store stood then (RFC 3339, e.g. 2025-01-31T12:00:00Z)').argParser(instant))
    .action((o: RemoteFlags & { at?: string }) => withRemote(o, (r) => executorsCommand(r, o, Boolean(o.json), stdio)));
  remoteCommand('history', "a job's stored events, in order").argument('<id>').action((id: string, o: RemoteFlags) => withRemote(o, (r) => historyCommand(r, id, Boolean(o.json), stdio)));
  remoteCommand('rerun', 'run a finished job again: same spec, same bundle by digest; prints the new id (--compare: waits, compares, exits 0 identical / 1 not)')
    .option('--compare', 'wait for the re-run to finish and compare it with the original (exit code, log digest, artifacts)')
    .addOption(new Option('--wait <seconds>', 'with --compare: how long to wait for the re-run (default 3600)').argParser(range(1, 604_800)))
    .argument('<id>')
    .action((id: string, o: RemoteFlags & { compare?: boolean; wait?: number }) =>
      withRemote(o, (r) => rerunCommand(r, id, { compare: o.compare, ...(o.wait !== undefined ? { waitSeconds: o.wait } : {}) }, Boolean(o.json), stdio)),
    );
  remoteCommand('compare', 'compare two finished jobs: exit code, log digest, artifact digest; exit 0 identical, 1 not')
    .argument('<a>')
    .argument('<b>')
    .action((a: string, b: string, o: RemoteFlags) => withRemote(o, (r) => compareCommand(r, a, b, Boolean(o.json), stdio)));
  remoteCommand('attestation', "a finished job's signed provenance (the DSSE envelope of GET /v1/jobs/{id}/attestation); check it with jobline verify --attestation")
    .option('-o, --output <file>', 'write it to this file instead of stdout')
    .argument('<id>')
    .action((id: string, o: RemoteFlags & { output?: string }) => withRemote(o, (r) => attestationCommand(r, id, o.output, stdio)));

  const certs = program.command('certs').description('development certificates for gRPC mTLS, in <data-dir>/certs');
  certs
    .command('init')
    .description('create a development CA, a server certificate (localhost, 127.0.0.1, ::1) and an admin client certificate')
    .addOption(new Option('--data-dir <dir>', 'the data folder of `jobline dev`').env('JOBLINE_DATA_DIR').default('.jobline'))
    .option('--force', 'replace an existing CA (every certificate it issued stops working)')
    .action(async (o: { dataDir: string; force?: boolean }) => {
      const r = await (await import('./certs/dev-pki')).certsInit(o.dataDir, { force: o.force });
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
      const r = await (await import('./certs/dev-pki')).certsIssue(o.dataDir, name, { admin: o.admin, days: o.days });
      process.stdout.write(`issued ${r.cert} (key ${r.key}) for ${name}${o.admin ? ' (admin)' : ''}\n`);
    });

  program
    .command('completion')
    .description('print a shell completion script: eval "$(jobline completion bash)" in ~/.bashrc, or jobline completion zsh > "${fpath[1]}/_jobline"')
    .addArgument(new Argument('<shell>', 'bash or zsh').choices(['bash', 'zsh']))
    .action((shell: 'bash' | 'zsh') => {
      process.stdout.write(completionScript(program, shell));
    });

  return program;
}

/** Commander accumulator for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Runs the CLI: usage errors (unknown command or option, a bad or missing argument) exit 2,
 * help and --version exit 0, anything else that escapes a command exits 1.
 */
export async function run(argv: readonly string[]): Promise<void> {
  const program = buildProgram();
  for (const c of program.commands) c.exitOverride();
  try {
    await program.parseAsync(argv as string[]);
  } catch (err) {
    if (err instanceof CommanderError) {
      const benign = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
      process.exit(benign ? 0 : 2);
    }
    process.stderr.write(`jobline: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

if (require.main === module) void run(process.argv);
