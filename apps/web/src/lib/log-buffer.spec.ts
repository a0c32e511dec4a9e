import { LogBuffer } from './log-buffer';

const frame = (offset: number, data: string, stream: 'stdout' | 'stderr' = 'stdout', attempt = 1) => ({ attempt, stream, offset, data });
const bytes = (s: string) => new TextEncoder().encode(s).length;

describe('LogBuffer', () => {
  it('splits frames into lines per stream, a line spanning frames kept whole', () => {
    const b = new LogBuffer();
    b.push(frame(0, 'hel'));
    b.push(frame(3, 'lo\nwor'));
    b.push(frame(9, 'oops\n', 'stderr'));
    b.push(frame(14, 'ld\n'));
    expect(b.all().map((l) => [l.stream, l.offset, l.text])).toEqual([
      ['stdout', 0, 'hello'],
      ['stdout', 6, 'world'],
      ['stderr', 9, 'oops'],
    ]);
    expect(b.next).toBe(17);
  });

  it('shows an unterminated last line, and ignores frames repeated after a reconnect', () => {
    const b = new LogBuffer();
    expect(b.push(frame(0, 'a\nb'))).toBe(true);
    expect(b.push(frame(0, 'a\nb'))).toBe(false);
    expect(b.all().map((l) => l.text)).toEqual(['a', 'b']);
    expect(b.next).toBe(3);
  });

  it('decodes base64 frames, and a character split between frames', () => {
    const b = new LogBuffer();
    const euro = new TextEncoder().encode('€\n');
    const b64 = (u: Uint8Array) => btoa(String.fromCharCode(...u));
    b.push({ attempt: 1, stream: 'stdout', offset: 0, data: b64(euro.subarray(0, 2)), encoding: 'base64' });
    b.push({ attempt: 1, stream: 'stdout', offset: 2, data: b64(euro.subarray(2)), encoding: 'base64' });
    expect(b.all().map((l) => l.text)).toEqual(['€']);
  });

  it('starts over at a new attempt, keeping the earlier one', () => {
    const b = new LogBuffer();
    b.push(frame(0, 'first'));
    b.push(frame(0, 'second\n', 'stdout', 2));
    expect(b.all().map((l) => [l.attempt, l.text])).toEqual([[1, 'first'], [2, 'second']]);
    expect([b.attempt, b.next]).toEqual([2, bytes('second\n')]);
    expect(b.push(frame(100, 'late', 'stdout', 1))).toBe(false);
  });

  it('searches case-insensitively within the chosen streams', () => {
    const b = new LogBuffer();
    b.push(frame(0, 'Hello\nhelp\n'));
    b.push(frame(11, 'HELL on stderr\n', 'stderr'));
    expect(b.search('hel', new Set(['stdout'])).map((l) => l.text)).toEqual(['Hello', 'help']);
    expect(b.search('hell', new Set(['stdout', 'stderr'])).map((l) => l.text)).toEqual(['Hello', 'HELL on stderr']);
  });

  it('keeps at most maxLines, counting what it dropped', () => {
    const b = new LogBuffer(3);
    b.push(frame(0, '1\n2\n3\n4\n5\n'));
    expect(b.all().map((l) => l.text)).toEqual(['3', '4', '5']);
    expect(b.dropped).toBe(2);
  });
});
