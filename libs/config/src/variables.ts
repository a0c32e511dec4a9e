import { z } from 'zod';

/**
 * Every JOBLINE_* variable (and the standard OTEL_* ones Jobline honours), once: its parser, its default, who reads it and what it means.
 * loadConfig() builds the typed configuration from this table, `jobline config` prints it
 * (secrets masked) and the README's configuration table is generated from it. Runtime-neutral
 * (zod only): the Deno executor entry uses it too. Nothing here reads the environment.
 */

export type Service = 'api' | 'orchestrator' | 'packager' | 'executor' | 'dev' | 'cli';

export interface VariableSpec<T = unknown> {
  name: string;
  /** Parses the raw text (never undefined or ''; those mean "not set"). */
  schema: z.ZodType<T>;
  /** What the variable accepts, for error messages and the README (e.g. "an integer 1..1024"). */
  accepts: string;
  /** The default as documented ('' when there is none). */
  defaultText: string;
  services: readonly Service[];
  doc: string;
  /**
   * How the value is shown by `jobline config` and in errors: 'secret' never (`***`),
   * 'url' with the password of a URL masked; plain otherwise.
   */
  mask?: 'secret' | 'url';
}

const ALL_SERVICES: readonly Service[] = ['api', 'orchestrator', 'packager', 'executor', 'dev'];

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+$/, `must be an integer ${min}..${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

/** true/false (also 1/0): anything else is an error, never a guess. */
const bool = z.enum(['true', 'false', '1', '0'], { error: 'must be true or false' }).transform((v) => v === 'true' || v === '1');

/** An HTTP port, or `off`. */
const portOrOff = z.union([z.literal('off').transform(() => null), int(0, 65535)]);

const hostList = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'each entry must be a host name or *.domain')).min(1, 'must name at least one host'));

const natsUrls = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(z.string().regex(/^((nats|tls|ws|wss):\/\/)?[^\s,/]+(:\d+)?$/, 'each entry must be a NATS URL such as nats://127.0.0.1:4222')).min(1));

const eventStore = z
  .string()
  .regex(
    /^(sqlite|(postgres|postgresql):\/\/\S+|(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover):\/\/\S+)$/,
    'must be sqlite, a postgres:// URL or an esdb:// / kurrentdb:// connection string',
  );

const idToken = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9_-]');

const labels = z
  .string()
  .transform((v, ctx) => {
    const out: Record<string, string> = {};
    for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^([A-Za-z0-9_.-]{1,64})=([^,=]{0,256})$/.exec(part);
      if (!m) {
        ctx.addIssue({ code: 'custom', message: `"${part}" is not key=value` });
        return z.NEVER;
      }
      out[m[1]] = m[2];
    }
    return out;
  });

const path = z.string().min(1);

/** How long finished jobs are kept: milliseconds (at least a minute), or `off` (kept forever). */
const maxAgeOrOff = z.union([z.literal('off').transform(() => null), int(60_000, 100 * 365 * 86_400_000)]);

/** Per-owner retention: `owner=milliseconds|off,…` (each owner once). */
const ownerMaxAges = z.string().transform((v, ctx) => {
  const out: Record<string, number | null> = {};
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9_-]{1,64})=(.*)$/.exec(part);
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not owner=milliseconds or owner=off` });
      return z.NEVER;
    }
    if (m[1] in out) {
      ctx.addIssue({ code: 'custom', message: `owner ${m[1]} is given twice` });
      return z.NEVER;
    }
    const age = maxAgeOrOff.safeParse(m[2]);
    if (!age.success) {
      ctx.addIssue({ code: 'custom', message: `${m[1]}: ${age.error.issues.map((i) => i.message).join('; ')} (milliseconds ≥ 60000, or off)` });
      return z.NEVER;
    }
    out[m[1]] = age.data;
  }
  return out;
});

/** OTEL_* booleans: true or false, any case (the specification's form); anything else is an error. */
const otelBool = z
  .string()
  .transform((v) => v.toLowerCase())
  .pipe(z.enum(['true', 'false'], { error: 'must be true or false' }))
  .transform((v) => v === 'true');

