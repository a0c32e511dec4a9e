import { outputGlobProblem } from './artifacts';

describe('outputs globs: what is refused', () => {
  it.each(['', '/etc/passwd', '../x', 'out/../../x', 'a\\b', 'a\0b', '{..,x}/secret', 'out/{a,..}/x', '!out/tmp/**'])('refuses %j', (glob) => {
    expect(outputGlobProblem(glob)).toEqual(expect.any(String));
  });

  it('accepts relative globs, names with dots in them, braces and classes', () => {
    for (const glob of ['out/**/*.txt', '..a/b..', 'out/{a,b}.txt', 'x/[a-z]*.log', 'a!b', '.hidden/*']) expect(outputGlobProblem(glob)).toBeNull();
  });
});
