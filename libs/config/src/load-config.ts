import { TEST_VARIABLE_PREFIX, VARIABLES, VARIABLE_NAMES, type VariableName, type VariableSpec } from './variables';

/**
 * The one configuration of every Jobline service and of `jobline dev`, built once from an
 * environment (a plain object: the caller passes process.env or Deno's variables) and then
 * passed down. Paths are as given (relative ones are resolved by the services against their
 * working directory).
 */
export interface JoblineConfig {
  nats: {
    /** null when JOBLINE_NATS_URL is not set: services use NATS_DEFAULT_URL, `jobline dev` starts a nats-server. */
    servers: string[] | null;
    user?: string;
    password?: string;
  };
  dataDir: string;
  /** `sqlite` or a connection string (postgres://, esdb://, kurrentdb://). */
  eventStore: string;
  log: { level: 'debug' | 'info' | 'warn' | 'error'; format: 'json' | 'text' | null };
  streams: { logsMaxAgeMs: number; logsMaxBytes: number; replicas: number };
  /** How long an executor may stay silent before its attempts are lost (scheduler and api's "alive"). */
  leaseMs: number;
  api: {
    host: string;
    port: number;
    /** null: off. */
    grpcPort: number | null;
    tlsDir: string;
    /** JOBLINE_TLS_DIR was set: its certificates must exist. */
    tlsDirExplicit: boolean;
    https: boolean;
    tokensFile: string | null;
    submitTimeoutMs: number;
    /** null: the built one next to the code; false: none. */
    dashboardDir: string | null | false;
  };
  orchestrator: {
    cancelConfirmMs: number;
    packager: boolean;
    httpPort: number | null;
    checkpointIntervalMs: number;
    /** single: the only orchestrator; lease: one of several, acting while it holds the leader lease. */
    leadership: 'single' | 'lease';
    leaderLeaseMs: number;
    /** Null: `<host name>-<pid>`, chosen at start. */
    id: string | null;
    retention: RetentionConfig;
  };
  /** Where clients reach the REST API (links in webhook payloads), without a trailing slash. */
  publicUrl: string;
  webhooks: {
    /** JOBLINE_WEBHOOKS_FILE: per-owner secrets and URLs (parseWebhooksFile); null: none. */
    file: string | null;
    allowHttp: boolean;
    /** CIDR ranges of private addresses deliveries may go to. */
    allowedRanges: string[];
    maxAttempts: number;
    backoffMs: number;
    timeoutMs: number;
  };
  /** JOBLINE_QUOTAS_FILE: per-owner quotas and fair-share weights (parseQuotasFile); null: no limits, equal weights. */
  quotas: { file: string | null };
  /** The Ed25519 key of chain checkpoints and attestations (created when missing). */
  signingKeyFile: string;
  executor: {
    id: string;
    capacity: number;
    labels: Record<string, string>;
    workRoot: string;
    graceMs: number;
    heartbeatMs: number;
    sandbox: 'auto' | 'required' | 'none';
    sandboxUid: number;
    sandboxGid: number;
    maxArtifactBytes: number;
    /** Budget of the host's bundle cache (least recently used removed first); null: none. */
    bundleCacheMaxBytes: number | null;
    sshInventory: string | null;
    httpPort: number | null;
  };
  packager: {
    gitHosts: string[] | null;
    dataHosts: string[] | null;
    allowFileUrls: boolean;
    allowPrivateAddresses: boolean;
    maxDataBytes: number;
    connectTimeoutMs: number;
    totalTimeoutMs: number;
    gitTimeoutMs: number;
    baseImage: string;
    concurrency: number;
    workDir: string;
    /** Budget of the per-URL git cache (least recently used mirrors removed first); null: none. */
    gitCacheMaxBytes: number | null;
    httpPort: number | null;
  };
  /** OpenTelemetry tracing, from the standard OTEL_* variables (see tracingConfig). */
  tracing: TracingConfig;
  /** Which variables were set (so `jobline config` can tell defaults from choices). */
  explicit: ReadonlySet<VariableName>;
}

/** What the retention policy removes, and when. */
export interface RetentionConfig {
  /** Finished jobs older than this are purged (ms since they finished); null: never (unless an owner says otherwise). */
  maxAgeMs: number | null;
  /** Per-owner overrides of maxAgeMs (null: that owner's jobs are kept). */
  ownerMaxAgeMs: Record<string, number | null>;
  /** Time between sweeps. */
  intervalMs: number;
}

export type TracesSampler = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

