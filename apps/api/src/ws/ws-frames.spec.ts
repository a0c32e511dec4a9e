import { DataLossError, ERROR_CODES, ERROR_TABLE, JoblineError } from '../../../../libs/contracts/src';
import { JobSpecSchema } from '../../../../libs/contracts/src';
import { evolveJobView } from '../../../../libs/domain/src';
import { encodeLogFrame, errorFrame, jsonStringBytesLength, logFrame, statusFrame, writeJsonStringBytes } from './ws-frames';

const JOB = '0b5cf6c2-8a38-4a6e-9a55-1f5b4f5e2a10';

describe('WebSocket server frames', () => {
  it('a staged job’s status frames carry its steps; a command job’s carry none', () => {
    const T = '2026-01-01T00:00:00.000Z';
    const submitted = (spec: unknown) => evolveJobView(null, { type: 'JobSubmitted', data: { jobId: JOB, owner: 'alice', spec: JobSpecSchema.parse(spec), priority: 'normal', submittedAt: T } })!;
    const change = { type: 'JobSubmitted', position: 3, occurredAt: T };
    expect(statusFrame(submitted({ steps: [{ name: 'a', run: 'true' }] }), change).steps).toEqual([expect.objectContaining({ step: 1, name: 'a', status: 'pending' })]);
    expect(statusFrame(submitted({ command: 'true' }), change)).not.toHaveProperty('steps');
  });

  it.each([
    ['text', Buffer.from('hello "quoted" \\ back\nslash \u2028 ünïcode \u0000 nul')],
    ['binary', Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41])],
    ['empty-looking text', Buffer.from(' ')],
  ])('encodeLogFrame writes exactly the JSON of logFrame (%s)', (_what, data) => {
    const piece = { attempt: 2, stream: 'stderr' as const, offset: 123_456_789, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    expect(JSON.parse(encodeLogFrame(JOB, piece).toString('utf8'))).toEqual(logFrame(JOB, piece));
    const back = logFrame(JOB, piece);
    expect(Buffer.from(back.data, back.encoding === 'base64' ? 'base64' : 'utf8').equals(data)).toBe(true);
  });

  it('escapes UTF-8 bytes exactly as JSON.stringify escapes their text, byte for byte', () => {
    const every = Buffer.from(Array.from({ length: 128 }, (_, b) => String.fromCharCode(b)).join('') + 'é€😀\u2028\u2029');
    for (const text of [every.toString('utf8'), '', 'plain', '\n', 'a\nb\n', '"\\"', '\u0000\u001f\u007f', 'x'.repeat(1023) + '\n']) {
      const src = Buffer.from(text, 'utf8');
      const out = Buffer.alloc(jsonStringBytesLength(src));
      expect(writeJsonStringBytes(src, out, 0)).toBe(out.length);
      expect(`"${out.toString('utf8')}"`).toBe(JSON.stringify(text));
    }
  });

  it('finds every byte to escape wherever it sits (any alignment, word edges, runs of them)', () => {
    const alphabet = ['a', '\n', '"', '\\', '\u0001', '\u001f', ' ', '~', '\u007f', 'é', '€', '😀', '\t', '\r'];
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    for (let round = 0; round < 300; round++) {
      const text = Array.from({ length: rnd(40) }, () => alphabet[rnd(alphabet.length)]).join('');
      const bytes = Buffer.from(text, 'utf8');
      // At every offset of a larger buffer, so the scan starts off a 4-byte boundary too.
      const lead = rnd(4);
      const backing = Buffer.alloc(bytes.length + lead + 3, 0x22);
      bytes.copy(backing, lead);
      const src = backing.subarray(lead, lead + bytes.length);
      const out = Buffer.alloc(jsonStringBytesLength(src) + 1, 0);
      expect(writeJsonStringBytes(src, out, 1)).toBe(out.length);
      expect(`"${out.subarray(1).toString('utf8')}"`).toBe(JSON.stringify(text));
    }
  });

  it('writes a frame of exactly the JSON of logFrame, byte for byte', () => {
    const data = Buffer.from('line "one"\n\tline two \u0001 ünïcode\n');
    const piece = { attempt: 3, stream: 'stdout' as const, offset: 42, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    expect(encodeLogFrame(JOB, piece).toString('utf8')).toBe(JSON.stringify(logFrame(JOB, piece)));
  });

  it('encodes a piece once, whoever sends it, without changing what the piece shows', () => {
    const piece = { attempt: 1, stream: 'stdout' as const, offset: 0, data: new TextEncoder().encode('same bytes') };
    expect(encodeLogFrame(JOB, piece)).toBe(encodeLogFrame(JOB, piece));
    expect(Object.keys(piece)).toEqual(['attempt', 'stream', 'offset', 'data']);
  });

  it('every error code has its WebSocket code; unexpected errors say nothing more than internal error', () => {
    for (const code of ERROR_CODES) expect(errorFrame(new JoblineError(code, 'why')).code).toBe(ERROR_TABLE[code].ws);
    expect(errorFrame(new DataLossError('gone'), JOB)).toEqual({ type: 'error', code: 'DATA_LOSS', message: 'gone', jobId: JOB });
    expect(errorFrame(new Error('secret detail'))).toEqual({ type: 'error', code: 'INTERNAL', message: 'internal error' });
    expect(errorFrame(new JoblineError('unauthenticated', 'x')).code).toBe('UNAUTHENTICATED');
  });
});
