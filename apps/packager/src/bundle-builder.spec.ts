import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { JobSpecSchema } from '../../../libs/contracts/src';
import { tempDir } from '../../../libs/testing/src';
import { packFolder, runScript, dockerfile, PackagingError } from './bundle-builder';

const spec = JobSpecSchema.parse({ command: ['ls', '-l'], env: { B: '2', A: 'x y' } });

function makeTree(root: string, mtime: number, mode: number): void {
  mkdirSync(join(root, 'src/deep'), { recursive: true });
  writeFileSync(join(root, 'src/deep/b.txt'), 'bee\n');
  writeFileSync(join(root, 'a.txt'), 'ay\n');
  writeFileSync(join(root, 'tool.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'tool.sh'), 0o700);
  chmodSync(join(root, 'a.txt'), mode);
  symlinkSync('a.txt', join(root, 'link'));
  for (const p of ['a.txt', 'tool.sh', 'src/deep/b.txt', 'src']) utimesSync(join(root, p), mtime, mtime);
}

describe('packFolder', () => {
  it('gives byte-identical bundles for the same inputs, whatever the mtimes, modes and creation order', async () => {
    const one = tempDir('bundle-a');
    const two = tempDir('bundle-b');
    makeTree(one.path, 1_000_000, 0o600);
    makeTree(two.path, 2_000_000, 0o664);
    const a = await packFolder(one.path, spec);
    const b = await packFolder(two.path, spec);
    expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(b.bytes.equals(a.bytes)).toBe(true);
    expect(b.sha256).toBe(a.sha256);
    one.remove();
    two.remove();
  });

  it('writes sorted entries with fixed mtime, uid/gid 0, empty names, normalized modes and a timeless gzip header', async () => {
    const dir = tempDir('bundle-c');
    makeTree(dir.path, 1_000_000, 0o600);
    const built = await packFolder(dir.path, spec);
    expect([...built.bytes.subarray(4, 8)]).toEqual([0, 0, 0, 0]);
    expect(built.bytes[9]).toBe(3);
    const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvzf', '-'], { input: built.bytes, env: { TZ: 'UTC', PATH: process.env.PATH } }).toString().trim().split('\n');
    const names = listing.map((l) => l.split(/\s+/).slice(5).join(' '));
    expect(names).toEqual([
      '.jobline/', '.jobline/Dockerfile', '.jobline/manifest.json', '.jobline/run.sh',
      'a.txt', 'link -> a.txt', 'src/', 'src/deep/', 'src/deep/b.txt', 'tool.sh',
    ]);
    for (const l of listing) {
      expect(l).toContain(' 0/0 ');
      // tar's portable mode stores no mtime for directories (0); every other entry has the fixed one.
      expect(l).toContain(l.startsWith('d') ? '1970-01-01 00:00:00' : '2000-01-01 00:00:00');
    }
    expect(listing.find((l) => l.endsWith(' a.txt'))).toMatch(/^-rw-r--r-- /);
    expect(listing.find((l) => l.endsWith(' tool.sh'))).toMatch(/^-rwxr-xr-x /);
    expect(listing.find((l) => l.endsWith(' src/'))).toMatch(/^drwxr-xr-x /);
    // ustar uname/gname fields (offsets 265 and 297, 32 bytes each) are empty.
    const tar = gunzipSync(built.bytes);
    expect(tar.subarray(265, 265 + 64).every((b) => b === 0)).toBe(true);

    const manifest = JSON.parse(readFileSync(join(dir.path, '.jobline/manifest.json'), 'utf8'));
    const a = manifest.files.find((f: { path: string }) => f.path === 'a.txt');
    expect(a).toEqual({ path: 'a.txt', type: 'file', mode: '0644', size: 3, sha256: createHash('sha256').update('ay\n').digest('hex') });
    expect(manifest.files.find((f: { path: string }) => f.path === 'link')).toEqual({ path: 'link', type: 'symlink', mode: '0777', target: 'a.txt' });
    expect(manifest.files.map((f: { path: string }) => f.path)).not.toContain('.jobline/manifest.json');
    dir.remove();
  });

  it('changes the digest when a byte of content changes', async () => {
    const one = tempDir('bundle-d');
    const two = tempDir('bundle-e');
    makeTree(one.path, 1, 0o644);
    makeTree(two.path, 1, 0o644);
    writeFileSync(join(two.path, 'a.txt'), 'az\n');
    expect((await packFolder(one.path, spec)).sha256).not.toBe((await packFolder(two.path, spec)).sha256);
    one.remove();
    two.remove();
  });

  it('refuses a source that already has a .jobline entry', async () => {
    const dir = tempDir('bundle-f');
    mkdirSync(join(dir.path, '.jobline'));
    await expect(packFolder(dir.path, spec)).rejects.toThrow(PackagingError);
    dir.remove();
  });
});

describe('run.sh', () => {
  const run = (script: string, cwd: string) => {
    try {
      return { code: 0, out: execFileSync('/bin/sh', ['-c', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString() };
    } catch (err) {
      const e = err as { status: number; stdout: Buffer; stderr: Buffer };
      return { code: e.status, out: e.stdout.toString(), err: e.stderr.toString() };
    }
  };

  it('runs the steps in order with markers and stops at the first failure', () => {
    const dir = tempDir('runsh');
    mkdirSync(join(dir.path, '.jobline'));
    writeFileSync(join(dir.path, '.jobline/run.sh'), runScript({ steps: [{ name: 'one', run: 'echo 1' }, { name: 'two', run: 'exit 4' }, { name: 'three', run: 'echo 3' }] }));
    const r = run('sh .jobline/run.sh', dir.path);
    expect(r).toEqual({ code: 4, out: '1\n', err: '==> [1/3] one\n==> [2/3] two\n' });
    dir.remove();
  });

  it('runs an argv command from the bundle root, quoting every argument', () => {
    const dir = tempDir('runsh2');
    mkdirSync(join(dir.path, '.jobline'));
    writeFileSync(join(dir.path, 'it is.txt'), 'x');
    writeFileSync(join(dir.path, '.jobline/run.sh'), runScript({ command: ['ls', 'it is.txt', '$(id)'] }));
    const r = run('cd / && sh ' + join(dir.path, '.jobline/run.sh'), dir.path);
    expect(r.out).toBe('it is.txt\n');
    expect(r.code).not.toBe(0); // '$(id)' is a file name, not a command substitution
    dir.remove();
  });
});

describe('Dockerfile', () => {
  it('uses the configured base image, a non-root user and run.sh as the command', () => {
    const text = dockerfile({ env: { A: 'x' } }, 'alpine:3.20');
    expect(text).toContain('FROM alpine:3.20');
    expect(text).toContain('USER 10001:10001');
    expect(text).toContain('COPY --chown=10001:10001 . /bundle');
    expect(text).toContain('CMD ["/bin/sh", "/bundle/.jobline/run.sh"]');
    expect(() => dockerfile({}, 'x\nRUN rm -rf /')).toThrow(PackagingError);
  });
});
