import { createHash } from 'node:crypto';
import { ValidationError } from '../../../libs/contracts/src';

/** Namespace of the job ids derived from idempotency keys (a fixed, random UUID; never change it). */
export const IDEMPOTENCY_NAMESPACE = '5b0c5f3e-8f7a-4c1d-9a52-2f6e1d0b7c44';

/** 1-200 printable ASCII characters. */
const KEY = /^[\x20-\x7E]{1,200}$/;

/** The Idempotency-Key header, validated; undefined when absent. */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(', ') : header;
  if (!KEY.test(value)) {
    throw new ValidationError('invalid Idempotency-Key header', [
      { path: 'Idempotency-Key', message: 'must be 1-200 printable ASCII characters' },
    ]);
  }
  return value;
}

/**
 * The job id an owner's idempotency key stands for: a name-based (RFC 9562 version 5,
 * SHA-1) UUID of `owner:key`, lowercase. The same owner and key always give the same
 * job; owners cannot contain ':', so no two (owner, key) pairs share a name.
 */
export function jobIdForKey(owner: string, key: string): string {
  return uuidV5(IDEMPOTENCY_NAMESPACE, `${owner}:${key}`);
}

/** RFC 9562 version 5 UUID of a UTF-8 name in a namespace, lowercase. */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (ns.length !== 16) throw new Error(`not a UUID: ${namespace}`);
  const hash = createHash('sha1').update(ns).update(name, 'utf8').digest();
  const b = hash.subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x50;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
