import { NATS_DEFAULT_URL, loadConfig, type VariableName } from '../../../../libs/config/src';
import { EXECUTOR_DEFAULTS, resolveExecutorTimings } from './executor-options';

/**
 * The executor's configuration as read from the environment, the same under every runtime.
 * Runtime-neutral: the entry file reads the variables (process.env, Deno.env) and passes them in.
 */
export interface ExecutorConfig {
  /** One URL or several, comma-separated (a cluster). Default nats://127.0.0.1:4222. */
  natsUrl: string;
  natsUser?: string;
  natsPassword?: string;
  /** A subject token (default 'local'). */
  executorId: string;
  /** Attempts at the same time (default 4). */
  capacity: number;
  /** Workspaces go to <workRoot>/<executorId> (default <JOBLINE_DATA_DIR>/work, i.e. .jobline/work). */
  workRoot: string;
  /** SIGTERM → SIGKILL grace when an attempt is stopped (default 5000 ms). */
  graceMs: number;
  /** Heartbeat period (default 1000 ms). */
  heartbeatMs: number;
  /** The orchestrator's lease, until its first lease reply says (default 10,000 ms; at least 3 heartbeat periods). */
  leaseMs: number;
  /** JOBLINE_SANDBOX: a runtime that cannot sandbox must refuse `required` (and jobs as root under `auto`). */
  sandbox: 'auto' | 'required' | 'none';
}

/**
 * Every variable the executor reads under a runtime that grants variables one by one (Deno);
 * nothing else of the environment is looked at. All are declared, parsed and validated in
 * the one configuration (libs/config); this only says which of them an executor needs.
 */
export const EXECUTOR_ENV_VARS = [
  'JOBLINE_NATS_URL',
  'JOBLINE_NATS_USER',
  'JOBLINE_NATS_PASSWORD',
  'JOBLINE_DATA_DIR',
  'JOBLINE_EXECUTOR_ID',
  'JOBLINE_EXECUTOR_CAPACITY',
  'JOBLINE_WORK_ROOT',
  'JOBLINE_GRACE_MS',
  'JOBLINE_HEARTBEAT_MS',
  'JOBLINE_LEASE_MS',
  'JOBLINE_SANDBOX',
  'JOBLINE_LOG_LEVEL',
] as const satisfies readonly VariableName[];

export type ExecutorEnv = Partial<Record<(typeof EXECUTOR_ENV_VARS)[number], string>>;

export const EXECUTOR_CONFIG_DEFAULTS = {
  natsUrl: NATS_DEFAULT_URL,
  executorId: 'local',
  capacity: 4,
  workRoot: '.jobline/work',
  graceMs: 5000,
  heartbeatMs: EXECUTOR_DEFAULTS.heartbeatMs,
  leaseMs: EXECUTOR_DEFAULTS.leaseMs,
  sandbox: 'auto',
} as const;

/**
 * The executor's part of the one configuration (loadConfig, so the same variables mean the
 * same thing under Node and Deno); throws a ConfigError listing every problem. Only the
 * executor's variables are looked at.
 */
export function executorConfigFromEnv(env: ExecutorEnv | Record<string, string | undefined>): ExecutorConfig {
  const own = Object.fromEntries(EXECUTOR_ENV_VARS.map((name) => [name, (env as Record<string, string | undefined>)[name]]));
  const c = loadConfig(own, 'service');
  const { capacity, graceMs, heartbeatMs } = c.executor;
  // The same checks the executor makes of its options: what passes here starts.
  resolveExecutorTimings({ capacity, graceMs, heartbeatMs, leaseMs: c.leaseMs });
  return {
    natsUrl: (c.nats.servers ?? [NATS_DEFAULT_URL]).join(','),
    natsUser: c.nats.user,
    natsPassword: c.nats.password,
    executorId: c.executor.id,
    capacity,
    workRoot: c.executor.workRoot,
    graceMs,
    heartbeatMs,
    leaseMs: c.leaseMs,
    sandbox: c.executor.sandbox,
  };
}

/**
 * host:port of every server in a JOBLINE_NATS_URL (comma-separated; scheme optional, port
 * default 4222), as a network permission names them. Throws on a URL it cannot read.
 */
export function natsHostPorts(natsUrl: string): string[] {
  return natsUrl
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      let url: URL;
      try {
        url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `nats://${s}`);
      } catch {
        throw new Error(`invalid NATS server URL ${JSON.stringify(s)}`);
      }
      if (!url.hostname) throw new Error(`invalid NATS server URL ${JSON.stringify(s)}: no host`);
      return `${url.hostname}:${url.port || '4222'}`;
    });
}
