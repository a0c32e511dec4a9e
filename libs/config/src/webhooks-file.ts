import { z } from 'zod';
import { parseConfigJson } from './config-json';

/**
 * The per-owner webhook file (JOBLINE_WEBHOOKS_FILE), validated here like every variable:
 * the caller reads the file (this module stays runtime-neutral) and passes its text.
 *
 * ```json
 * {"owners": {"acme": {"secret": "<32 to 512 characters>", "urls": ["https://hooks.acme.example/jobline"]}}}
 * ```
 * `secret` signs every delivery of the owner's jobs (the job's own `notify` URLs and `urls`);
 * `urls` (optional, at most 5) are told about every job of the owner.
 */
const OwnerKey = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'an owner is 1-64 of [A-Za-z0-9_-]');

const Url = z
  .string()
  .max(2048)
  .refine((u) => {
    try {
      const p = new URL(u);
      return (p.protocol === 'https:' || p.protocol === 'http:') && !p.username && !p.password && !p.hash && p.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL without credentials or #fragment');

export const WebhooksFileSchema = z.strictObject({
  owners: z.record(
    OwnerKey,
    z.strictObject({
      secret: z.string().min(32, 'must be at least 32 characters (e.g. openssl rand -hex 32)').max(512),
      urls: z
        .array(Url)
        .max(5)
        .refine((us) => new Set(us).size === us.length, 'the same URL is listed twice')
        .optional(),
    }),
  ),
});

export type WebhooksFile = z.infer<typeof WebhooksFileSchema>;

/** Parses the file's text; throws a ConfigError naming JOBLINE_WEBHOOKS_FILE, each problem with its path (never the secret). */
export function parseWebhooksFile(text: string, path: string): WebhooksFile {
  return parseConfigJson(WebhooksFileSchema, text, path, 'JOBLINE_WEBHOOKS_FILE');
}
