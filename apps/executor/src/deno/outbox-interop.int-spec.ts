import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src/temp-dir';
import { JOURNAL_FILE } from '../core/outbox-journal';
import { FileReportOutbox } from '../node/file-report-outbox';
import { DENO_RUN_FLAGS } from './deno-command';

/** The Node and Deno outboxes share one folder format: what one leaves, the other lists and carries on. */
const ROOT = resolve(__dirname, '../../../..');
const DENO = process.env.DENO_BIN || join(ROOT, 'node_modules/.bin/deno');
const TOOL = 'apps/executor/src/deno/testing/outbox-tool.deno.ts';
const problem = !existsSync(DENO) ? `${DENO} is missing` : spawnSync(DENO, ['--version'], { timeout: 30_000 }).status !== 0 ? `${DENO} cannot run` : null;
if (problem) console.warn(`Deno outbox interop skipped: ${problem}`);
const describeWithDeno = problem ? describe.skip : describe;

describeWithDeno('the report outbox under Node and Deno', () => {
  let tmp: TempDir;
  beforeEach(() => (tmp = tempDir('jobline-outbox-interop-')));
  afterEach(() => tmp.remove());

  function deno(dir: string, ops: unknown[]): { before: unknown; after: unknown } {
    const r = spawnSync(DENO, ['run', ...DENO_RUN_FLAGS, `--allow-read=${dir}`, `--allow-write=${dir}`, TOOL, dir, JSON.stringify(ops)], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DENO_DIR: join(tmp.path, 'deno-cache'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect({ status: r.status, stderr: r.stderr }).toMatchObject({ status: 0 });
    const [before, after] = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
    return { before, after };
  }

  it('Deno lists what Node stored (and an old-format file), and Node lists what Deno changed', async () => {
    const dir = join(tmp.path, 'outbox');
    const node = new FileReportOutbox(dir);
    await node.put('a.1.finished', '{"a":"ünïcode"}');
    await node.put('b.1.finished', '{"b":1}');
    await node.put('gone.1.finished', '{"gone":1}');
    await node.remove('gone.1.finished');
    await node.close();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'old.1.finished.json'), '{"old":1}');

    const run = deno(dir, [['put', 'c.1.finished', '{"c":1}'], ['remove', 'a.1.finished']]);
    expect(run.before).toEqual([
      { key: 'a.1.finished', text: '{"a":"ünïcode"}' },
      { key: 'b.1.finished', text: '{"b":1}' },
      { key: 'old.1.finished', text: '{"old":1}' },
    ]);
    expect(readdirSync(dir)).toEqual([JOURNAL_FILE]);

    const again = new FileReportOutbox(dir);
    expect(await again.list()).toEqual([
      { key: 'b.1.finished', text: '{"b":1}' },
      { key: 'old.1.finished', text: '{"old":1}' },
      { key: 'c.1.finished', text: '{"c":1}' },
    ]);
    await again.close();
  }, 130_000);
});
