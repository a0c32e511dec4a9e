import { EMPTY_FORM, formFieldOf, specFromForm } from './spec-form';
import { failureRate, commandText, duration } from './format';

describe('submit form → JobSpec', () => {
  it('a shell command with limits, env, git source, data and outputs', () => {
    const r = specFromForm({
      ...EMPTY_FORM,
      command: 'echo hi && sleep 1',
      priority: 'high',
      timeoutSeconds: '60',
      cpu: '0.5',
      memoryMb: '256',
      network: true,
      env: 'A=1\nB=x=y',
      gitUrl: 'https://example.com/r.git',
      gitCommit: 'a'.repeat(40),
      data: `https://example.com/in.csv data/in.csv ${'b'.repeat(64)}`,
      outputs: 'out/*.txt\n',
    });
    expect(r).toEqual({
      ok: true,
      spec: {
        command: 'echo hi && sleep 1',
        priority: 'high',
        timeoutSeconds: 60,
        resources: { cpu: 0.5, memoryMb: 256, network: true },
        env: { A: '1', B: 'x=y' },
        source: { git: { url: 'https://example.com/r.git', commit: 'a'.repeat(40) } },
        data: [{ url: 'https://example.com/in.csv', path: 'data/in.csv', sha256: 'b'.repeat(64) }],
        outputs: ['out/*.txt'],
      },
    });
  });

  it('argv: one argument per line, spaces kept', () => {
    expect(specFromForm({ ...EMPTY_FORM, mode: 'argv', command: 'printf\n%s\\n\na b\n' })).toEqual({ ok: true, spec: { command: ['printf', '%s\\n', 'a b'], priority: 'normal' } });
  });

  it('says what is wrong, field by field, and builds nothing', () => {
    const r = specFromForm({ ...EMPTY_FORM, command: ' ', timeoutSeconds: '1.5', memoryMb: '-1', env: 'NOEQUALS', gitCommit: 'abc' });
    expect(r.ok).toBe(false);
    expect(!r.ok && Object.keys(r.errors).sort()).toEqual(['command', 'env', 'gitCommit', 'gitUrl', 'memoryMb', 'timeoutSeconds']);
  });

  it('maps the api’s field paths to form fields', () => {
    expect(formFieldOf('resources.memoryMb')).toBe('memoryMb');
    expect(formFieldOf('command.0')).toBe('command');
    expect(formFieldOf('source.git.commit')).toBe('gitUrl');
    expect(formFieldOf('(root)')).toBeNull();
  });
});

describe('format', () => {
  it('failure rate counts failed and timed out among finished jobs', () => {
    expect(failureRate({ succeeded: 3, failed: 1, cancelled: 0, timedOut: 0 })).toBe(0.25);
    expect(failureRate({ succeeded: 0, failed: 0, cancelled: 0, timedOut: 0 })).toBeNull();
  });

  it('quotes argv for display, durations readable', () => {
    expect(commandText({ command: ['sh', '-c', "echo 'hi'"] })).toBe(`sh -c 'echo '\\''hi'\\'''`);
    expect(duration(1500)).toBe('1.50 s');
    expect(duration(125_000)).toBe('2 min 5 s');
  });
});
