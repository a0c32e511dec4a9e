import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { OwnerSchema, parseWith } from '../../../libs/contracts/src';

/** One API credential: only the SHA-256 of the bearer token is configured, never the token. */
export interface ApiToken {
  /** Hex SHA-256 of the token's UTF-8 bytes (e.g. `printf %s "$TOKEN" | sha256sum`). */
  sha256: string;
  /** The owner the token acts as: its jobs, its NATS subject token. */
  owner: string;
  /** Admins see and control every owner's jobs (default false). */
  admin?: boolean;
}

export const ApiTokenSchema = z.strictObject({
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be the 64 hex digits of a SHA-256')
    .transform((s) => s.toLowerCase()),
  owner: OwnerSchema,
  admin: z.boolean().optional(),
});

export const ApiTokensSchema = z
  .array(ApiTokenSchema)
  .refine((ts) => new Set(ts.map((t) => t.sha256)).size === ts.length, 'the same token hash is listed twice');

/** Who is calling, once the token is known. */
export interface Caller {
  owner: string;
  admin: boolean;
}

/** Hex SHA-256 of a token, the form ApiToken.sha256 takes. */
export const hashToken = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/** Looks tokens up by hash, comparing every configured digest in constant time. */
export class TokenRegistry {
  private readonly entries: { digest: Buffer; caller: Caller }[];

  constructor(tokens: readonly ApiToken[]) {
    const parsed = parseWith(ApiTokensSchema, tokens);
    if (!parsed.ok) throw new Error(`invalid API tokens: ${parsed.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
    this.entries = parsed.value.map((t) => ({ digest: Buffer.from(t.sha256, 'hex'), caller: { owner: t.owner, admin: t.admin ?? false } }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** The caller a token stands for, or null. Every entry is compared, so timing tells nothing about which one matched. */
  authenticate(token: string): Caller | null {
    const digest = createHash('sha256').update(token, 'utf8').digest();
    let found: Caller | null = null;
    for (const e of this.entries) {
      if (timingSafeEqual(e.digest, digest)) found = e.caller;
    }
    return found;
  }
}
