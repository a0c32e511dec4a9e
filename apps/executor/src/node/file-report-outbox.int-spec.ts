import { appendFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src/temp-dir';
import { JOURNAL_FILE, putRecord } from '../core/outbox-journal';
import { FileReportOutbox } from './file-report-outbox';

// The module object itself (an `import * as` copy would not carry the spies into the outbox's calls).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fs = require('node:fs') as typeof import('node:fs');

describe('FileReportOutbox', () => {
  let tmp: TempDir;
  let dir: string;
  const open: FileReportOutbox[] = [];
  const outbox = (options?: ConstructorParameters<typeof FileReportOutbox>[1]) => {
    const o = new FileReportOutbox(dir, options);
    open.push(o);
    return o;
  };
  /** A restart: what a new instance on the same folder finds. */
  const listed = async () => (await outbox().list()).map((e) => [e.key, e.text]);
  const journal = () => join(dir, JOURNAL_FILE);

  beforeEach(() => {
    tmp = tempDir('jobline-outbox-');
    dir = join(tmp.path, 'outbox');
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    for (const o of open.splice(0)) await o.close();
    tmp.remove();
  });

  it('puts of one tick share one data sync, which started after every one of their writes and ended before any resolved', async () => {
    const o = outbox();
    await o.list(); // opened (its one-time syncs done)
    const events: string[] = [];
    const write = fs.writeSync;
    jest.spyOn(fs, 'writeSync').mockImplementation(((...args: Parameters<typeof fs.writeSync>) => {
      events.push('write');
      return (write as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync);
    const fdatasync = fs.fdatasync;
    jest.spyOn(fs, 'fdatasync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      events.push('sync start');
      fdatasync(fd, (err) => {
        events.push('sync end');
        cb(err);
      });
    }) as typeof fs.fdatasync);
    const keys = Array.from({ length: 20 }, (_, i) => `job${i}.1.finished`);
    await Promise.all(
      keys.map(async (key) => {
        await o.put(key, JSON.stringify({ key }));
        events.push('resolved');
      }),
    );
    expect(events).toEqual([...keys.map(() => 'write'), 'sync start', 'sync end', ...keys.map(() => 'resolved')]);
    expect((await listed()).map(([k]) => k)).toEqual(keys);
  });

  it('a put arriving while a sync runs waits for the next sync, not the running one', async () => {
    const o = outbox();
    await o.list();
    const events: string[] = [];
    const fdatasync = fs.fdatasync;
    jest.spyOn(fs, 'fdatasync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      const n = events.filter((e) => e.startsWith('sync start')).length + 1;
      events.push(`sync start ${n}`);
      fdatasync(fd, (err) => {
        events.push(`sync end ${n}`);
        cb(err);
      });
    }) as typeof fs.fdatasync);
    const first = o.put('a.1.finished', '{"a":1}').then(() => events.push('a resolved'));
    await new Promise((r) => setImmediate(r)); // the first sync is under way
    expect(events).toEqual(['sync start 1']);
    events.push('b put');
    const second = o.put('b.1.finished', '{"b":1}').then(() => events.push('b resolved'));
    await Promise.all([first, second]);
    expect(events.indexOf('b resolved')).toBeGreaterThan(events.indexOf('sync end 2'));
    expect(events.indexOf('sync start 2')).toBeGreaterThan(events.indexOf('b put'));
  });

  it('remove forgets a key, and is a no-op for a key that is not there; both hold over a restart', async () => {
    const o = outbox();
    await o.put('a.1.finished', '{"a":1}');
    await o.put('b.1.finished', '{"b":1}');
    await o.put('c.1.finished', '{"c":1}');
    await o.put('c.1.finished', '{"c":2}');
    await o.remove('a.1.finished');
    await o.remove('never.1.finished');
    expect(await o.list()).toEqual([
      { key: 'b.1.finished', text: '{"b":1}' },
      { key: 'c.1.finished', text: '{"c":2}' },
    ]);
    expect(await listed()).toEqual([
      ['b.1.finished', '{"b":1}'],
      ['c.1.finished', '{"c":2}'],
    ]);
  });

  it('ignores a torn last record and cuts it off before the next append, so later reports still read back', async () => {
    const o = outbox();
    await o.put('a.1.finished', '{"a":1}');
    await o.close();
    const whole = putRecord('b.1.finished', '{"b":"a report cut short by a crash"}');
    appendFileSync(journal(), whole.subarray(0, whole.length - 5));
    const after = outbox();
    expect((await after.list()).map((e) => e.key)).toEqual(['a.1.finished']);
    await after.put('c.1.finished', '{"c":1}');
    expect(await listed()).toEqual([
      ['a.1.finished', '{"a":1}'],
      ['c.1.finished', '{"c":1}'],
    ]);
  });

  it('ignores a record whose bytes do not match its checksum, and everything after it', async () => {
    const o = outbox();
    await o.put('a.1.finished', '{"a":1}');
    const before = statSync(journal()).size;
    await o.put('b.1.finished', '{"b":1}');
    await o.put('c.1.finished', '{"c":1}');
    await o.close();
    const bytes = readFileSync(journal());
    bytes[before + 20] ^= 0x01; // inside b's payload
    writeFileSync(journal(), bytes);
    expect(await listed()).toEqual([['a.1.finished', '{"a":1}']]);
    // Zeros where a record should be (a crash after the size grew, before the data) are no record either.
    appendFileSync(journal(), Buffer.alloc(64));
    expect(await listed()).toEqual([['a.1.finished', '{"a":1}']]);
  });

  it('cuts the journal to nothing once every report is removed, and rewrites it with the live ones once they are a small part', async () => {
    const o = outbox({ truncateBytes: 1024, compactBytes: 4096 });
    const text = JSON.stringify({ pad: 'x'.repeat(100) });
    for (let i = 0; i < 20; i++) await o.put(`j${i}.1.finished`, text);
    expect(statSync(journal()).size).toBeGreaterThan(1024);
    for (let i = 0; i < 20; i++) await o.remove(`j${i}.1.finished`);
    expect(statSync(journal()).size).toBe(0);
    expect(await listed()).toEqual([]);

    await o.put('keep.1.finished', '{"keep":1}');
    let largest = 0;
    for (let i = 0; i < 100; i++) {
      await o.put(`k${i}.1.finished`, text);
      await o.remove(`k${i}.1.finished`);
      largest = Math.max(largest, statSync(journal()).size);
    }
    expect(largest).toBeLessThan(4096 + 200);
    expect(statSync(journal()).size).toBeLessThan(4096);
    // Still appended to after the rewrite, and all of it read back.
    await o.put('late.1.finished', '{"late":1}');
    expect(await listed()).toEqual([
      ['keep.1.finished', '{"keep":1}'],
      ['late.1.finished', '{"late":1}'],
    ]);
    expect(readdirSync(dir).sort()).toEqual([JOURNAL_FILE]);
  });

  it('moves the reports of the previous format (one <key>.json each) into the journal on start', async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'old.1.finished.json'), '{"old":1}');
    writeFileSync(join(dir, 'old.1.started.json'), '{"old":"started"}');
    writeFileSync(join(dir, 'torn.1.finished.json.123.tmp'), '{"to');
    writeFileSync(join(dir, 'not a key.json'), '{}');
    const o = outbox();
    expect((await o.list()).sort((a, b) => a.key.localeCompare(b.key))).toEqual([
      { key: 'old.1.finished', text: '{"old":1}' },
      { key: 'old.1.started', text: '{"old":"started"}' },
    ]);
    expect(readdirSync(dir).sort()).toEqual([JOURNAL_FILE, 'not a key.json']);
    await o.remove('old.1.started');
    expect(await listed()).toEqual([['old.1.finished', '{"old":1}']]);
  });

  it('a failed sync fails the put, and the next put rewrites the journal whole before it appends', async () => {
    const o = outbox();
    await o.put('a.1.finished', '{"a":1}');
    const fdatasync = fs.fdatasync;
    jest.spyOn(fs, 'fdatasync').mockImplementationOnce(((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      cb(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }));
    }) as typeof fs.fdatasync);
    await expect(o.put('b.1.finished', '{"b":1}')).rejects.toThrow('EIO');
    const renames = jest.spyOn(fs, 'renameSync');
    jest.spyOn(fs, 'fdatasync').mockImplementation(fdatasync);
    await o.put('c.1.finished', '{"c":1}');
    expect(renames).toHaveBeenCalledTimes(1);
    expect(await listed()).toEqual([
      ['a.1.finished', '{"a":1}'],
      ['b.1.finished', '{"b":1}'],
      ['c.1.finished', '{"c":1}'],
    ]);
  });
});