/**
 * Tracing is off unless asked for: on when OTEL_TRACES_EXPORTER is otlp or console, or when it
 * is unset and an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
 * is set; OTEL_TRACES_EXPORTER=none and OTEL_SDK_DISABLED=true always turn it off.
 */
export interface TracingConfig {
  enabled: boolean;
  exporter: 'otlp' | 'console';
  /** The full traces URL (…/v1/traces). */
  endpoint: string;
  protocol: 'http/protobuf' | 'http/json';
  headers: Record<string, string>;
  timeoutMs: number;
  /** null: jobline-<service>. */
  serviceName: string | null;
  resourceAttributes: Record<string, string>;
  sampler: TracesSampler;
  samplerRatio: number;
  batch: { scheduleDelayMs: number; exportTimeoutMs: number; maxQueueSize: number; maxExportBatchSize: number };
}

export const NATS_DEFAULT_URL = 'nats://127.0.0.1:4222';

/** Where the defaults differ: a service process, or `jobline dev` (one process, HTTP side ports off). */
export type ConfigProfile = 'service' | 'dev';

export interface ConfigProblem {
  variable: string;
  message: string;
}

/** Start-up refused: every problem, each naming its variable and what it accepts. */
export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** The value as it may be shown (secrets masked). */
export function shownValue(spec: Pick<VariableSpec, 'mask'>, raw: string): string {
  if (spec.mask === 'secret') return '***';
  if (spec.mask === 'url') return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
  return raw;
}

