import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src/temp-dir';
import { resolveProgram } from './program-path';

describe('resolveProgram', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir('jobline-program-path-')));
  afterEach(() => tmp.remove());

  it('takes the first executable file along PATH, skipping missing entries, folders and files that are not executable', () => {
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => join(tmp.path, n));
    for (const dir of [b, c, d]) mkdirSync(dir);
    mkdirSync(join(b, 'tool')); // a folder of that name
    writeFileSync(join(c, 'tool'), '#!/bin/sh\n', { mode: 0o644 }); // not executable
    writeFileSync(join(d, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
    expect(resolveProgram('tool', [a, b, c, d].join(':'), tmp.path)).toBe(join(d, 'tool'));
  });

  it('is 127 when nothing along PATH is the program, and 126 for a path to a file that is not executable', () => {
    expect(() => resolveProgram('no-such-tool', join(tmp.path, 'missing'), tmp.path)).toThrow(expect.objectContaining({ exitCode: 127 }));
    writeFileSync(join(tmp.path, 'script'), 'echo\n');
    chmodSync(join(tmp.path, 'script'), 0o644);
    expect(() => resolveProgram('./script', '', tmp.path)).toThrow(expect.objectContaining({ exitCode: 126 }));
  });
});
