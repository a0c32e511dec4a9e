import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CONSUMER_DEFAULTS } from '../../../libs/messaging/src/jetstream.transport';
import { PACKAGER_ACK_WAIT_MS } from '../../../apps/packager/src/packager';
import { VARIABLES } from '../../../libs/config/src/variables';
import { findNatsServer, freePort } from '../../../libs/testing/src';
import { startTestSshd, type TestSshd } from '../../../apps/executor/src/ssh/testing/sshd';

/**
 * The production topology as separate OS processes, started the way deploy/README.md says,
 * service by service: nats-server from deploy/nats/jobline.conf, then `jobline orchestrator`,
 * `jobline packager`, `jobline executor` (local), `jobline executor` (SSH inventory) and
 * `jobline api`, each with the JOBLINE_* variables of the README and nothing inherited but
 * PATH and HOME. Only addresses, ports and folders differ from deploy/env and docker-compose.yml
 * (free loopback ports, a temporary folder), the store (SQLite unless PostgreSQL is asked for),
 * file:// git URLs allowed, and the shortened timings below (TEST_ONLY_VARIABLES).
 */

/** The repository (the folder with package.json): this file runs from test/ under jest and from dist/test/ in a benchmark. */
export const ROOT = findRoot(__dirname);

function findRoot(from: string): string {
  for (let dir = from; ; dir = resolve(dir, '..')) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (resolve(dir, '..') === dir) return resolve(__dirname, '../../..');
  }
}
export const CLI = join(ROOT, 'dist/apps/cli/src/main.js');
/** The shipped NATS configuration the test's server starts from (2.9-compatible; see jobline-fsync.conf for 2.10+). */
export const NATS_CONFIG = join(ROOT, 'deploy/nats/jobline.conf');

export type ServiceName = 'api' | 'orchestrator' | 'packager' | 'executor' | 'executor-ssh';
export const SERVICES: readonly ServiceName[] = ['orchestrator', 'packager', 'executor', 'executor-ssh', 'api'];

/**
 * Timings shortened through their variables (the defaults are 10 s lease, 1 s heartbeat,
 * 30 s cancel confirmation, 10 s submit wait, 5 s grace) so that an outage "longer than every
 * timeout and lease" stays short. Each is a documented JOBLINE_* variable; nothing else changes.
 */
export const TEST_TIMINGS = { leaseMs: 3000, heartbeatMs: 500, cancelConfirmMs: 3000, submitTimeoutMs: 5000, graceMs: 1000 } as const;
export type Timings = { [K in keyof typeof TEST_TIMINGS]: number };

/** The same timings at their variables' documented defaults (what a deployment without them runs; the benchmarks use these). */
export const DEFAULT_TIMINGS: Timings = {
  leaseMs: Number(VARIABLES.JOBLINE_LEASE_MS.defaultText),
  heartbeatMs: Number(VARIABLES.JOBLINE_HEARTBEAT_MS.defaultText),
  cancelConfirmMs: Number(VARIABLES.JOBLINE_CANCEL_CONFIRM_MS.defaultText),
  submitTimeoutMs: Number(VARIABLES.JOBLINE_SUBMIT_TIMEOUT_MS.defaultText),
  graceMs: Number(VARIABLES.JOBLINE_GRACE_MS.defaultText),
};

/** SSH settings of the test inventory (file keys; the executor's connection timeouts). */
export const TEST_SSH = { connectTimeoutMs: 5000, commandTimeoutMs: 10_000, keepaliveIntervalMs: 1000, keepaliveCountMax: 3 } as const;

/**
 * Variables the test sets beyond docker-compose.yml, each with why. Everything compose sets
 * for a service, the test sets too (deploy/deploy-files.int-spec.ts checks both).
 */
