import { JobIdSchema, newTimeOrderedId } from './ids';

describe('newTimeOrderedId (UUIDv7)', () => {
  it('is a lowercase UUID of version 7 and the RFC variant, carrying its millisecond', () => {
    const at = Date.UTC(2026, 11, 8, 1, 2, 3, 456);
    const id = newTimeOrderedId(at);
    expect(JobIdSchema.safeParse(id).success).toBe(true);
    expect(id[14]).toBe('7');
    expect('89ab').toContain(id[19]);
    expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(at);
  });

  it('sorts by time: an id of a later millisecond is greater, as text', () => {
    const ids = [0, 1, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Date.now(), 2 ** 48 - 1].map((ms) => newTimeOrderedId(ms));
    expect([...ids].sort()).toEqual(ids);
  });

  it('differs within one millisecond (74 random bits)', () => {
    const at = Date.now();
    const ids = new Set(Array.from({ length: 1000 }, () => newTimeOrderedId(at)));
    expect(ids.size).toBe(1000);
  });

  it('refuses a time it cannot hold', () => {
    for (const bad of [-1, 2 ** 48, 1.5, Number.NaN]) expect(() => newTimeOrderedId(bad)).toThrow(RangeError);
  });
});
