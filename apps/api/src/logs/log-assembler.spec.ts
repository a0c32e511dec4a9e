import { LogAssembler, type LogPiece } from './log-assembler';

const enc = new TextEncoder();
const dec = new TextDecoder();
const chunk = (offset: number, text: string, stream: 'stdout' | 'stderr' = 'stdout') => ({ offset, stream, data: enc.encode(text) });
const text = (pieces: LogPiece[]) => pieces.map((p) => dec.decode(p.data)).join('');

describe('LogAssembler', () => {
  it('passes chunks in offset order straight through, both streams sharing the offsets', () => {
    const a = new LogAssembler();
    const pieces = [...a.push(chunk(0, 'hello ')), ...a.push(chunk(6, 'oops ', 'stderr')), ...a.push(chunk(11, 'world'))];
    expect(text(pieces)).toBe('hello oops world');
    expect(pieces.map((p) => p.stream)).toEqual(['stdout', 'stderr', 'stdout']);
    expect(a.position).toBe(16);
    expect(a.flush()).toEqual([]);
  });

  it('holds a chunk that arrives early until the gap before it is filled', () => {
    const a = new LogAssembler();
    expect(a.push(chunk(0, 'ab'))).toHaveLength(1);
    expect(a.push(chunk(4, 'ef'))).toEqual([]);
    expect(a.push(chunk(6, 'gh'))).toEqual([]);
    expect(text(a.push(chunk(2, 'cd')))).toBe('cdefgh');
    expect(a.position).toBe(8);
  });

  it('drops duplicates and cuts a chunk that straddles the start offset', () => {
    const a = new LogAssembler(3);
    expect(a.push(chunk(0, 'ab'))).toEqual([]);
    expect(text(a.push(chunk(2, 'cdef')))).toBe('def');
    expect(a.push(chunk(2, 'cdef'))).toEqual([]);
    expect(text(a.push(chunk(6, 'g')))).toBe('g');
  });

  it('skips a gap that stays open too long, and flushes what is held at the end in order', () => {
    const a = new LogAssembler(0, 2);
    expect(a.push(chunk(10, 'k'))).toEqual([]);
    expect(a.push(chunk(11, 'l'))).toEqual([]);
    // A third held chunk: the bytes before offset 10 are not coming.
    expect(text(a.push(chunk(13, 'n')))).toBe('kl');
    expect(text(a.flush())).toBe('n');
    expect(a.position).toBe(14);
  });
});
