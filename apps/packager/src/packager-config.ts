import { z } from 'zod';
import type { PackagerOptions } from './packager';

const empty = (v: unknown) => (v === '' ? undefined : v);
const list = z.preprocess((v) => (typeof v === 'string' && v.trim() !== '' ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined), z.array(z.string().regex(/^(\*\.)?[A-Za-z0-9.-]+$/, 'must be a host name or *.domain')).optional());
const flag = z.preprocess(empty, z.enum(['true', 'false', '1', '0']).optional()).transform((v) => v === 'true' || v === '1');
const int = (min: number, max: number) => z.preprocess(empty, z.coerce.number().int().min(min).max(max).optional());

const EnvSchema = z.object({
  JOBLINE_NATS_URL: z.preprocess(empty, z.string().min(1).default('nats://127.0.0.1:4222')),
  JOBLINE_PACKAGER_GIT_HOSTS: list,
  JOBLINE_PACKAGER_DATA_HOSTS: list,
  JOBLINE_PACKAGER_ALLOW_FILE_URLS: flag,
  JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES: flag,
  JOBLINE_PACKAGER_MAX_DATA_BYTES: int(1, Number.MAX_SAFE_INTEGER),
  JOBLINE_PACKAGER_CONNECT_TIMEOUT_MS: int(100, 600_000),
  JOBLINE_PACKAGER_TOTAL_TIMEOUT_MS: int(1000, 24 * 3600_000),
  JOBLINE_PACKAGER_GIT_TIMEOUT_MS: int(1000, 24 * 3600_000),
  JOBLINE_PACKAGER_BASE_IMAGE: z.preprocess(empty, z.string().min(1).max(255).optional()),
  JOBLINE_PACKAGER_CONCURRENCY: int(1, 64),
  JOBLINE_PACKAGER_WORK_DIR: z.preprocess(empty, z.string().min(1).optional()),
});

export interface PackagerConfig {
  natsUrl: string;
  options: PackagerOptions;
}

/** Reads and validates the packager's configuration; throws listing every problem. */
export function packagerConfigFromEnv(env: Record<string, string | undefined>): PackagerConfig {
  const r = EnvSchema.safeParse(env);
  if (!r.success) throw new Error(`invalid packager configuration: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const e = r.data;
  return {
    natsUrl: e.JOBLINE_NATS_URL,
    options: {
      git: { allowFileUrls: e.JOBLINE_PACKAGER_ALLOW_FILE_URLS, allowedHosts: e.JOBLINE_PACKAGER_GIT_HOSTS, timeoutMs: e.JOBLINE_PACKAGER_GIT_TIMEOUT_MS },
      data: {
        allowedHosts: e.JOBLINE_PACKAGER_DATA_HOSTS,
        allowPrivateAddresses: e.JOBLINE_PACKAGER_ALLOW_PRIVATE_ADDRESSES,
        maxBytes: e.JOBLINE_PACKAGER_MAX_DATA_BYTES,
        connectTimeoutMs: e.JOBLINE_PACKAGER_CONNECT_TIMEOUT_MS,
        totalTimeoutMs: e.JOBLINE_PACKAGER_TOTAL_TIMEOUT_MS,
      },
      baseImage: e.JOBLINE_PACKAGER_BASE_IMAGE,
      concurrency: e.JOBLINE_PACKAGER_CONCURRENCY,
      workDir: e.JOBLINE_PACKAGER_WORK_DIR,
    },
  };
}