const httpUrl = z
  .string()
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be an http:// or https:// URL');

/** W3C-baggage-like `key=value,key2=value2` (values percent-decoded), as OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES are written. */
const keyValueList = z.string().transform((v, ctx) => {
  const out: Record<string, string> = {};
  for (const part of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const key = eq > 0 ? part.slice(0, eq).trim() : '';
    if (!/^[A-Za-z0-9_.\-/]{1,255}$/.test(key)) {
      ctx.addIssue({ code: 'custom', message: `an entry is not key=value (keys of [A-Za-z0-9_.-/])` });
      return z.NEVER;
    }
    try {
      out[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      ctx.addIssue({ code: 'custom', message: `the value of ${key} is not percent-encoded correctly` });
      return z.NEVER;
    }
  }
  return out;
});

/** Bytes, or `off` (no budget). */
const bytesOrOff = z.union([z.literal('off').transform(() => null), int(1, Number.MAX_SAFE_INTEGER)]);
const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** CIDR ranges, comma-separated (IPv4 a.b.c.d/n, IPv6 x:y::/n). */
const cidrList = z
  .string()
  .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(
    z
      .array(
        z.string().refine((c) => {
          const m = /^([^/]+)\/(\d{1,3})$/.exec(c);
          if (!m) return false;
          if (ipv4.test(m[1])) return Number(m[2]) <= 32;
          return /^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/.test(m[1]) && Number(m[2]) <= 128;
        }, 'each entry must be a CIDR range such as 127.0.0.0/8 or fd00::/8'),
      )
      .min(1, 'must name at least one range'),
  );

/** An absolute http(s) URL without a trailing slash. */
const baseUrl = z
  .string()
  .regex(/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/, 'must be an http:// or https:// URL such as https://jobline.example.com')
  .transform((u) => u.replace(/\/+$/, ''));
const otlpProtocol = z.enum(['http/protobuf', 'http/json'], { error: 'must be http/protobuf or http/json (grpc is not supported)' });

function v<T>(name: string, schema: z.ZodType<T>, accepts: string, defaultText: string, services: readonly Service[], doc: string, mask?: 'secret' | 'url'): VariableSpec<T> {
  return { name, schema, accepts, defaultText, services, doc, ...(mask ? { mask } : {}) };
}

const S = {
  api: ['api', 'dev'],
  orch: ['orchestrator', 'dev'],
  pkg: ['packager', 'dev'],
  exec: ['executor', 'dev'],
} as const satisfies Record<string, readonly Service[]>;

export const VARIABLES = {
  // --- every service -------------------------------------------------------------------
  JOBLINE_NATS_URL: v('JOBLINE_NATS_URL', natsUrls, 'NATS URLs, comma-separated', 'nats://127.0.0.1:4222 (dev: start a nats-server)', ALL_SERVICES, 'The NATS server(s) with JetStream; several for a cluster.'),
  JOBLINE_NATS_USER: v('JOBLINE_NATS_USER', z.string().min(1), 'a NATS user name', '', ALL_SERVICES, 'NATS user (nats.js ignores credentials inside the URL).'),
  JOBLINE_NATS_PASSWORD: v('JOBLINE_NATS_PASSWORD', z.string().min(1), 'a password', '', ALL_SERVICES, 'Password of JOBLINE_NATS_USER.', 'secret'),
  JOBLINE_DATA_DIR: v('JOBLINE_DATA_DIR', path, 'a folder', '.jobline', ALL_SERVICES, 'SQLite files (events.db, checkpoints.db, read-models.db), dev certificates, default work root and packager folder.'),
  JOBLINE_EVENT_STORE: v('JOBLINE_EVENT_STORE', eventStore, 'sqlite | postgres://… | esdb://… | kurrentdb://…', 'sqlite', ['api', 'orchestrator', 'dev'], 'The event store: SQLite in the data folder (one machine), PostgreSQL (`?schema=` picks the schema, default jobline) or EventStoreDB/KurrentDB (shared by several machines).', 'url'),
  JOBLINE_LOG_LEVEL: v('JOBLINE_LOG_LEVEL', z.enum(['debug', 'info', 'warn', 'error']), 'debug | info | warn | error', 'info', ALL_SERVICES, 'Least severe level logged.'),
  JOBLINE_LOG_FORMAT: v('JOBLINE_LOG_FORMAT', z.enum(['json', 'text']), 'json | text', 'json (dev on a terminal: text)', ALL_SERVICES, 'json: one pino JSON object per line; text: readable lines (colour only on a terminal).'),
  JOBLINE_LOGS_MAX_AGE_MS: v('JOBLINE_LOGS_MAX_AGE_MS', int(60_000, 10 * 365 * 86_400_000), 'milliseconds', '604800000 (7 days)', ALL_SERVICES, 'How long the bus keeps log chunks (stream JOBLINE_LOGS).'),
  JOBLINE_LOGS_MAX_BYTES: v('JOBLINE_LOGS_MAX_BYTES', int(-1, Number.MAX_SAFE_INTEGER), 'bytes, -1 for no cap', '4294967296 (4 GiB)', ALL_SERVICES, 'Byte budget of the logs stream; the oldest chunks go first when it is full (JetStream reserves it: the server\'s storage must hold it). A follower asking for discarded bytes gets DATA_LOSS.'),
  JOBLINE_STREAM_REPLICAS: v('JOBLINE_STREAM_REPLICAS', int(1, 5), 'an integer 1..5', '1', ALL_SERVICES, 'JetStream replicas of every Jobline stream (3 on a 3-node cluster).'),

  // --- api -----------------------------------------------------------------------------
  JOBLINE_API_HOST: v('JOBLINE_API_HOST', z.string().min(1), 'a host or address', '127.0.0.1', S.api, 'Where REST, WebSocket and gRPC listen.'),
  JOBLINE_API_PORT: v('JOBLINE_API_PORT', int(0, 65535), 'a port 0..65535', '8080', S.api, 'REST and WebSocket port (0: a free one). dev: a taken port falls back to a free one.'),
  JOBLINE_GRPC_PORT: v('JOBLINE_GRPC_PORT', portOrOff, 'a port 0..65535, or off', '50051', S.api, 'gRPC (mTLS) port; served when the TLS folder holds the certificates.'),
  JOBLINE_TLS_DIR: v('JOBLINE_TLS_DIR', path, 'a folder', '<data dir>/certs', S.api, 'ca.crt, server.crt, server.key (as `jobline certs init` writes them). Set explicitly, they must exist.'),
  JOBLINE_API_HTTPS: v('JOBLINE_API_HTTPS', bool, 'true | false', 'false', S.api, 'Serve REST and WebSocket over TLS 1.3 with the TLS folder\'s certificates; client certificates name callers.'),
  JOBLINE_TOKENS_FILE: v('JOBLINE_TOKENS_FILE', path, 'a JSON file', '(api: required; dev: optional)', S.api, 'API tokens: [{"sha256": "<hex of the token>", "owner": "acme", "admin": false}].'),
  JOBLINE_DASHBOARD_DIR: v('JOBLINE_DASHBOARD_DIR', path, 'a folder, or none', '<install>/dist/web (what npm run build writes)', S.api, 'The built web dashboard served at /; none: no dashboard.'),
  JOBLINE_API_PUBLIC_URL: v('JOBLINE_API_PUBLIC_URL', baseUrl, 'an http(s) URL', 'http(s)://<JOBLINE_API_HOST>:<JOBLINE_API_PORT>', ['api', 'orchestrator', 'dev'], 'Where clients reach the REST API: the links in webhook payloads.'),
  JOBLINE_SUBMIT_TIMEOUT_MS: v('JOBLINE_SUBMIT_TIMEOUT_MS', int(1, 600_000), 'milliseconds', '10000', S.api, 'How long POST /v1/jobs waits for the submission to be recorded before a 503.'),

  // --- orchestrator --------------------------------------------------------------------
  JOBLINE_LEASE_MS: v('JOBLINE_LEASE_MS', int(150, 3_600_000), 'milliseconds', '10000', [...S.orch, 'api', 'executor'], 'An executor silent this long has lost its attempts (executors: until the first lease reply brings the orchestrator\'s value).'),
  JOBLINE_CANCEL_CONFIRM_MS: v('JOBLINE_CANCEL_CONFIRM_MS', int(100, 3_600_000), 'milliseconds', '30000', S.orch, 'How long an executor has to confirm a stop before the job is closed anyway.'),
  JOBLINE_PACKAGER: v('JOBLINE_PACKAGER', bool, 'true | false', 'true', S.orch, 'A packager runs: jobs with a source or data wait for their bundle. false: they fail at once, saying so.'),
  JOBLINE_SIGNING_KEY_FILE: v('JOBLINE_SIGNING_KEY_FILE', path, 'a file (PEM, PKCS#8 Ed25519)', '<data dir>/signing-key.pem (created when missing)', ['orchestrator', 'api', 'dev'], 'The Ed25519 key that signs chain checkpoints and attestations. Rotate by replacing the file; keep the old public key to verify what it signed.'),
  JOBLINE_CHECKPOINT_INTERVAL_MS: v('JOBLINE_CHECKPOINT_INTERVAL_MS', int(0, 86_400_000), 'milliseconds, 0 for none', '10000', S.orch, 'How often the orchestrator signs the head of the event hash chain (when it moved), keeps it in the store and publishes it on jobline.chain.checkpoint.'),
  JOBLINE_LEADERSHIP: v('JOBLINE_LEADERSHIP', z.enum(['single', 'lease'], { error: 'must be single or lease' }), 'single | lease', 'single', S.orch, 'single: this is the only orchestrator. lease: several orchestrators may run; the one holding the lease in the NATS KV bucket jobline_leader schedules, relays and signs checkpoints, the others handle commands and claims and take over within one lease when it is gone.'),
  JOBLINE_LEADER_LEASE_MS: v('JOBLINE_LEADER_LEASE_MS', int(1000, 600_000), 'milliseconds', '10000', S.orch, 'With JOBLINE_LEADERSHIP=lease: how long the leader\'s lease lasts after its last renewal (renewed every quarter of it); a standby takes over once the lease has not been renewed for this long.'),
  JOBLINE_ORCHESTRATOR_ID: v('JOBLINE_ORCHESTRATOR_ID', idToken, '1-64 of [A-Za-z0-9_-]', '<host name>-<pid>', S.orch, 'This orchestrator\'s name in the leader lease, logs and /healthz.'),
  JOBLINE_RETENTION_MAX_AGE_MS: v('JOBLINE_RETENTION_MAX_AGE_MS', maxAgeOrOff, 'milliseconds (≥ 60000), or off', 'off', S.orch, 'Finished jobs older than this (since they finished) are purged by the retention policy: logs and artifacts deleted, JobPurged recorded with actor retention:global; the history stays. off: kept until purged by hand.'),
  JOBLINE_RETENTION_OWNER_MAX_AGE_MS: v('JOBLINE_RETENTION_OWNER_MAX_AGE_MS', ownerMaxAges, 'owner=milliseconds|off, comma-separated', '—', S.orch, 'Per-owner retention, overriding JOBLINE_RETENTION_MAX_AGE_MS for those owners (actor retention:owner:<owner>); owner=off keeps that owner\'s jobs.'),
  JOBLINE_RETENTION_INTERVAL_MS: v('JOBLINE_RETENTION_INTERVAL_MS', int(1000, 86_400_000), 'milliseconds', '3600000 (1 hour)', S.orch, 'How often the retention policy sweeps (when a max age is set): expired jobs purged, then bundles no remaining job references removed from the bundle store.'),
  JOBLINE_QUOTAS_FILE: v('JOBLINE_QUOTAS_FILE', path, 'a JSON file', '(none: no limits, every owner weight 1)', S.orch, 'Per-owner quotas and fair-share weights: {"default": {"maxRunning": 4, "maxQueued": 100, "weight": 1}, "owners": {"ci": {"weight": 2}}, "retryAfterSeconds": 10}. A submit over maxQueued is refused (429 / RESOURCE_EXHAUSTED / jobline.rej.<owner>); free slots go by weighted fair share. An invalid file refuses the start.'),
  JOBLINE_WEBHOOKS_FILE: v('JOBLINE_WEBHOOKS_FILE', path, 'a JSON file', '', S.orch, 'Per-owner webhooks: {"owners": {"acme": {"secret": "<32+ characters>", "urls": ["https://…"]}}}. An owner without a secret gets no deliveries (recorded as refused).'),
  JOBLINE_WEBHOOKS_ALLOW_HTTP: v('JOBLINE_WEBHOOKS_ALLOW_HTTP', bool, 'true | false', 'false', S.orch, 'Deliver webhooks to http:// URLs too (default: https only).'),
  JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: v('JOBLINE_WEBHOOKS_ALLOW_ADDRESSES', cidrList, 'CIDR ranges, comma-separated', '(none)', S.orch, 'Private, loopback or link-local ranges webhooks may be delivered to; any other such address (169.254.169.254 included) is refused.'),
  JOBLINE_WEBHOOKS_MAX_ATTEMPTS: v('JOBLINE_WEBHOOKS_MAX_ATTEMPTS', int(1, 50), 'an integer 1..50', '8', S.orch, 'Tries of one webhook delivery (network errors, timeouts, 408, 429 and 5xx are retried).'),
  JOBLINE_WEBHOOKS_BACKOFF_MS: v('JOBLINE_WEBHOOKS_BACKOFF_MS', int(10, 3_600_000), 'milliseconds', '2000', S.orch, 'Wait before the second try; doubled after each failed try, at most 1 hour.'),
  JOBLINE_WEBHOOKS_TIMEOUT_MS: v('JOBLINE_WEBHOOKS_TIMEOUT_MS', int(100, 120_000), 'milliseconds', '10000', S.orch, 'Time for one webhook request, connection to response.'),
  JOBLINE_ORCHESTRATOR_HTTP_PORT: v('JOBLINE_ORCHESTRATOR_HTTP_PORT', portOrOff, 'a port, or off', '8081 (dev: off)', S.orch, '/healthz, /readyz and /metrics of the orchestrator.'),

  // --- executor ------------------------------------------------------------------------
  JOBLINE_EXECUTOR_ID: v('JOBLINE_EXECUTOR_ID', idToken, '1-64 of [A-Za-z0-9_-]', 'local', S.exec, 'The executor\'s id: its subject token and cgroup name.'),
  JOBLINE_EXECUTOR_CAPACITY: v('JOBLINE_EXECUTOR_CAPACITY', int(0, 1024), 'an integer 0..1024', '4', S.exec, 'Attempts at the same time (dev: 0 runs no local executor).'),
  JOBLINE_EXECUTOR_LABELS: v('JOBLINE_EXECUTOR_LABELS', labels, 'key=value,…', '', S.exec, 'Labels that `target.labels` of a job can ask for.'),
  JOBLINE_WORK_ROOT: v('JOBLINE_WORK_ROOT', path, 'a folder', '<data dir>/work', S.exec, 'Workspaces, running attempts and the bundle cache.'),
  JOBLINE_GRACE_MS: v('JOBLINE_GRACE_MS', int(0, 3_600_000), 'milliseconds', '5000', S.exec, 'SIGTERM → SIGKILL grace when an attempt is stopped.'),
  JOBLINE_HEARTBEAT_MS: v('JOBLINE_HEARTBEAT_MS', int(50, 60_000), 'milliseconds', '1000', S.exec, 'Heartbeat period (keep it well under JOBLINE_LEASE_MS).'),
  JOBLINE_SANDBOX: v('JOBLINE_SANDBOX', z.enum(['auto', 'required', 'none']), 'auto | required | none', 'auto', S.exec, 'auto: sandbox where the host allows, refuse to start where it should but cannot; required: refuse without one; none: never (recorded in JobStarted).'),
  JOBLINE_SANDBOX_UID: v('JOBLINE_SANDBOX_UID', int(1, 2 ** 32 - 2), 'a uid > 0', '10001', S.exec, 'The unprivileged user sandboxed jobs run as.'),
  JOBLINE_SANDBOX_GID: v('JOBLINE_SANDBOX_GID', int(1, 2 ** 32 - 2), 'a gid > 0', '10001', S.exec, 'Its group.'),
  JOBLINE_MAX_ARTIFACT_BYTES: v('JOBLINE_MAX_ARTIFACT_BYTES', int(0, Number.MAX_SAFE_INTEGER), 'bytes', '268435456 (256 MiB)', S.exec, 'Largest total of one attempt\'s outputs.'),
  JOBLINE_BUNDLE_CACHE_MAX_BYTES: v('JOBLINE_BUNDLE_CACHE_MAX_BYTES', bytesOrOff, 'bytes, or off', 'off', S.exec, 'Budget of the host\'s bundle cache (<work root>/.bundles): after each fetch, the least recently used bundles are removed until it fits; none used in the last 2 hours. off: it grows without bound.'),
  JOBLINE_SSH_INVENTORY: v('JOBLINE_SSH_INVENTORY', path, 'a JSON file', '', S.exec, 'SSH hosts: `jobline executor` runs one executor per host instead of a local one; dev runs them beside its local executor.'),
  JOBLINE_EXECUTOR_HTTP_PORT: v('JOBLINE_EXECUTOR_HTTP_PORT', portOrOff, 'a port, or off', '8083 (dev: off)', S.exec, '/healthz, /readyz and /metrics of an executor.'),

  // --- packager ------------------------------------------------------------------------
  JOBLINE_PACKAGER_GIT_HOSTS: v('JOBLINE_PACKAGER_GIT_HOSTS', hostList, 'host names, comma-separated (*.example.com for subdomains)', 'any', S.pkg, 'Git hosts jobs may fetch from.'),
  JOBLINE_PACKAGER_DATA_HOSTS: v('JOBLINE_PACKAGER_DATA_HOSTS', hostList, 'host names, comma-separated', 'any', S.pkg, 'Hosts data URLs may name.'),
  JOBLINE_PACKAGER_ALLOW_FILE_URLS: v('JOBLINE_PACKAGER_ALLOW_FILE_URLS', bool, 'true | false', 'false', S.pkg, 'Allow file:// git URLs.'),
  JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES: v('JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES', bool, 'true | false', 'false', S.pkg, 'Allow data from private, loopback and link-local addresses.'),
  JOBLINE_PACKAGER_MAX_DATA_BYTES: v('JOBLINE_PACKAGER_MAX_DATA_BYTES', int(1, Number.MAX_SAFE_INTEGER), 'bytes', '1073741824 (1 GiB)', S.pkg, 'Largest data file.'),
  JOBLINE_PACKAGER_CONNECT_TIMEOUT_MS: v('JOBLINE_PACKAGER_CONNECT_TIMEOUT_MS', int(100, 600_000), 'milliseconds', '10000', S.pkg, 'Connect timeout per data file.'),
  JOBLINE_PACKAGER_TOTAL_TIMEOUT_MS: v('JOBLINE_PACKAGER_TOTAL_TIMEOUT_MS', int(1000, 86_400_000), 'milliseconds', '600000', S.pkg, 'Total timeout per data file.'),
  JOBLINE_PACKAGER_GIT_TIMEOUT_MS: v('JOBLINE_PACKAGER_GIT_TIMEOUT_MS', int(1000, 86_400_000), 'milliseconds', '300000', S.pkg, 'Timeout per git command.'),
  JOBLINE_PACKAGER_BASE_IMAGE: v('JOBLINE_PACKAGER_BASE_IMAGE', z.string().min(1).max(255), 'an image reference', 'debian:bookworm-slim', S.pkg, 'FROM of the generated Dockerfile.'),
  JOBLINE_PACKAGER_CONCURRENCY: v('JOBLINE_PACKAGER_CONCURRENCY', int(1, 64), 'an integer 1..64', '2', S.pkg, 'Jobs packaged at once.'),
  JOBLINE_PACKAGER_WORK_DIR: v('JOBLINE_PACKAGER_WORK_DIR', path, 'a folder', '<data dir>/packager', S.pkg, 'Where bundles are assembled and the per-URL git cache lives.'),
  JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES: v('JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES', bytesOrOff, 'bytes, or off', 'off', S.pkg, 'Budget of the per-URL git cache: after each fetch, the least recently used mirrors are removed until the cache fits (the one just used is always kept). off: the cache grows without bound.'),
  JOBLINE_PACKAGER_HTTP_PORT: v('JOBLINE_PACKAGER_HTTP_PORT', portOrOff, 'a port, or off', '8082 (dev: off)', S.pkg, '/healthz, /readyz and /metrics of the packager.'),

  // --- tracing (OpenTelemetry's standard variables; off unless asked for) -------------
  OTEL_SDK_DISABLED: v('OTEL_SDK_DISABLED', otelBool, 'true | false', 'false', ALL_SERVICES, 'true: no tracing whatever the other OTEL_* variables say.'),
  OTEL_TRACES_EXPORTER: v('OTEL_TRACES_EXPORTER', z.enum(['otlp', 'console', 'none'], { error: 'must be otlp, console or none' }), 'otlp | console | none', '(none; otlp when an OTLP endpoint is set)', ALL_SERVICES, 'Turns tracing on: otlp sends spans to the OTLP/HTTP endpoint, console prints them; none (or unset without an endpoint): no SDK starts.'),
  OTEL_EXPORTER_OTLP_ENDPOINT: v('OTEL_EXPORTER_OTLP_ENDPOINT', httpUrl, 'an http(s) URL', 'http://localhost:4318', ALL_SERVICES, 'OTLP/HTTP base URL (`/v1/traces` is appended); setting it turns tracing on.', 'url'),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: v('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', httpUrl, 'an http(s) URL', '', ALL_SERVICES, 'The traces URL as it is (wins over OTEL_EXPORTER_OTLP_ENDPOINT); setting it turns tracing on.', 'url'),
  OTEL_EXPORTER_OTLP_PROTOCOL: v('OTEL_EXPORTER_OTLP_PROTOCOL', otlpProtocol, 'http/protobuf | http/json', 'http/protobuf', ALL_SERVICES, 'OTLP encoding over HTTP.'),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: v('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', otlpProtocol, 'http/protobuf | http/json', '(OTEL_EXPORTER_OTLP_PROTOCOL)', ALL_SERVICES, 'The same, for traces only (wins).'),
  OTEL_EXPORTER_OTLP_HEADERS: v('OTEL_EXPORTER_OTLP_HEADERS', keyValueList, 'key=value,… (values percent-encoded)', '', ALL_SERVICES, 'Headers of every export request (e.g. an API key of the backend).', 'secret'),
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: v('OTEL_EXPORTER_OTLP_TRACES_HEADERS', keyValueList, 'key=value,… (values percent-encoded)', '', ALL_SERVICES, 'Headers of trace export requests (added to OTEL_EXPORTER_OTLP_HEADERS, winning on the same key).', 'secret'),
  OTEL_EXPORTER_OTLP_TIMEOUT: v('OTEL_EXPORTER_OTLP_TIMEOUT', int(1, 600_000), 'milliseconds', '10000', ALL_SERVICES, 'Timeout of one export request.'),
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: v('OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', int(1, 600_000), 'milliseconds', '(OTEL_EXPORTER_OTLP_TIMEOUT)', ALL_SERVICES, 'The same, for traces only (wins).'),
  OTEL_SERVICE_NAME: v('OTEL_SERVICE_NAME', z.string().min(1).max(255), 'a name', 'jobline-<service> (jobline-api, jobline-orchestrator, …)', ALL_SERVICES, 'service.name of the spans; set, it names every service (dev runs all of them in one process).'),
  OTEL_RESOURCE_ATTRIBUTES: v('OTEL_RESOURCE_ATTRIBUTES', keyValueList, 'key=value,… (values percent-encoded)', '', ALL_SERVICES, 'Resource attributes of the spans (e.g. deployment.environment.name=prod).'),
  OTEL_TRACES_SAMPLER: v('OTEL_TRACES_SAMPLER', z.enum(['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'], { error: 'must be always_on, always_off, traceidratio or a parentbased_ one of them' }), 'always_on | always_off | traceidratio | parentbased_always_on | parentbased_always_off | parentbased_traceidratio', 'parentbased_always_on', ALL_SERVICES, 'Which traces are recorded (parentbased: a sampled traceparent from an integration is honoured).'),
  OTEL_TRACES_SAMPLER_ARG: v('OTEL_TRACES_SAMPLER_ARG', z.string().regex(/^(0(\.\d+)?|1(\.0+)?)$/, 'must be a ratio 0..1').transform(Number), 'a ratio 0..1', '1', ALL_SERVICES, 'The ratio of the traceidratio samplers.'),
  OTEL_BSP_SCHEDULE_DELAY: v('OTEL_BSP_SCHEDULE_DELAY', int(0, 3_600_000), 'milliseconds', '5000', ALL_SERVICES, 'Longest wait before finished spans are exported.'),
  OTEL_BSP_EXPORT_TIMEOUT: v('OTEL_BSP_EXPORT_TIMEOUT', int(1, 3_600_000), 'milliseconds', '30000', ALL_SERVICES, 'How long one batch export may take.'),
  OTEL_BSP_MAX_QUEUE_SIZE: v('OTEL_BSP_MAX_QUEUE_SIZE', int(1, 1_000_000), 'an integer 1..1000000', '2048', ALL_SERVICES, 'Finished spans kept while waiting for export; beyond it spans are dropped, never the work.'),
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: v('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', int(1, 1_000_000), 'an integer 1..1000000', '512', ALL_SERVICES, 'Most spans per export request (at most OTEL_BSP_MAX_QUEUE_SIZE).'),

  // --- the CLI as a client (gRPC) ------------------------------------------------------
  JOBLINE_GRPC_ADDRESS: v('JOBLINE_GRPC_ADDRESS', z.string().min(1), 'host:port', '127.0.0.1:50051', ['cli'], 'gRPC server the CLI talks to.'),
  JOBLINE_CA: v('JOBLINE_CA', path, 'a PEM file', '<data dir>/certs/ca.crt', ['cli'], 'CA certificate the CLI trusts.'),
  JOBLINE_CERT: v('JOBLINE_CERT', path, 'a PEM file', '<data dir>/certs/admin.crt', ['cli'], 'The CLI\'s client certificate (its CN is the owner).'),
  JOBLINE_KEY: v('JOBLINE_KEY', path, 'a PEM file', '<data dir>/certs/admin.key', ['cli'], 'Its private key.'),
  JOBLINE_CONFIG: v('JOBLINE_CONFIG', path, 'a JSON file', '', ['cli'], 'CLI settings {address, ca, cert, key}.'),
  JOBLINE_TOKEN: v('JOBLINE_TOKEN', z.string().min(1), 'a bearer token', '', ['cli'], 'Your REST bearer token, for curl and scripts (the README\'s examples); no service reads it.', 'secret'),
} satisfies Record<string, VariableSpec<never> | VariableSpec<unknown>>;

export type VariableName = keyof typeof VARIABLES;
export const VARIABLE_NAMES = Object.keys(VARIABLES) as VariableName[];

/** Variables of the test suites, never configuration of a service. */
export const TEST_VARIABLE_PREFIX = 'JOBLINE_TEST_';
