import { z } from 'zod';
import { ExecutorIdSchema } from '../../../../libs/contracts/src';
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
  /** Workspaces go to <workRoot>/<executorId> (default ./.jobline/work). */
  workRoot: string;
  /** SIGTERM → SIGKILL grace when an attempt is stopped (default 5000 ms). */
  graceMs: number;
  /** Heartbeat period (default 1000 ms). */
  heartbeatMs: number;
  /** The orchestrator's lease, until its first lease reply says (default 10,000 ms; at least 3 heartbeat periods). */
  leaseMs: number;
}

/** Every variable the executor reads; nothing else of the environment is looked at. */
export const EXECUTOR_ENV_VARS = [
  'JOBLINE_NATS_URL',
  'JOBLINE_NATS_USER',
  'JOBLINE_NATS_PASSWORD',
  'JOBLINE_EXECUTOR_ID',
  'JOBLINE_EXECUTOR_CAPACITY',
  'JOBLINE_WORK_ROOT',
  'JOBLINE_GRACE_MS',
  'JOBLINE_HEARTBEAT_MS',
  'JOBLINE_LEASE_MS',
] as const;

export type ExecutorEnv = Partial<Record<(typeof EXECUTOR_ENV_VARS)[number], string>>;

const optionalNumber = (schema: z.ZodNumber) =>
  z.preprocess((v) => (v === undefined || v === '' ? undefined : Number(v)), schema.optional());
const optionalString = <T extends z.ZodType<string>>(schema: T) =>
  z.preprocess((v) => (v === '' ? undefined : v), schema.optional());

const EnvSchema = z.object({
  JOBLINE_NATS_URL: optionalString(z.string().min(1)),
  JOBLINE_NATS_USER: optionalString(z.string().min(1)),
  JOBLINE_NATS_PASSWORD: optionalString(z.string().min(1)),
  JOBLINE_EXECUTOR_ID: optionalString(ExecutorIdSchema),
  JOBLINE_EXECUTOR_CAPACITY: optionalNumber(z.number().int().min(1).max(1024)),
  JOBLINE_WORK_ROOT: optionalString(z.string().min(1)),
  JOBLINE_GRACE_MS: optionalNumber(z.number().int().min(0).max(3_600_000)),
  JOBLINE_HEARTBEAT_MS: optionalNumber(z.number().int().min(50).max(60_000)),
  JOBLINE_LEASE_MS: optionalNumber(z.number().int().min(150).max(3_600_000)),
});

export const EXECUTOR_CONFIG_DEFAULTS = {
  natsUrl: 'nats://127.0.0.1:4222',
  executorId: 'local',
  capacity: 4,
  workRoot: './.jobline/work',
  graceMs: 5000,
  heartbeatMs: EXECUTOR_DEFAULTS.heartbeatMs,
  leaseMs: EXECUTOR_DEFAULTS.leaseMs,
} as const;

/** Validates the executor's variables; throws one error listing every problem. */
export function executorConfigFromEnv(env: ExecutorEnv | Record<string, string | undefined>): ExecutorConfig {
  const r = EnvSchema.safeParse(env);
  if (!r.success) {
    throw new Error(`invalid executor configuration: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const e = r.data;
  const heartbeatMs = e.JOBLINE_HEARTBEAT_MS ?? EXECUTOR_CONFIG_DEFAULTS.heartbeatMs;
  const leaseMs = e.JOBLINE_LEASE_MS ?? EXECUTOR_CONFIG_DEFAULTS.leaseMs;
  if (leaseMs < 3 * heartbeatMs) {
    throw new Error(`invalid executor configuration: JOBLINE_LEASE_MS (${leaseMs}) must be at least 3 × JOBLINE_HEARTBEAT_MS (${heartbeatMs})`);
  }
  const capacity = e.JOBLINE_EXECUTOR_CAPACITY ?? EXECUTOR_CONFIG_DEFAULTS.capacity;
  const graceMs = e.JOBLINE_GRACE_MS ?? EXECUTOR_CONFIG_DEFAULTS.graceMs;
  // The same checks the executor makes of its options: what passes here starts.
  resolveExecutorTimings({ capacity, graceMs, heartbeatMs, leaseMs });
  return {
    natsUrl: e.JOBLINE_NATS_URL ?? EXECUTOR_CONFIG_DEFAULTS.natsUrl,
    natsUser: e.JOBLINE_NATS_USER,
    natsPassword: e.JOBLINE_NATS_PASSWORD,
    executorId: e.JOBLINE_EXECUTOR_ID ?? EXECUTOR_CONFIG_DEFAULTS.executorId,
    capacity,
    workRoot: e.JOBLINE_WORK_ROOT ?? EXECUTOR_CONFIG_DEFAULTS.workRoot,
    graceMs,
    heartbeatMs,
    leaseMs,
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
