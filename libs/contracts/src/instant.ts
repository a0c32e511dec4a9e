/**
 * RFC 3339 instants (`2025-01-31T12:00:00Z`, `2025-01-31T14:00:00.250+02:00`) read exactly:
 * every field is range-checked (no 2025-02-30 rolled over into March, no hour 24), seconds and
 * a zone are required, and nothing is guessed. Runtime-neutral: the api and the CLI share it.
 */

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

export type InstantParse = { ok: true; ms: number } | { ok: false; message: string };

const isLeap = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysIn = (year: number, month: number) => [31, isLeap(year) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];

/**
 * Epoch milliseconds of an RFC 3339 date-time, or why it is not one. Digits below the
 * millisecond are dropped (stored times have millisecond precision, so an instant compares
 * with them exactly as its millisecond does); a leap second (:60) is refused, as JavaScript
 * time has none.
 */
export function parseRfc3339(text: string): InstantParse {
  const m = RFC3339.exec(text);
  const example = 'an RFC 3339 date-time with seconds and a zone, e.g. 2025-01-31T12:00:00Z or 2025-01-31T14:00:00.250+02:00';
  if (!m) return { ok: false, message: `must be ${example}` };
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const fraction = m[7] ?? '';
  if (month < 1 || month > 12) return { ok: false, message: `month ${m[2]} does not exist` };
  if (day < 1 || day > daysIn(year, month)) return { ok: false, message: `${m[1]}-${m[2]} has no day ${m[3]}` };
  if (hour > 23 || minute > 59) return { ok: false, message: `${m[4]}:${m[5]} is not a time of day` };
  if (second > 59) return { ok: false, message: second === 60 ? 'a leap second (:60) cannot be placed: use :59.999' : `second ${m[6]} does not exist` };
  let offsetMinutes = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return { ok: false, message: `${m[9]}${m[10]}:${m[11]} is not a zone offset` };
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number(fraction.slice(0, 3).padEnd(3, '0')));
  return { ok: true, ms: date.getTime() - offsetMinutes * 60_000 };
}

/**
 * An instant in the past the store can answer for: RFC 3339, not before the Unix epoch,
 * not after `now` (nothing is known of the future).
 */
export function parsePastInstant(text: string, now: number = Date.now()): InstantParse {
  const parsed = parseRfc3339(text);
  if (!parsed.ok) return parsed;
  if (parsed.ms < 0) return { ok: false, message: 'is before the Unix epoch (1970-01-01T00:00:00Z)' };
  if (parsed.ms > now) return { ok: false, message: `is in the future (the server's time is ${new Date(now).toISOString()}): the history ends now` };
  return parsed;
}
