import { LogAssembler, type LogPiece } from './log-assembler';

const enc = new TextEncoder();
const dec = new TextDecoder();
const chunk = (offset: number, text: string, stream: 'stdout' | 'stderr' = 'stdout') => ({ offset, stream, data: enc.encode(text) });
const text = (pieces: LogPiece[]) => pieces.map((p) => dec.decode(p.data)).join('');

describe('LogAssembler', () => {
  it('passes chunks in offset order straight through (the same objects), both streams sharing the offsets', () => {
    const a = new LogAssembler();
    const first = chunk(0, 'hello ');
    const pieces = [...a.push(first), ...a.push(chunk(6, 'oops ', 'stderr')), ...a.push(chunk(11, 'world'))];
    expect(pieces[0]).toBe(first);
    expect(text(pieces)).toBe('hello oops world');
    expect(pieces.map((p) => p.stream)).toEqual(['stdout', 'stderr', 'stdout']);
    expect(a.position).toBe(16);
    expect(a.heldBytes).toBe(0);
  });

  it('holds a chunk that arrives early until the gap before it is filled', () => {
    const a = new LogAssembler();
    expect(a.push(chunk(0, 'ab'))).toHaveLength(1);
    expect(a.push(chunk(4, 'ef'))).toEqual([]);
    expect(a.push(chunk(6, 'gh'))).toEqual([]);
    expect(a.heldBytes).toBe(4);
    expect(a.firstHeldOffset).toBe(4);
    expect(text(a.push(chunk(2, 'cd')))).toBe('cdefgh');
    expect(a.position).toBe(8);
    expect(a.heldBytes).toBe(0);
    expect(a.firstHeldOffset).toBeNull();
  });

  it('drops duplicates and cuts a chunk that straddles the start offset', () => {
    const a = new LogAssembler(3);
    expect(a.push(chunk(0, 'ab'))).toEqual([]);
    const cut = a.push(chunk(2, 'cdef'));
    expect(text(cut)).toBe('def');
    expect(cut[0].offset).toBe(3);
    expect(a.push(chunk(2, 'cdef'))).toEqual([]);
    expect(text(a.push(chunk(6, 'g')))).toBe('g');
  });

  it('never skips a gap: what follows it stays held, however much arrives', () => {
    const a = new LogAssembler();
    for (let i = 1; i <= 100; i++) expect(a.push(chunk(i * 10, 'x'.repeat(10)))).toEqual([]);
    expect(a.position).toBe(0);
    expect(a.heldBytes).toBe(1000);
    expect(text(a.push(chunk(0, '0123456789'))).length).toBe(1010);
  });

  it('releases a held chunk that overlaps what a late chunk delivered', () => {
    const a = new LogAssembler();
    expect(a.push(chunk(3, 'defg'))).toEqual([]);
    expect(text(a.push(chunk(0, 'abcde')))).toBe('abcdefg');
    expect(a.position).toBe(7);
  });
});
