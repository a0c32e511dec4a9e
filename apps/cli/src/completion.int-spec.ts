import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { completionScript } from './completion';
import { buildProgram } from './main';

/** Which shells are here: a missing one is skipped, saying so (scripts/system-deps.sh installs zsh). */
const has = (shell: string) => spawnSync(shell, ['-c', 'true']).status === 0;

describe('jobline completion, loaded into a real shell', () => {
  let dir: TempDir;
  beforeAll(() => (dir = tempDir('jobline-completion-')));
  afterAll(() => dir.remove());

  describe('bash', () => {
    let script: string;
    beforeAll(() => {
      script = join(dir.path, 'jobline.bash');
      writeFileSync(script, completionScript(buildProgram(), 'bash'));
    });

    /** What bash offers for the command line `words` (the last word is the one being completed). */
    const complete = (...words: string[]): string[] => {
      const array = ['jobline', ...words].map((w) => `'${w}'`).join(' ');
      const r = spawnSync('bash', ['-c', `source '${script}'; COMP_WORDS=(${array}); COMP_CWORD=${words.length}; _jobline; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return r.stdout.split('\n').filter((l) => l !== '');
    };

    it('completes commands, sub-commands and options', () => {
      expect(complete('lo')).toEqual(['logs']);
      expect(complete('')).toEqual(expect.arrayContaining(['dev', 'start', 'status', 'logs', 'stop', 'list', 'history', 'certs', 'completion', '--version']));
      expect(complete('certs', '')).toEqual(expect.arrayContaining(['init', 'issue']));
      expect(complete('certs', 'issue', '--a')).toEqual(['--admin']);
      expect(complete('list', '--c')).toEqual(expect.arrayContaining(['--cursor', '--config', '--ca', '--cert']));
      expect(complete('logs', '-')).toEqual(expect.arrayContaining(['-f', '--follow', '--json']));
      expect(complete('completion', '')).toEqual(['bash', 'zsh', '-h', '--help']);
    });

    it('completes option values from their choices, after other options and their values', () => {
      expect(complete('start', '--priority', '')).toEqual(['low', 'normal', 'high']);
      expect(complete('list', '--limit', '5', '--status', 'ti')).toEqual(['timed_out']);
      expect(complete('list', '--order', '-')).toEqual(['-submittedAt', '-priority']);
      expect(complete('dev', '--log-level', 'w')).toEqual(['warn']);
      // An option's value is not mistaken for the command.
      expect(complete('--version', 'st')).toEqual(expect.arrayContaining(['start', 'status', 'stop']));
    });
  });

  const zshIt = has('zsh') ? it : it.skip;
  if (!has('zsh')) it('zsh completion: skipped, zsh is not installed (sh scripts/system-deps.sh installs it)', () => undefined);

  zshIt('zsh: the script parses, registers _jobline for jobline under compinit, and defines a function per command', () => {
    const script = join(dir.path, '_jobline');
    writeFileSync(script, completionScript(buildProgram(), 'zsh'));
    expect(spawnSync('zsh', ['-n', script], { encoding: 'utf8' }).stderr).toBe('');
    const r = spawnSync(
      'zsh',
      ['-f', '-c', `autoload -U compinit && compinit -u -d '${join(dir.path, 'zcompdump')}' && source '${script}' && print -r -- $_comps[jobline] && print -rl -- \${(ok)functions[(I)_jobline*]}`],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    const [registered, ...functions] = r.stdout.trim().split('\n');
    expect(registered).toBe('_jobline');
    expect(functions).toEqual(expect.arrayContaining(['_jobline', '_jobline_start', '_jobline_logs', '_jobline_certs', '_jobline_certs_issue', '_jobline_completion']));
  });
});
