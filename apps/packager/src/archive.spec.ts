import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { PackagingError } from './bundle-builder';
import { unpackArchive } from './archive';
import { tarOf, zipOf } from './testing/archives';
import * as yazl from 'yazl';

describe('unpackArchive', () => {
  let dir: TempDir;
  let n = 0;
  const fresh = () => {
    const p = join(dir.path, `t${n++}`);
    mkdirSync(p);
    return p;
  };
  beforeAll(() => (dir = tempDir('archive')));
  afterAll(() => dir.remove());

  it('unpacks a tar.gz with folders, an executable and an inside link', async () => {
    const root = fresh();
    const r = await unpackArchive(tarOf([{ name: 'src/', type: '5', mode: 0o755 }, { name: 'src/run.sh', data: 'echo hi\n', mode: 0o755 }, { name: 'a.txt', data: 'a' }, { name: 'link', type: '2', link: 'src/run.sh' }]), root);
    expect(r).toEqual({ format: 'tar.gz', entries: 4 });
    expect(readFileSync(join(root, 'src/run.sh'), 'utf8')).toBe('echo hi\n');
    expect(lstatSync(join(root, 'src/run.sh')).mode & 0o111).not.toBe(0);
    expect(readlinkSync(join(root, 'link'))).toBe('src/run.sh');
  });

  it('unpacks a zip', async () => {
    const root = fresh();
    expect(await unpackArchive(zipOf([{ name: 'dir/', mode: 0o040755 }, { name: 'dir/x.txt', data: 'x'.repeat(1000) }]), root)).toEqual({ format: 'zip', entries: 2 });
    expect(readFileSync(join(root, 'dir/x.txt'), 'utf8')).toBe('x'.repeat(1000));
  });

  /** A zip made by a real zip writer (yazl), optionally in zip64 format. */
  const realZip = (files: [string, string][], forceZip64Format = false): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const z = new yazl.ZipFile();
      for (const [name, data] of files) z.addBuffer(Buffer.from(data), name, { forceZip64Format, mode: 0o100755 });
      const chunks: Buffer[] = [];
      z.outputStream.on('data', (c: Buffer) => chunks.push(c)).on('error', reject).on('end', () => resolve(Buffer.concat(chunks)));
      z.end({ forceZip64Format, comment: '' });
    });

  it('unpacks zips from a real writer, zip64 included (accepted: yauzl reads it, the same limits apply)', async () => {
    for (const zip64 of [false, true]) {
      const root = fresh();
      const zip = await realZip([['bin/run.sh', 'echo hi\n'], ['README', 'x'.repeat(70_000)]], zip64);
      if (zip64) expect(zip.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true); // a zip64 end of central directory
      expect(await unpackArchive(zip, root)).toEqual({ format: 'zip', entries: 2 });
      expect(readFileSync(join(root, 'README'), 'utf8')).toBe('x'.repeat(70_000));
      expect(lstatSync(join(root, 'bin/run.sh')).mode & 0o111).not.toBe(0);
      await expect(unpackArchive(zip, fresh(), { maxBytes: 1000 })).rejects.toThrow(/more than 1000 bytes/);
    }
  });

  it.each([
    ['an encrypted zip entry', () => zipOf([{ name: 'secret.txt', data: 'x', flags: 1 }]), /encrypted, which is refused/],
    ['a zip entry compressed with bzip2', () => zipOf([{ name: 'a.txt', data: 'x', method: 12 }]), /compression method 12 is not supported/],
    ['a zip with a file inside a link', () => zipOf([{ name: 'l', data: 'sub', mode: 0o120777 }, { name: 'sub/', mode: 0o040755 }, { name: 'l/x', data: 'via link' }]), /inside l, which is a link/],
    ['a tar with a file inside a file', () => tarOf([{ name: 'a', data: 'x' }, { name: 'a/b', data: 'y' }]), /inside a, which is a file/],
    ['a tar with a folder and a file of one name', () => tarOf([{ name: 'a/', type: '5' }, { name: 'a', data: 'y' }]), /has a twice/],
    ['a zip with backslashes climbing out', () => zipOf([{ name: '..\\..\\evil', data: 'x' }]), /contains '\.\.'/],
    ['a zip with a drive letter', () => zipOf([{ name: 'C:/evil', data: 'x' }]), /absolute path/],
    ['a zip with a name over 255 bytes', () => zipOf([{ name: `d/${'n'.repeat(300)}`, data: 'x' }]), /longer than 255 bytes/],
    ['a truncated zip', () => zipOf([{ name: 'a.txt', data: 'hello' }]).subarray(0, 40), /not a valid zip/],
  ])('refuses %s, clearly, and writes nothing', async (_what, make, reason) => {
    const root = fresh();
    const err = await unpackArchive(make(), root).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    expect(err.message).toMatch(reason);
    expect(readdirSync(root)).toEqual([]);
  });

  it.each([
    ['a zip with ../../etc/passwd', () => zipOf([{ name: '../../etc/passwd', data: 'root::0:0' }]), /contains '\.\.'/],
    ['a zip with an absolute path', () => zipOf([{ name: '/etc/passwd', data: 'x' }]), /absolute path/],
    ['a zip with a symlink to /', () => zipOf([{ name: 'root', data: '/', mode: 0o120777 }]), /points outside the tree/],
    ['a tar with a symlink to /', () => tarOf([{ name: 'root', type: '2', link: '/' }, { name: 'root/etc/passwd', data: 'x' }]), /points outside the tree/],
    ['a tar with a symlink out through ..', () => tarOf([{ name: 'a/up', type: '2', link: '../..' }]), /points outside the tree/],
    ['a tar with a link walking through another link', () => tarOf([{ name: 'd/b', type: '2', link: '..' }, { name: 'd/b2', type: '2', link: 'b/..' }]), /passes through another link/],
    ['a tar with ../', () => tarOf([{ name: '../evil', data: 'x' }]), /contains '\.\.'/],
    ['a tar with a device file', () => tarOf([{ name: 'null', type: '3' }]), /device or fifo/],
    ['a tar with a hard link', () => tarOf([{ name: 'a', data: 'x' }, { name: 'b', type: '1', link: 'a' }]), /hard link/],
    ['something else', () => Buffer.from('not an archive'), /neither a zip nor a tar\.gz/],
  ])('refuses %s and writes nothing', async (_what, make, reason) => {
    const root = fresh();
    const err = await unpackArchive(make(), root).catch((e) => e);
    expect(err).toBeInstanceOf(PackagingError);
    expect(err.message).toMatch(reason);
    expect(readdirSync(root)).toEqual([]);
    expect(existsSync(join(dir.path, 'evil'))).toBe(false);
  });

  it('enforces the size, entry-count and depth limits', async () => {
    await expect(unpackArchive(tarOf([{ name: 'big', data: 'x'.repeat(5000) }]), fresh(), { maxBytes: 4096 })).rejects.toThrow(/more than 4096 bytes/);
    await expect(unpackArchive(zipOf([{ name: 'big', data: 'x'.repeat(5000) }]), fresh(), { maxBytes: 4096 })).rejects.toThrow(/more than 4096 bytes/);
    await expect(unpackArchive(tarOf([{ name: 'a', data: '' }, { name: 'b', data: '' }, { name: 'c', data: '' }]), fresh(), { maxEntries: 2 })).rejects.toThrow(/more than 2 entries/);
    await expect(unpackArchive(zipOf([{ name: 'a/b/c/d.txt', data: '' }]), fresh(), { maxDepth: 3 })).rejects.toThrow(/deeper than 3 levels/);
  });
});
