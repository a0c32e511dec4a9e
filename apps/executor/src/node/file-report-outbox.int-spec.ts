import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src/temp-dir';
import { FileReportOutbox } from './file-report-outbox';

// The module object itself (an `import * as` copy would not carry the spies into the outbox's calls).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fs = require('node:fs') as typeof import('node:fs');

describe('FileReportOutbox', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir('jobline-outbox-')));
  afterEach(() => {
    jest.restoreAllMocks();
    tmp.remove();
  });

  it('a put resolves only after a sync of its folder that started after its rename, also with many at once', async () => {
    const outbox = new FileReportOutbox(join(tmp.path, 'outbox'));
    const events: string[] = [];
    const rename = fs.renameSync;
    jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
      rename(from, to);
      events.push(`rename ${String(to).split('/').pop()}`);
    });
    const fsync = fs.fsync;
    let syncs = 0;
    jest.spyOn(fs, 'fsync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      const id = fs.fstatSync(fd).isDirectory() ? ++syncs : 0;
      if (id) events.push(`dir sync start ${id}`);
      fsync(fd, (err) => {
        if (id) events.push(`dir sync end ${id}`);
        cb(err);
      });
    }) as typeof fs.fsync);
    const keys = Array.from({ length: 20 }, (_, i) => `job${i}.1.finished`);
    await Promise.all(
      keys.map(async (key) => {
        await outbox.put(key, JSON.stringify({ key }));
        events.push(`resolved ${key}.json`);
      }),
    );
    for (const key of keys) {
      const renamed = events.indexOf(`rename ${key}.json`);
      const resolved = events.indexOf(`resolved ${key}.json`);
      expect(renamed).toBeGreaterThanOrEqual(0);
      // Some sync of the folder started after the rename and ended before the put resolved.
      const covering = events
        .slice(renamed + 1, resolved)
        .filter((e) => e.startsWith('dir sync start '))
        .some((e) => events.indexOf(e.replace('start', 'end')) < resolved && events.indexOf(e.replace('start', 'end')) > renamed);
      expect({ key, covering }).toEqual({ key, covering: true });
    }
    expect((await outbox.list()).map((e) => e.key).sort()).toEqual([...keys].sort());
  });

  it('remove forgets a key, and is a no-op for a key that is not there', async () => {
    const outbox = new FileReportOutbox(join(tmp.path, 'outbox'));
    await outbox.put('a.1.finished', '{"a":1}');
    await outbox.put('b.1.finished', '{"b":1}');
    await outbox.remove('a.1.finished');
    await outbox.remove('never.1.finished');
    expect(await outbox.list()).toEqual([{ key: 'b.1.finished', text: '{"b":1}' }]);
  });
});
