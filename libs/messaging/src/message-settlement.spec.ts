import { ConflictError, JoblineError, StaleAttemptError, UnavailableError, ValidationError } from '../../contracts/src';
import { backoffDelay, settlementFor } from './message-settlement';

const policy = { maxDeliver: 5 };

describe('settlementFor', () => {
  it('acks a handler that succeeded', () => {
    expect(settlementFor({ ok: true }, 1, policy)).toEqual({ action: 'ack' });
  });

  it.each([
    new ValidationError('bad spec'),
    new StaleAttemptError('attempt 1 is not current'),
    new ConflictError('already finished'),
    new JoblineError('not_found', 'no such job'),
    new JoblineError('failed_precondition', 'finished'),
    new JoblineError('already_exists', 'dup'),
    new JoblineError('permission_denied', 'not yours'),
  ].map((e) => [e.code, e] as const))('terminates a permanent error at once: %s', (_code, error) => {
    const s = settlementFor({ ok: false, error }, 1, policy);
    expect(s).toMatchObject({ action: 'term', level: 'warn' });
    expect(s.action === 'term' && s.reason).toContain(error.code);
  });

  it('treats an unknown error, unavailable or a numeric code as transient', () => {
    for (const error of [new Error('boom'), new UnavailableError('store down'), Object.assign(new Error('api'), { code: 10071 }), 'a string']) {
      expect(settlementFor({ ok: false, error }, 1, policy)).toMatchObject({ action: 'nak', delayMs: 100 });
    }
  });

  it('backs off exponentially, capped', () => {
    const delays = [1, 2, 3, 4].map((n) => settlementFor({ ok: false, error: new Error('x') }, n, { maxDeliver: 20 }));
    expect(delays.map((s) => (s.action === 'nak' ? s.delayMs : -1))).toEqual([100, 200, 400, 800]);
    expect(backoffDelay(10)).toBe(5000);
    expect(backoffDelay(1000)).toBe(5000);
    expect(backoffDelay(3, { backoffBaseMs: 10, backoffMaxMs: 25 })).toBe(25);
  });

  it('gives up with an error once maxDeliver deliveries failed', () => {
    expect(settlementFor({ ok: false, error: new Error('still broken') }, 4, policy).action).toBe('nak');
    const last = settlementFor({ ok: false, error: new Error('still broken') }, 5, policy);
    expect(last).toMatchObject({ action: 'term', level: 'error' });
    expect(last.action === 'term' && last.reason).toMatch(/5 deliveries: still broken/);
  });
});
