import { shellQuote, stepGateFile, stepsScript } from '../../../../libs/contracts/src/shell-script';
import { buildCommand, DEFAULT_PATH } from './command';

describe('buildCommand', () => {
  it('runs an argv array as is', () => {
    expect(buildCommand({ command: ['echo', 'a b', '$HOME'] }).argv).toEqual(['echo', 'a b', '$HOME']);
  });

  it('runs a string with /bin/sh -c', () => {
    expect(buildCommand({ command: 'echo hi | tr a-z A-Z' }).argv).toEqual(['/bin/sh', '-c', 'echo hi | tr a-z A-Z']);
  });

  it('runs steps as one shell script', () => {
    const argv = buildCommand({ steps: [{ name: 'a', run: 'true' }] }).argv;
    expect(argv.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(argv[2]).toBe(stepsScript([{ name: 'a', run: 'true' }]));
  });

  it('refuses a spec with nothing to run', () => {
    expect(() => buildCommand({})).toThrow(/neither command nor steps/);
    expect(() => buildCommand({ command: [] })).toThrow(/name a program/);
    expect(() => buildCommand({ command: '  ' })).toThrow(/empty/);
  });

  it('gives only a default PATH plus the spec env, the spec winning', () => {
    expect(buildCommand({ command: 'true' }).env).toEqual({ PATH: DEFAULT_PATH });
    expect(buildCommand({ command: 'true', env: { A: '1', PATH: '/opt/bin' } }).env).toEqual({ PATH: '/opt/bin', A: '1' });
  });

  it('does not let the spec empty PATH', () => {
    expect(buildCommand({ command: 'true', env: { PATH: '' } }).env.PATH).toBe(DEFAULT_PATH);
    expect(buildCommand({ command: 'true', env: { PATH: '   ' } }).env.PATH).toBe(DEFAULT_PATH);
  });

  it('passes the workdir through, relative', () => {
    expect(buildCommand({ command: 'true', workdir: 'src/app' }).cwd).toBe('src/app');
    expect(buildCommand({ command: 'true' }).cwd).toBeUndefined();
  });
});

describe('stepsScript', () => {
  it('frames each step with the token, or prints the marker itself without one, and stops at the first failure', () => {
    const script = stepsScript([
      { name: 'build', run: 'make' },
      { name: 'lint', run: 'make lint', continueOnFailure: true },
      { name: 'test', run: 'make test', outputs: ['out/*'] },
    ]);
    const lines = script.split('\n');
    expect(lines[0]).toBe('jl_t=${JOBLINE_STEP_TOKEN-}; jl_g=${JOBLINE_STEP_GATE-}; unset JOBLINE_STEP_TOKEN JOBLINE_STEP_GATE');
    expect(lines[2]).toContain('jl_f="$jl_g/.jobline-step-$jl_t.$1"');
    expect(stepGateFile('ab', 3)).toBe('.jobline-step-ab.3');
    expect(lines.slice(3)).toEqual([
      `[ -n "$jl_t" ] || printf '%s\\n' '==> [1/3] build' >&2`,
      `jl_mark 'S 1'`,
      `/bin/sh -c 'make'; jl_s=$?`,
      `jl_mark "E 1 $jl_s"`,
      `[ "$jl_s" -eq 0 ] || exit "$jl_s"`,
      `[ -n "$jl_t" ] || printf '%s\\n' '==> [2/3] lint' >&2`,
      `jl_mark 'S 2'`,
      `/bin/sh -c 'make lint'; jl_s=$?`,
      `jl_mark "E 2 $jl_s"`,
      `[ -n "$jl_t" ] || printf '%s\\n' '==> [3/3] test' >&2`,
      `jl_mark 'S 3'`,
      `/bin/sh -c 'make test'; jl_s=$?`,
      `jl_mark "E 3 $jl_s"`,
      `jl_wait 3`,
      `[ "$jl_s" -eq 0 ] || exit "$jl_s"`,
      'exit 0',
      '',
    ]);
  });

  it('quotes names and scripts so nothing is interpreted by the wrapper', () => {
    const script = stepsScript([{ name: "it's $(rm -rf /)", run: "echo 'quoted' \"$X\"" }]);
    expect(script).toContain(`'==> [1/1] it'\\''s $(rm -rf /)'`);
    expect(script).toContain(`/bin/sh -c 'echo '\\''quoted'\\'' "$X"'`);
  });
});

describe('shellQuote', () => {
  it('wraps in single quotes and escapes embedded ones', () => {
    expect(shellQuote('plain')).toBe(`'plain'`);
    expect(shellQuote(`a'b`)).toBe(`'a'\\''b'`);
    expect(shellQuote('')).toBe(`''`);
  });
});
