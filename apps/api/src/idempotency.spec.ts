import { isJobId, ValidationError } from '../../../libs/contracts/src';
import { jobIdForKey, parseIdempotencyKey, uuidV5 } from './idempotency';

describe('idempotency keys', () => {
  it('derives RFC 9562 version 5 UUIDs (the RFC’s DNS example)', () => {
    expect(uuidV5('6ba7b810-9dad-11d1-80b4-00c04fd430c8', 'www.example.com')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
  });

  it('gives the same owner and key the same job id, and any other pair another one', () => {
    const a = jobIdForKey('alice', 'order-42');
    expect(isJobId(a)).toBe(true);
    expect(jobIdForKey('alice', 'order-42')).toBe(a);
    expect(new Set([a, jobIdForKey('bob', 'order-42'), jobIdForKey('alice', 'order-43'), jobIdForKey('alice', 'order-42 ')]).size).toBe(4);
  });

  it('accepts 1-200 printable ASCII characters and refuses anything else', () => {
    expect(parseIdempotencyKey(undefined)).toBeUndefined();
    expect(parseIdempotencyKey('k')).toBe('k');
    expect(parseIdempotencyKey('x'.repeat(200))).toHaveLength(200);
    for (const bad of ['', 'x'.repeat(201), 'tab\there', 'caf\u00e9', 'nul\u0000']) {
      expect(() => parseIdempotencyKey(bad)).toThrow(ValidationError);
    }
  });
});
