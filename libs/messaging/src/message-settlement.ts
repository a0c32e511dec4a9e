import { ERROR_CODES, ERROR_TABLE } from '../../contracts/src';

/**
 * Error codes that no redelivery can fix (`nats: 'term'` in ERROR_TABLE): the message is
 * terminated at once. Anything else (an unknown error, `unavailable`, a lost connection to
 * the store...) is retried.
 */
export const PERMANENT_ERROR_CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES.filter((c) => ERROR_TABLE[c].nats === 'term'));

export interface SettlementPolicy {
  /** Deliveries before a failing message is given up (terminated and logged as an error). */
  maxDeliver: number;
  /** First redelivery delay; doubles with each delivery (default 100 ms). */
  backoffBaseMs?: number;
  /** Ceiling of the redelivery delay (default 5 s). */
  backoffMaxMs?: number;
}

export type HandlerOutcome = { ok: true } | { ok: false; error: unknown };

export type Settlement =
  | { action: 'ack' }
  | { action: 'nak'; delayMs: number; reason: string }
  | { action: 'term'; reason: string; level: 'warn' | 'error' };

/**
 * The one place where a handler's outcome becomes ack, nak (retry later) or term (never
 * again). deliveryCount is 1 on the first delivery.
 */
export function settlementFor(outcome: HandlerOutcome, deliveryCount: number, policy: SettlementPolicy): Settlement {
  if (outcome.ok) return { action: 'ack' };
  const reason = describeError(outcome.error);
  const code = errorCode(outcome.error);
  if (code !== undefined && PERMANENT_ERROR_CODES.has(code)) return { action: 'term', reason: `${code}: ${reason}`, level: 'warn' };
  if (deliveryCount >= policy.maxDeliver) {
    return { action: 'term', reason: `gave up after ${deliveryCount} deliveries: ${reason}`, level: 'error' };
  }
  return { action: 'nak', delayMs: backoffDelay(deliveryCount, policy), reason };
}

/** 100 ms · 2^(n-1), capped: fast for a blip, gentle on a dependency that is down. */
export function backoffDelay(deliveryCount: number, policy: Pick<SettlementPolicy, 'backoffBaseMs' | 'backoffMaxMs'> = {}): number {
  const base = policy.backoffBaseMs ?? 100;
  const max = policy.backoffMaxMs ?? 5000;
  const n = Math.max(1, Math.floor(deliveryCount));
  return Math.min(max, base * 2 ** Math.min(n - 1, 30));
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
}
