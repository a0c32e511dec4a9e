import { TokenRegistry, hashToken } from './api-tokens';

describe('TokenRegistry', () => {
  const registry = new TokenRegistry([
    { sha256: hashToken('alice-secret'), owner: 'alice' },
    { sha256: hashToken('root-secret').toUpperCase(), owner: 'ops', admin: true },
  ]);

  it('finds the caller of a known token, by its SHA-256', () => {
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(registry.authenticate('alice-secret')).toEqual({ owner: 'alice', admin: false });
    expect(registry.authenticate('root-secret')).toEqual({ owner: 'ops', admin: true });
  });

  it('knows no other token', () => {
    for (const t of ['', 'alice-secret ', 'Alice-secret', hashToken('alice-secret')]) expect(registry.authenticate(t)).toBeNull();
  });

  it('refuses a bad configuration with every problem named', () => {
    expect(() => new TokenRegistry([{ sha256: 'abc', owner: 'alice' }])).toThrow(/sha256: must be the 64 hex digits/);
    expect(() => new TokenRegistry([{ sha256: hashToken('x'), owner: 'a.b' }])).toThrow(/owner/);
    expect(() => new TokenRegistry([{ sha256: hashToken('x'), owner: 'a' }, { sha256: hashToken('x').toUpperCase(), owner: 'b' }])).toThrow(/listed twice/);
  });
});
