import { EXECUTOR_DEFAULTS, resolveExecutorTimings } from './executor-options';

describe('resolveExecutorTimings', () => {
  it('fills in the documented defaults, also for keys given as undefined', () => {
    expect(resolveExecutorTimings({})).toEqual(EXECUTOR_DEFAULTS);
    // The bug of issue 17: `{heartbeatMs: undefined}` spread over the defaults made heartbeats go out every millisecond.
    expect(resolveExecutorTimings({ heartbeatMs: undefined, graceMs: undefined, capacity: undefined }).heartbeatMs).toBe(1000);
    expect(EXECUTOR_DEFAULTS).toMatchObject({ capacity: 4, heartbeatMs: 1000, leaseMs: 10_000, graceMs: 5000 });
  });

  it('keeps what is given', () => {
    expect(resolveExecutorTimings({ capacity: 2, heartbeatMs: 200, leaseMs: 1500, retryMinMs: 10, retryMaxMs: 10 })).toMatchObject({
      capacity: 2,
      heartbeatMs: 200,
      leaseMs: 1500,
      retryMinMs: 10,
      retryMaxMs: 10,
    });
  });

  it('refuses nonsense, listing every problem at once', () => {
    expect(() => resolveExecutorTimings({ capacity: 0, heartbeatMs: 1, graceMs: -1, requestTimeoutMs: 1.5 })).toThrow(
      /invalid executor options: capacity: .*heartbeatMs: .*graceMs: .*requestTimeoutMs: /,
    );
    expect(() => resolveExecutorTimings({ heartbeatMs: Number.NaN })).toThrow(/heartbeatMs/);
    expect(() => resolveExecutorTimings({ heartbeatMs: 5000, leaseMs: 10_000 })).toThrow(/leaseMs: must be at least 3 heartbeat periods \(15000 ms\)/);
    expect(() => resolveExecutorTimings({ retryMinMs: 500, retryMaxMs: 100 })).toThrow(/retryMaxMs: must not be below retryMinMs/);
  });
});
