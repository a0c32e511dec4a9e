import { outputsMatcher } from './artifact-files';

describe('outputs globs (picomatch)', () => {
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
    ['out//a.txt', 'out/a.txt', true],
    ['report.txt', 'reportxtxt', false],
    // braces and classes (the hand-written matcher took them literally)
    ['out/{a,b}.txt', 'out/a.txt', true],
    ['out/{a,b}.txt', 'out/b.txt', true],
    ['out/{a,b}.txt', 'out/c.txt', false],
    ['out/*.{csv,json}', 'out/r.json', true],
    ['log[0-9].txt', 'log7.txt', true],
    ['log[0-9].txt', 'logx.txt', false],
    ['log[^0-9].txt', 'logx.txt', true],
    ['log[^0-9].txt', 'log1.txt', false],
    ['[[:digit:]]*.dat', '1a.dat', true],
    ['@(a|b).txt', 'b.txt', true],
    // dotfiles and dot-folders are matched like any other name (documented)
    ['*', '.hidden', true],
    ['**', '.cache/x', true],
    ['out/*', 'out/.env', true],
    // an unclosed bracket is literal, not an error
    ['a[b', 'a[b', true],
  ])('%s against %s → %s', (glob, path, expected) => {
    expect(outputsMatcher([glob])(path)).toBe(expected);
  });

  it('is true when any of its globs matches', () => {
    const m = outputsMatcher(['*.csv', 'out/*']);
    expect(m('a.csv')).toBe(true);
    expect(m('out/x')).toBe(true);
    expect(m('in/x')).toBe(false);
  });

  it.each(['', '/etc/passwd', '../x', '{..,x}/y', '!out/**', './'])('refuses %j', (glob) => {
    expect(() => outputsMatcher([glob])).toThrow();
  });
});
