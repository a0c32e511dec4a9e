import { globToRegExp, outputGlobProblem, outputsMatcher } from './artifacts';

describe('outputs globs', () => {
  it.each([
    ['out/*.txt', 'out/a.txt', true],
    ['out/*.txt', 'out/deep/a.txt', false],
    ['out/*.txt', 'out/a.txt.bak', false],
    ['out/*.txt', 'outx/a.txt', false],
    ['out/?.txt', 'out/a.txt', true],
    ['out/?.txt', 'out/ab.txt', false],
    ['out/**', 'out/a/b/c', true],
    ['out/**', 'other/a', false],
    ['**/*.log', 'a.log', true],
    ['**/*.log', 'x/y/a.log', true],
    ['out/**/r.json', 'out/r.json', true],
    ['out/**/r.json', 'out/a/b/r.json', true],
    ['./report.(1).txt', 'report.(1).txt', true],
    ['report.txt', 'reportxtxt', false],
    ['*', '.hidden', true],
    ['a+b[1]', 'a+b[1]', true],
  ])('%s against %s → %s', (glob, path, expected) => {
    expect(globToRegExp(glob).test(path)).toBe(expected);
  });

  it('a matcher is true when any of its globs matches', () => {
    const m = outputsMatcher(['*.csv', 'out/*']);
    expect(m('a.csv')).toBe(true);
    expect(m('out/x')).toBe(true);
    expect(m('in/x')).toBe(false);
  });

  it.each(['', '/etc/passwd', '../x', 'out/../../x', 'a\\b', 'a\0b'])('refuses %j', (glob) => {
    expect(outputGlobProblem(glob)).toEqual(expect.any(String));
    expect(() => globToRegExp(glob)).toThrow();
  });

  it('accepts relative globs', () => {
    expect(outputGlobProblem('out/**/*.txt')).toBeNull();
    expect(outputGlobProblem('..a/b..')).toBeNull();
  });
});