export const TEST_ONLY_VARIABLES: Readonly<Record<string, string>> = {
  JOBLINE_LEASE_MS: 'shortened (TEST_TIMINGS) so that a long outage stays short',
  JOBLINE_HEARTBEAT_MS: 'shortened with the lease (at most a third of it)',
  JOBLINE_CANCEL_CONFIRM_MS: 'shortened (TEST_TIMINGS)',
  JOBLINE_SUBMIT_TIMEOUT_MS: 'shortened (TEST_TIMINGS)',
  JOBLINE_GRACE_MS: 'shortened (TEST_TIMINGS)',
  JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'the test repository is a local folder (file://)',
  JOBLINE_SSH_INVENTORY: 'the SSH executor (compose has no SSH host)',
};

/**
 * The longest any service waits on something that an outage interrupts: the lease, the
 * cancel confirmation, the api's submit wait, the JetStream consumers' ack waits (30 s for the
 * orchestrator's and the executors' consumers, the orchestrator's with a leader lease the lease
 * up to 30 s; 60 s for the packager's; none configurable of its own),
 * the SSH connect and command timeouts and its keepalive. A "long outage" lasts longer than all.
 */
export function longestTimeoutMs(t: Timings = TEST_TIMINGS): number {
  return Math.max(
    t.leaseMs,
    t.cancelConfirmMs,
    t.submitTimeoutMs,
    t.graceMs,
    CONSUMER_DEFAULTS.ackWaitMs,
    PACKAGER_ACK_WAIT_MS,
    TEST_SSH.connectTimeoutMs,
    TEST_SSH.commandTimeoutMs,
    TEST_SSH.keepaliveIntervalMs * TEST_SSH.keepaliveCountMax,
  );
}

export type StoreChoice = { kind: 'sqlite' } | { kind: 'postgres'; url: string };