/**
 * Validates every JOBLINE_* variable of `env` at once. Unknown JOBLINE_* names are errors
 * too (a typo such as JOBLINE_SANBOX must not silently leave the default in force);
 * JOBLINE_TEST_* belong to the test suites and are ignored.
 */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, profile: ConfigProfile = 'service'): JoblineConfig {
  const problems: ConfigProblem[] = [];
  const values = new Map<VariableName, unknown>();
  for (const key of Object.keys(env)) {
    if (!key.startsWith('JOBLINE_') || key.startsWith(TEST_VARIABLE_PREFIX) || key in VARIABLES) continue;
    if (env[key] === undefined) continue;
    const near = nearest(key);
    problems.push({ variable: key, message: `unknown variable${near ? ` (did you mean ${near}?)` : ''}; \`jobline config --list\` lists them all` });
  }
  for (const name of VARIABLE_NAMES) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const spec: VariableSpec = VARIABLES[name];
    const r = spec.schema.safeParse(raw);
    if (r.success) values.set(name, r.data);
    else {
      const why = r.error.issues.map((i) => i.message).join('; ');
      const said = why.startsWith('must') ? why : `is invalid: ${why}`;
      problems.push({ variable: name, message: `${JSON.stringify(shownValue(spec, raw))} ${said}${said.includes(spec.accepts) ? '' : ` (accepts ${spec.accepts})`}` });
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const get = <N extends VariableName>(name: N): ValueOf<N> | undefined => values.get(name) as ValueOf<N> | undefined;
  const dataDir = get('JOBLINE_DATA_DIR') ?? '.jobline';
  const sidePort = (name: 'JOBLINE_ORCHESTRATOR_HTTP_PORT' | 'JOBLINE_PACKAGER_HTTP_PORT' | 'JOBLINE_EXECUTOR_HTTP_PORT', fallback: number) =>
    values.has(name) ? (get(name) ?? null) : profile === 'dev' ? null : fallback;
  const config: JoblineConfig = {
    nats: {
      servers: get('JOBLINE_NATS_URL') ?? null,
      ...(values.has('JOBLINE_NATS_USER') ? { user: get('JOBLINE_NATS_USER') } : {}),
      ...(values.has('JOBLINE_NATS_PASSWORD') ? { password: get('JOBLINE_NATS_PASSWORD') } : {}),
    },
    dataDir,
    eventStore: get('JOBLINE_EVENT_STORE') ?? 'sqlite',
    log: { level: get('JOBLINE_LOG_LEVEL') ?? 'info', format: get('JOBLINE_LOG_FORMAT') ?? null },
    streams: {
      logsMaxAgeMs: get('JOBLINE_LOGS_MAX_AGE_MS') ?? 7 * 86_400_000,
      logsMaxBytes: get('JOBLINE_LOGS_MAX_BYTES') ?? 4 * 2 ** 30,
      replicas: get('JOBLINE_STREAM_REPLICAS') ?? 1,
    },
    leaseMs: get('JOBLINE_LEASE_MS') ?? 10_000,
    api: {
      host: get('JOBLINE_API_HOST') ?? '127.0.0.1',
      port: get('JOBLINE_API_PORT') ?? 8080,
      grpcPort: values.has('JOBLINE_GRPC_PORT') ? (get('JOBLINE_GRPC_PORT') ?? null) : 50051,
      tlsDir: get('JOBLINE_TLS_DIR') ?? `${dataDir}/certs`,
      tlsDirExplicit: values.has('JOBLINE_TLS_DIR'),
      https: get('JOBLINE_API_HTTPS') ?? false,
      tokensFile: get('JOBLINE_TOKENS_FILE') ?? null,
      submitTimeoutMs: get('JOBLINE_SUBMIT_TIMEOUT_MS') ?? 10_000,
      dashboardDir: values.has('JOBLINE_DASHBOARD_DIR') ? (get('JOBLINE_DASHBOARD_DIR') === 'none' ? false : (get('JOBLINE_DASHBOARD_DIR') ?? null)) : null,
    },
    orchestrator: {
      cancelConfirmMs: get('JOBLINE_CANCEL_CONFIRM_MS') ?? 30_000,
      packager: get('JOBLINE_PACKAGER') ?? true,
      httpPort: sidePort('JOBLINE_ORCHESTRATOR_HTTP_PORT', 8081),
      checkpointIntervalMs: get('JOBLINE_CHECKPOINT_INTERVAL_MS') ?? 10_000,
      leadership: get('JOBLINE_LEADERSHIP') ?? 'single',
      leaderLeaseMs: get('JOBLINE_LEADER_LEASE_MS') ?? 10_000,
      id: get('JOBLINE_ORCHESTRATOR_ID') ?? null,
      retention: {
        maxAgeMs: get('JOBLINE_RETENTION_MAX_AGE_MS') ?? null,
        ownerMaxAgeMs: get('JOBLINE_RETENTION_OWNER_MAX_AGE_MS') ?? {},
        intervalMs: get('JOBLINE_RETENTION_INTERVAL_MS') ?? 3_600_000,
      },
    },
    publicUrl: '',
    webhooks: {
      file: get('JOBLINE_WEBHOOKS_FILE') ?? null,
      allowHttp: get('JOBLINE_WEBHOOKS_ALLOW_HTTP') ?? false,
      allowedRanges: get('JOBLINE_WEBHOOKS_ALLOW_ADDRESSES') ?? [],
      maxAttempts: get('JOBLINE_WEBHOOKS_MAX_ATTEMPTS') ?? 8,
      backoffMs: get('JOBLINE_WEBHOOKS_BACKOFF_MS') ?? 2000,
      timeoutMs: get('JOBLINE_WEBHOOKS_TIMEOUT_MS') ?? 10_000,
    },
    quotas: { file: get('JOBLINE_QUOTAS_FILE') ?? null },
    signingKeyFile: get('JOBLINE_SIGNING_KEY_FILE') ?? `${dataDir}/signing-key.pem`,
    executor: {
      id: get('JOBLINE_EXECUTOR_ID') ?? 'local',
      capacity: get('JOBLINE_EXECUTOR_CAPACITY') ?? 4,
      labels: get('JOBLINE_EXECUTOR_LABELS') ?? {},
      workRoot: get('JOBLINE_WORK_ROOT') ?? `${dataDir}/work`,
      graceMs: get('JOBLINE_GRACE_MS') ?? 5000,
      heartbeatMs: get('JOBLINE_HEARTBEAT_MS') ?? 1000,
      sandbox: get('JOBLINE_SANDBOX') ?? 'auto',
      sandboxUid: get('JOBLINE_SANDBOX_UID') ?? 10001,
      sandboxGid: get('JOBLINE_SANDBOX_GID') ?? 10001,
      maxArtifactBytes: get('JOBLINE_MAX_ARTIFACT_BYTES') ?? 256 * 1024 * 1024,
      bundleCacheMaxBytes: get('JOBLINE_BUNDLE_CACHE_MAX_BYTES') ?? null,
      sshInventory: get('JOBLINE_SSH_INVENTORY') ?? null,
      httpPort: sidePort('JOBLINE_EXECUTOR_HTTP_PORT', 8083),
    },
    packager: {
      gitHosts: get('JOBLINE_PACKAGER_GIT_HOSTS') ?? null,
      dataHosts: get('JOBLINE_PACKAGER_DATA_HOSTS') ?? null,
      allowFileUrls: get('JOBLINE_PACKAGER_ALLOW_FILE_URLS') ?? false,
      allowPrivateAddresses: get('JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES') ?? false,
      maxDataBytes: get('JOBLINE_PACKAGER_MAX_DATA_BYTES') ?? 1024 ** 3,
      connectTimeoutMs: get('JOBLINE_PACKAGER_CONNECT_TIMEOUT_MS') ?? 10_000,
      totalTimeoutMs: get('JOBLINE_PACKAGER_TOTAL_TIMEOUT_MS') ?? 600_000,
      gitTimeoutMs: get('JOBLINE_PACKAGER_GIT_TIMEOUT_MS') ?? 300_000,
      baseImage: get('JOBLINE_PACKAGER_BASE_IMAGE') ?? 'debian:bookworm-slim',
      concurrency: get('JOBLINE_PACKAGER_CONCURRENCY') ?? 2,
      workDir: get('JOBLINE_PACKAGER_WORK_DIR') ?? `${dataDir}/packager`,
      gitCacheMaxBytes: get('JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES') ?? null,
      httpPort: sidePort('JOBLINE_PACKAGER_HTTP_PORT', 8082),
    },
    tracing: tracingConfig(get),
    explicit: new Set(values.keys()),
  };
  config.publicUrl = get('JOBLINE_API_PUBLIC_URL') ?? `${config.api.https ? 'https' : 'http'}://${config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host}:${config.api.port}`;
  if (config.tracing.batch.maxExportBatchSize > config.tracing.batch.maxQueueSize) {
    throw new ConfigError([
      { variable: 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', message: `${config.tracing.batch.maxExportBatchSize} is more than OTEL_BSP_MAX_QUEUE_SIZE (${config.tracing.batch.maxQueueSize})` },
    ]);
  }
  const heartbeatProblem = config.executor.heartbeatMs * 3 > config.leaseMs;
  if (heartbeatProblem) {
    throw new ConfigError([
      { variable: 'JOBLINE_HEARTBEAT_MS', message: `${config.executor.heartbeatMs} is more than a third of JOBLINE_LEASE_MS (${config.leaseMs}): executors would be declared lost between heartbeats` },
    ]);
  }
  return config;
}

function tracingConfig(get: <N extends VariableName>(name: N) => ValueOf<N> | undefined): TracingConfig {
  const exporter = get('OTEL_TRACES_EXPORTER');
  const tracesEndpoint = get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const base = get('OTEL_EXPORTER_OTLP_ENDPOINT');
  const endpointSet = tracesEndpoint !== undefined || base !== undefined;
  const enabled = get('OTEL_SDK_DISABLED') !== true && (exporter === 'otlp' || exporter === 'console' || (exporter === undefined && endpointSet));
  return {
    enabled,
    exporter: exporter === 'console' ? 'console' : 'otlp',
    // As the specification says: the signal's URL is used as it is, the base one gets /v1/traces.
    endpoint: tracesEndpoint ?? `${(base ?? 'http://localhost:4318').replace(/\/+$/, '')}/v1/traces`,
    protocol: get('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? get('OTEL_EXPORTER_OTLP_PROTOCOL') ?? 'http/protobuf',
    headers: { ...get('OTEL_EXPORTER_OTLP_HEADERS'), ...get('OTEL_EXPORTER_OTLP_TRACES_HEADERS') },
    timeoutMs: get('OTEL_EXPORTER_OTLP_TRACES_TIMEOUT') ?? get('OTEL_EXPORTER_OTLP_TIMEOUT') ?? 10_000,
    serviceName: get('OTEL_SERVICE_NAME') ?? null,
    resourceAttributes: get('OTEL_RESOURCE_ATTRIBUTES') ?? {},
    sampler: get('OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on',
    samplerRatio: get('OTEL_TRACES_SAMPLER_ARG') ?? 1,
    batch: {
      scheduleDelayMs: get('OTEL_BSP_SCHEDULE_DELAY') ?? 5000,
      exportTimeoutMs: get('OTEL_BSP_EXPORT_TIMEOUT') ?? 30_000,
      maxQueueSize: get('OTEL_BSP_MAX_QUEUE_SIZE') ?? 2048,
      maxExportBatchSize: get('OTEL_BSP_MAX_EXPORT_BATCH_SIZE') ?? 512,
    },
  };
}

type ValueOf<N extends VariableName> = (typeof VARIABLES)[N] extends VariableSpec<infer T> ? T : never;

/** The known name closest to a misspelt one (edit distance ≤ 3), if any. */
function nearest(name: string): string | null {
  let best: string | null = null;
  let bestD = 4;
  for (const known of VARIABLE_NAMES) {
    const d = editDistance(name, known);
    if (d < bestD) {
      best = known;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
