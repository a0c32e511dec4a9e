import { parsePastInstant, parseRfc3339 } from './instant';

describe('RFC 3339 instants', () => {
  it('reads every zone form to the millisecond, the same instant whatever the offset', () => {
    const utc = Date.UTC(2025, 0, 31, 12, 0, 0);
    for (const text of ['2025-01-31T12:00:00Z', '2025-01-31t12:00:00z', '2025-01-31T14:00:00+02:00', '2025-01-31T06:30:00-05:30', '2025-01-31T12:00:00.000Z', '2025-01-31T12:00:00+00:00']) {
      expect(parseRfc3339(text)).toEqual({ ok: true, ms: utc });
    }
    expect(parseRfc3339('2025-01-31T12:00:00.25Z')).toEqual({ ok: true, ms: utc + 250 });
    // Below the millisecond is dropped, never rounded up into the next one.
    expect(parseRfc3339('2025-01-31T12:00:00.123999999Z')).toEqual({ ok: true, ms: utc + 123 });
    expect(parseRfc3339('2024-02-29T00:00:00Z')).toEqual({ ok: true, ms: Date.UTC(2024, 1, 29) });
    // Years below 100 are those years, not 19xx (Date.UTC's trap).
    expect(parseRfc3339('0050-06-01T00:00:00Z')).toEqual({ ok: true, ms: new Date('0050-06-01T00:00:00Z').getTime() });
    expect(new Date(0).setUTCFullYear(50, 5, 1)).toBeLessThan(Date.UTC(1900, 0, 1));
  });

  it.each([
    ['yesterday', /must be an RFC 3339 date-time/],
    ['2025-01-31', /must be an RFC 3339/],
    ['2025-01-31T12:00Z', /must be an RFC 3339/],
    ['2025-01-31T12:00:00', /must be an RFC 3339/],
    ['2025-01-31 12:00:00Z', /must be an RFC 3339/],
    ['2025-01-31T12:00:00+0200', /must be an RFC 3339/],
    ['2025-01-31T12:00:00.Z', /must be an RFC 3339/],
    ['+002025-01-31T12:00:00Z', /must be an RFC 3339/],
    ['1738324800000', /must be an RFC 3339/],
    ['2025-13-01T00:00:00Z', /month 13 does not exist/],
    ['2025-02-29T00:00:00Z', /2025-02 has no day 29/],
    ['2025-02-30T00:00:00Z', /has no day 30/],
    ['2025-04-31T00:00:00Z', /has no day 31/],
    ['2025-01-00T00:00:00Z', /has no day 00/],
    ['2025-01-01T24:00:00Z', /24:00 is not a time of day/],
    ['2025-01-01T23:60:00Z', /is not a time of day/],
    ['2025-06-30T23:59:60Z', /leap second/],
    ['2025-01-01T00:00:00+24:00', /is not a zone offset/],
    ['2025-01-01T00:00:00-01:60', /is not a zone offset/],
  ])('refuses %s, saying why', (text, why) => {
    const r = parseRfc3339(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(why);
  });

  it('a past instant is between the epoch and now', () => {
    const now = Date.UTC(2026, 0, 1);
    expect(parsePastInstant('1970-01-01T00:00:00Z', now)).toEqual({ ok: true, ms: 0 });
    expect(parsePastInstant('2026-01-01T00:00:00Z', now)).toEqual({ ok: true, ms: now });
    expect(parsePastInstant('2026-01-01T01:00:00+01:00', now)).toEqual({ ok: true, ms: now });
    expect(parsePastInstant('1969-12-31T23:59:59.999Z', now)).toMatchObject({ ok: false, message: expect.stringMatching(/before the Unix epoch/) });
    expect(parsePastInstant('1970-01-01T00:30:00+01:00', now)).toMatchObject({ ok: false, message: expect.stringMatching(/before the Unix epoch/) });
    expect(parsePastInstant('2026-01-01T00:00:00.001Z', now)).toMatchObject({ ok: false, message: expect.stringMatching(/in the future \(the server's time is 2026-01-01T00:00:00.000Z\)/) });
    expect(parsePastInstant('2025-02-30T00:00:00Z', now)).toMatchObject({ ok: false, message: expect.stringMatching(/no day 30/) });
  });
});
