import { decodeLogChunk, encodeLogChunk } from './log-chunk.codec';
import { LOG_HEADERS } from './subjects';

const JOB = '0b5cf6c2-8a38-4a6e-9a55-1f5b4f5e2a10';

function message(subject: string, h: Record<string, string> | null, data: Uint8Array = new Uint8Array([1, 2])) {
  if (!h) return { subject, data };
  // Like NATS headers: a missing key reads as ''.
  return { subject, data, headers: { get: (k: string) => h[k] ?? '' } };
}

describe('log chunk encoding', () => {
  it('round-trips through subject and headers', () => {
    const chunk = { jobId: JOB, attempt: 2, stream: 'stderr' as const, offset: 1 << 40, data: new Uint8Array([0, 10, 255]) };
    const e = encodeLogChunk(chunk);
    expect(e.subject).toBe(`jobline.logs.${JOB}`);
    expect(e.payload).toBe(chunk.data);
    expect(e.msgId).toBe(`${JOB}.2.${1 << 40}`);
    expect(decodeLogChunk(message(e.subject, e.headers, e.payload))).toEqual(chunk);
  });

  it("decodes the owner's copy (jobline.owner.<owner>.logs.<jobId>, same payload and headers) alike", () => {
    const chunk = { jobId: JOB, attempt: 1, stream: 'stdout' as const, offset: 7, data: new Uint8Array([104, 105]) };
    const e = encodeLogChunk(chunk);
    expect(decodeLogChunk(message(`jobline.owner.acme.logs.${JOB}`, e.headers, e.payload))).toEqual(chunk);
  });

  const good = { [LOG_HEADERS.attempt]: '1', [LOG_HEADERS.stream]: 'stdout', [LOG_HEADERS.offset]: '0' };
  it.each([
    ['no headers', message(`jobline.logs.${JOB}`, null)],
    ['another subject', message(`jobline.evt.${JOB}.JobQueued`, good)],
    ['no job id', message('jobline.logs.', good)],
    ['a nested subject', message(`jobline.logs.${JOB}.x`, good)],
    ["an owner copy without an owner", message(`jobline.owner..logs.${JOB}`, good)],
    ["an owner copy nested deeper", message(`jobline.owner.acme.logs.${JOB}.x`, good)],
    ["an owner's event subject", message(`jobline.owner.acme.evt.${JOB}`, good)],
    ['attempt 0', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.attempt]: '0' })],
    ['a negative attempt', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.attempt]: '-1' })],
    ['a fractional offset', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.offset]: '1.5' })],
    ['a non-numeric offset', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.offset]: '12abc' })],
    ['an unsafe integer offset', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.offset]: '9007199254740993' })],
    ['a missing offset', message(`jobline.logs.${JOB}`, { [LOG_HEADERS.attempt]: '1', [LOG_HEADERS.stream]: 'stdout' })],
    ['an unknown stream', message(`jobline.logs.${JOB}`, { ...good, [LOG_HEADERS.stream]: 'stdin' })],
  ])('rejects %s', (_what, msg) => {
    expect(decodeLogChunk(msg)).toBeNull();
  });
});