/** JOBLINE_TEST_TOPOLOGY_STORE: unset or `sqlite`, or a PostgreSQL URL (a fresh schema is made in it, dropped after). */
export function storeFromEnv(value: string | undefined): StoreChoice {
  if (!value || value === 'sqlite') return { kind: 'sqlite' };
  if (/^postgres(ql)?:\/\//.test(value)) return { kind: 'postgres', url: value };
  throw new Error(`JOBLINE_TEST_TOPOLOGY_STORE must be sqlite or a postgres:// URL, not ${JSON.stringify(value)}`);
}

/** Where everything of one topology lives, and on which ports. */
export interface TopologyLayout {
  root: string;
  natsPort: number;
  natsHttpPort: number;
  natsPassword: string;
  acmeNatsPassword: string;
  /** JOBLINE_EVENT_STORE. */
  eventStore: string;
  /** SQLite: the api and the orchestrator share one data folder (the events file is there). */
  dataDirs: Record<ServiceName, string>;
  natsStoreDir: string;
  ports: { api: number; grpc: number; orchestrator: number; packager: number; executor: number; executorSsh: number };
  tokensFile: string;
  inventoryFile: string;
  timings: Timings;
}

export const LOCAL_EXECUTOR_ID = 'exec-1';
export const SSH_HOST = 'ssh-1';

/**
 * Each service's environment: exactly the variables deploy/README.md gives it, with this
 * layout's addresses. Pure, so the deploy-files test can compare it with docker-compose.yml.
 */
export function serviceEnvironment(name: ServiceName, l: TopologyLayout): Record<string, string> {
  const common = {
    JOBLINE_NATS_URL: `nats://127.0.0.1:${l.natsPort}`,
    JOBLINE_NATS_USER: 'jobline',
    JOBLINE_NATS_PASSWORD: l.natsPassword,
    JOBLINE_DATA_DIR: l.dataDirs[name],
    JOBLINE_LOG_FORMAT: 'json',
  };
  const t = l.timings;
  switch (name) {
    case 'orchestrator':
      return {
        ...common,
        JOBLINE_EVENT_STORE: l.eventStore,
        JOBLINE_ORCHESTRATOR_HTTP_PORT: String(l.ports.orchestrator),
        JOBLINE_LEASE_MS: String(t.leaseMs),
        JOBLINE_CANCEL_CONFIRM_MS: String(t.cancelConfirmMs),
      };
    case 'api':
      return {
        ...common,
        JOBLINE_EVENT_STORE: l.eventStore,
        JOBLINE_API_HOST: '127.0.0.1',
        JOBLINE_API_PORT: String(l.ports.api),
        JOBLINE_GRPC_PORT: String(l.ports.grpc),
        JOBLINE_TLS_DIR: join(l.dataDirs.api, 'certs'),
        JOBLINE_TOKENS_FILE: l.tokensFile,
        JOBLINE_LEASE_MS: String(t.leaseMs),
        JOBLINE_SUBMIT_TIMEOUT_MS: String(t.submitTimeoutMs),
      };
    case 'packager':
      return {
        ...common,
        JOBLINE_PACKAGER_WORK_DIR: join(l.dataDirs.packager, 'work'),
        JOBLINE_PACKAGER_HTTP_PORT: String(l.ports.packager),
        JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'true',
      };
    case 'executor':
      return {
        ...common,
        JOBLINE_EXECUTOR_ID: LOCAL_EXECUTOR_ID,
        JOBLINE_EXECUTOR_CAPACITY: '4',
        JOBLINE_WORK_ROOT: join(l.dataDirs.executor, 'work'),
        JOBLINE_SANDBOX: 'auto',
        JOBLINE_EXECUTOR_HTTP_PORT: String(l.ports.executor),
        JOBLINE_HEARTBEAT_MS: String(t.heartbeatMs),
        JOBLINE_GRACE_MS: String(t.graceMs),
      };
    case 'executor-ssh':
      return {
        ...common,
        JOBLINE_SSH_INVENTORY: l.inventoryFile,
        JOBLINE_WORK_ROOT: join(l.dataDirs['executor-ssh'], 'work'),
        JOBLINE_EXECUTOR_HTTP_PORT: String(l.ports.executorSsh),
        JOBLINE_HEARTBEAT_MS: String(t.heartbeatMs),
        JOBLINE_GRACE_MS: String(t.graceMs),
      };
  }
}

/** A layout with placeholder ports and folders (for comparing variable names without starting anything). */
export function exampleLayout(store: StoreChoice = { kind: 'sqlite' }): TopologyLayout {
  const dirs = { api: '/var/lib/jobline/api', orchestrator: '/var/lib/jobline/orchestrator', packager: '/var/lib/jobline/packager', executor: '/var/lib/jobline/executor', 'executor-ssh': '/var/lib/jobline/executor-ssh' };
  return {
    root: '/var/lib/jobline',
    natsPort: 4222,
    natsHttpPort: 8222,
    natsPassword: 'example',
    acmeNatsPassword: 'example',
    eventStore: store.kind === 'sqlite' ? 'sqlite' : store.url,
    dataDirs: dirs,
    natsStoreDir: '/var/lib/nats',
    ports: { api: 8080, grpc: 50051, orchestrator: 8081, packager: 8082, executor: 8083, executorSsh: 8084 },
    tokensFile: '/etc/jobline/tokens.json',
    inventoryFile: '/etc/jobline/ssh-inventory.json',
    timings: TEST_TIMINGS,
  };
}

/** A process of the topology: started from a command line and an environment only, restartable. */
export class ManagedProcess {
  child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);
  starts = 0;

  constructor(
    readonly name: string,
    readonly command: string,
    readonly args: readonly string[],
    readonly env: Readonly<Record<string, string>>,
    readonly logFile: string,
    /** 200 here means ready (the same probe as the compose healthcheck). */
    readonly readyUrl: string,
    /** What a clean stop sends: nats-server exits 1 on SIGTERM and 0 on SIGINT. */
    readonly stopSignal: NodeJS.Signals = 'SIGTERM',
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns it and waits until its ready URL answers 200. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running`);
    const fd = openSync(this.logFile, 'a');
    writeFileSync(fd, `\n===== ${new Date().toISOString()} start #${++this.starts}: ${this.command} ${this.args.join(' ')}\n`);
    const child = spawn(this.command, [...this.args], { cwd: ROOT, env: { ...this.env }, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
    await this.waitReady(timeoutMs);
  }

  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`${this.name} exited (${this.child?.exitCode ?? this.child?.signalCode}) before it was ready:\n${this.tail()}`);
      try {
        const res = await fetch(this.readyUrl, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`${this.name} not ready at ${this.readyUrl} after ${timeoutMs} ms:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.child?.pid || !this.running) throw new Error(`${this.name} is not running`);
    process.kill(this.child.pid, signal);
  }

  /** kill -9, and wait until the process is gone. */
  async kill9(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  /** The stop signal; resolves with the exit code (null if killed by a signal after the deadline). */
  async stop(timeoutMs = 60_000): Promise<number | null> {
    if (!this.running) return this.child?.exitCode ?? null;
    // A stopped process cannot act on SIGTERM.
    this.signal('SIGCONT');
    this.signal(this.stopSignal);
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  tail(lines = 40): string {
    if (!existsSync(this.logFile)) return '';
    return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
  }
}

/** nats-server from deploy/nats/jobline.conf as shipped, on the layout's loopback ports and store, with its passwords. */
export function natsServerProcess(layout: TopologyLayout, base: Record<string, string>, logFile: string): ManagedProcess {
  return new ManagedProcess(
    'nats-server',
    findNatsServer()!,
    ['-c', NATS_CONFIG, '-a', '127.0.0.1', '-p', String(layout.natsPort), '-m', String(layout.natsHttpPort)],
    { ...base, NATS_STORE_DIR: layout.natsStoreDir, JOBLINE_NATS_PASSWORD: layout.natsPassword, NATS_ACME_PASSWORD: layout.acmeNatsPassword, NATS_GLOBEX_PASSWORD: `p${randomBytes(12).toString('hex')}` },
    logFile,
    `http://127.0.0.1:${layout.natsHttpPort}/healthz?js-enabled-only=true`,
    'SIGINT',
  );
}

export interface Topology<S extends ServiceName = ServiceName> {
  layout: TopologyLayout;
  store: StoreChoice;
  apiUrl: string;
  grpcAddress: string;
  adminToken: string;
  acmeToken: string;
  nats: ManagedProcess;
  /** The processes started (all of SERVICES unless TopologyOptions.services chose fewer). */
  services: Record<S, ManagedProcess>;
  /** The SSH test host, when executor-ssh runs. */
  sshd: TestSshd | null;
  /** The git repository jobs with a source use (file://), and its commit. */
  repo: { url: string; commit: string };
  /** Every process in start order: nats first. */
  all(): ManagedProcess[];
  /** A clean stop of each process (api first, nats last): their exit codes. */
  stop(): Promise<Record<string, number | null>>;
  /** Drops the PostgreSQL schema, if the store is PostgreSQL (the caller removes the folder). */
  remove(): void;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

function git(cwd: string, ...args: string[]): string {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd, GIT_CONFIG_NOSYSTEM: '1' } });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** What the topology needs from this machine, or why it cannot run here. */
export function topologyUnavailable(): string | null {
  if (!findNatsServer()) return 'nats-server not installed (scripts/system-deps.sh installs it)';
  if (spawnSync('git', ['--version']).status !== 0) return 'git not installed';
  if (!existsSync(CLI)) return `${CLI} missing: build first (npx tsc -p tsconfig.build.json)`;
  return null;
}

export interface TopologyOptions<S extends ServiceName = ServiceName> {
  /** The services started, in SERVICES' order (default all five); without executor-ssh no SSH host is started. */
  services?: readonly S[];
  /** Default TEST_TIMINGS. */
  timings?: Timings;
  /** Documented JOBLINE_* variables set beyond serviceEnvironment's, per service (e.g. a benchmark's executor capacity and sandbox). */
  extraEnv?: Partial<Record<S, Record<string, string>>>;
  /** Node options put before the CLI, per service (e.g. a benchmark's `--cpu-prof`). */
  nodeArgs?: Partial<Record<S, readonly string[]>>;
  /** Called once the layout's folders exist, before any process starts (e.g. to put a pre-filled store in place). */
  beforeStart?: (layout: TopologyLayout) => Promise<void> | void;
  /** How long each process may take to be ready (default 60 s; a large store takes the orchestrator longer: its folds start from position 0). */
  readyTimeoutMs?: number;
}

/** Starts nats-server, the SSH test host and the five service processes as deploy/README.md says (or the services of `options`). */
export async function startTopology<S extends ServiceName = ServiceName>(root: string, store: StoreChoice, options: TopologyOptions<S> = {}): Promise<Topology<S>> {
  const chosen = SERVICES.filter((s): s is S => !options.services || (options.services as readonly ServiceName[]).includes(s));
  const extraEnv: Partial<Record<ServiceName, Record<string, string>>> = options.extraEnv ?? {};
  const nodeArgs: Partial<Record<ServiceName, readonly string[]>> = options.nodeArgs ?? {};
  for (const [s, vars] of Object.entries(extraEnv)) {
    if (!chosen.includes(s as S)) throw new Error(`extraEnv for ${s}, which is not started`);
    for (const v of Object.keys(vars ?? {})) if (!(v in VARIABLES)) throw new Error(`extraEnv: ${v} is not a documented variable`);
  }
  // The sandbox user must be able to reach workspaces under this folder.
  chmodSync(root, 0o755);
  const dir = (...p: string[]) => {
    const d = join(root, ...p);
    mkdirSync(d, { recursive: true, mode: 0o755 });
    return d;
  };
  const logs = dir('logs');
  // SQLite is one file on one machine: the api and the orchestrator share its folder.
  const shared = dir('state');
  const dataDirs: Record<ServiceName, string> = {
    api: store.kind === 'sqlite' ? shared : dir('api'),
    orchestrator: store.kind === 'sqlite' ? shared : dir('orchestrator'),
    packager: dir('packager'),
    executor: dir('executor'),
    'executor-ssh': dir('executor-ssh'),
  };
  let eventStore = 'sqlite';
  let schema: string | null = null;
  if (store.kind === 'postgres') {
    schema = `topology_${randomBytes(6).toString('hex')}`;
    eventStore = `${store.url}${store.url.includes('?') ? '&' : '?'}schema=${schema}`;
  }
  const [natsPort, natsHttpPort, api, grpc, orchestrator, packager, executor, executorSsh] = await Promise.all(Array.from({ length: 8 }, () => freePort()));
  const layout: TopologyLayout = {
    root,
    natsPort,
    natsHttpPort,
    // nats-server parses a `$VAR` value as a configuration token: a leading digit makes it a
    // number (start-up error). Hence a letter first, as deploy/README.md says.
    natsPassword: `p${randomBytes(12).toString('hex')}`,
    acmeNatsPassword: `p${randomBytes(12).toString('hex')}`,
    eventStore,
    dataDirs,
    natsStoreDir: dir('nats'),
    ports: { api, grpc, orchestrator, packager, executor, executorSsh },
    tokensFile: join(root, 'tokens.json'),
    inventoryFile: join(root, 'ssh-inventory.json'),
    timings: options.timings ?? TEST_TIMINGS,
  };
  const adminToken = randomBytes(24).toString('hex');
  const acmeToken = randomBytes(24).toString('hex');
  writeFileSync(layout.tokensFile, JSON.stringify([{ sha256: sha256(adminToken), owner: 'admin', admin: true }, { sha256: sha256(acmeToken), owner: 'acme', admin: false }]));

  // The SSH host: a private sshd on a free loopback port, pinned in a real inventory file.
  const sshd = (chosen as readonly ServiceName[]).includes('executor-ssh') ? await startTestSshd(dir('sshd')) : null;
  if (sshd) writeFileSync(
    layout.inventoryFile,
    JSON.stringify(
      {
        hosts: [{ name: SSH_HOST, address: '127.0.0.1', port: sshd.port, user: sshd.user, privateKeyFile: sshd.userKeyFile, hostKey: sshd.hostKey, capacity: 2, remoteRoot: dir('ssh-remote') }],
        ...TEST_SSH,
      },
      null,
      2,
    ),
  );

  // A local repository for jobs with a git source.
  const repoDir = dir('repo');
  git(repoDir, 'init', '-q', '-b', 'main');
  writeFileSync(join(repoDir, 'hello.sh'), 'echo "hello from git $(cat data.txt)"\n');
  writeFileSync(join(repoDir, 'data.txt'), 'at a commit\n');
  git(repoDir, 'add', '.');
  git(repoDir, '-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'first');
  const repo = { url: `file://${repoDir}`, commit: git(repoDir, 'rev-parse', 'HEAD') };

  const base = { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: process.env.HOME ?? root };
  const nats = natsServerProcess(layout, base, join(logs, 'nats-server.log'));
  const readyUrl: Record<ServiceName, string> = {
    api: `http://127.0.0.1:${api}/readyz`,
    orchestrator: `http://127.0.0.1:${orchestrator}/readyz`,
    packager: `http://127.0.0.1:${packager}/readyz`,
    executor: `http://127.0.0.1:${executor}/readyz`,
    'executor-ssh': `http://127.0.0.1:${executorSsh}/readyz`,
  };
  const services = Object.fromEntries(
    chosen.map((name) => [
      name,
      new ManagedProcess(name, process.execPath, [...(nodeArgs[name] ?? []), CLI, name === 'executor-ssh' ? 'executor' : name], { ...base, ...serviceEnvironment(name, layout), ...extraEnv[name] }, join(logs, `${name}.log`), readyUrl[name]),
    ]),
  ) as Record<S, ManagedProcess>;

  const all = () => [nats, ...chosen.map((s) => services[s])];
  const stop = async () => {
    const codes: Record<string, number | null> = {};
    for (const p of [...all()].reverse()) codes[p.name] = await p.stop();
    await sshd?.stop();
    return codes;
  };
  const topology: Topology<S> = {
    layout,
    store,
    apiUrl: `http://127.0.0.1:${api}`,
    grpcAddress: `127.0.0.1:${grpc}`,
    adminToken,
    acmeToken,
    nats,
    services,
    sshd,
    repo,
    all,
    stop,
    remove: () => {
      if (schema && store.kind === 'postgres') {
        spawnSync('psql', [store.url.replace(/\?.*$/, ''), '-q', '-c', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { stdio: 'ignore' });
      }
    },
  };
  try {
    // Certificates for gRPC mTLS, as a user makes them: `jobline certs init` into the api's data folder.
    const certs = spawnSync(process.execPath, [CLI, 'certs', 'init', '--data-dir', dataDirs.api], { cwd: ROOT, env: base, encoding: 'utf8' });
    if (certs.status !== 0) throw new Error(`jobline certs init failed: ${certs.stderr}`);
    await options.beforeStart?.(layout);
    await nats.start(options.readyTimeoutMs);
    // The orchestrator first (it owns the store), then the rest side by side.
    const first = chosen.filter((s) => s === 'orchestrator');
    for (const s of first) await services[s].start(options.readyTimeoutMs);
    await Promise.all(chosen.filter((s) => s !== 'orchestrator').map((s) => services[s].start(options.readyTimeoutMs)));
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return topology;
}
