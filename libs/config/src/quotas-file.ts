import { z } from 'zod';
import { parseConfigJson } from './config-json';

/**
 * The per-owner quotas and fair-share weights (JOBLINE_QUOTAS_FILE), validated here like every
 * variable: the caller reads the file (this module stays runtime-neutral) and passes its text.
 *
 * ```json
 * {"default": {"maxRunning": 4, "maxQueued": 100, "weight": 1},
 *  "owners": {"ci": {"maxRunning": 8, "weight": 2}, "batch": {"maxQueued": 10000, "weight": 0.5}},
 *  "retryAfterSeconds": 10}
 * ```
 * An owner's entry overrides the default field by field; a field given nowhere is unlimited
 * (weight: 1). `retryAfterSeconds` is the hint a submit refused over `maxQueued` carries
 * (REST Retry-After; default 10).
 */
const OwnerKey = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an owner is 1-64 of [A-Za-z0-9_-]');

const Limits = z.strictObject({
  maxRunning: z.number().int('must be an integer').min(1, 'must be at least 1 (leave it out for no limit)').max(1_000_000).optional(),
  maxQueued: z.number().int('must be an integer').min(0, 'must be at least 0 (0 refuses every submit)').max(100_000_000).optional(),
  weight: z.number().min(0.01, 'must be at least 0.01').max(10_000, 'must be at most 10000').optional(),
});

export const QuotasFileSchema = z.strictObject({
  default: Limits.optional(),
  owners: z.record(OwnerKey, Limits).optional(),
  retryAfterSeconds: z.number().int('must be an integer').min(1).max(86_400).optional(),
});

export type QuotasFile = z.infer<typeof QuotasFileSchema>;

/** Parses the file's text; throws a ConfigError naming JOBLINE_QUOTAS_FILE, each problem with its path. */
export function parseQuotasFile(text: string, path: string): QuotasFile {
  return parseConfigJson(QuotasFileSchema, text, path, 'JOBLINE_QUOTAS_FILE');
}
