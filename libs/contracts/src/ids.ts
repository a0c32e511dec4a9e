import { z } from 'zod';

/** Owners are NATS subject tokens: letters, digits, '_' and '-'. */
export const OwnerSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'owner must be 1-64 of [A-Za-z0-9_-]');
/** Job ids are UUIDs (lowercase, with dashes): safe in subjects, stream names and paths. */
export const JobIdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'jobId must be a lowercase UUID');
/** Executor ids are subject tokens too. */
export const ExecutorIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'executorId must be 1-64 of [A-Za-z0-9_-]');

/**
 * A request id (REST X-Request-Id, gRPC x-request-id, the Jobline-Request-Id header of a
 * command): 1-128 of [A-Za-z0-9._:-], so it is printable and safe in logs and headers.
 */
export const RequestIdSchema = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'request id must be 1-128 of [A-Za-z0-9._:-]');

export const isJobId = (s: unknown): s is string => JobIdSchema.safeParse(s).success;
export const isOwner = (s: unknown): s is string => OwnerSchema.safeParse(s).success;

/**
 * A new UUIDv7 (RFC 9562 §5.7): 48 bits of Unix time in ms, the version, 74 random bits. Ids made
 * later sort later, so the ones a busy store inserts land at the end of its unique indexes (a
 * random UUIDv4 lands on a random index page: with a million stored events, one page read and
 * written per event that no cache holds). Used for the event ids the orchestrator records and
 * the job ids the api makes up; an id a client chose is kept as it is. Web Crypto only, so the
 * executor's core (Deno) may use it too; no monotonic counter: two ids of one millisecond are
 * ordered by their random bits, which is all the index needs.
 */
export function newTimeOrderedId(now: number = Date.now()): string {
  if (!Number.isInteger(now) || now < 0 || now >= 2 ** 48) throw new RangeError(`a UUIDv7 holds 0 to 2^48-1 ms, not ${now}`);
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  // 48-bit big-endian milliseconds (exact in a double up to year 10889).
  const high = Math.floor(now / 2 ** 16);
  b[0] = (high >>> 24) & 0xff;
  b[1] = (high >>> 16) & 0xff;
  b[2] = (high >>> 8) & 0xff;
  b[3] = high & 0xff;
  b[4] = (now >>> 8) & 0xff;
  b[5] = now & 0xff;
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  let hex = '';
  for (const byte of b) hex += HEX[byte];
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export const jobStreamName = (jobId: string) => `job-${jobId}`;
export const JOB_STREAM_PREFIX = 'job-';
