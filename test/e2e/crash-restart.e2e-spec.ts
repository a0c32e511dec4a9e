import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JobView } from '../../libs/contracts/src';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { RestClient } from './support';

const ROOT = resolve(__dirname, '../..');
const CLI = join(ROOT, 'dist/apps/cli/src/main.js');

interface DevProcess {
  child: ChildProcess;
  api: RestClient;
  output: () => string;
}

/** `jobline dev` as a user runs it: a separate process, found through what it prints. */
async function startDev(dataDir: string): Promise<DevProcess> {
  const child = spawn(process.execPath, [CLI, 'dev', '--data-dir', dataDir, '--port', '0', '--capacity', '2', '--grace-ms', '500'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const [, url, token] = await eventually(
    () => {
      if (child.exitCode !== null) throw new Error(`jobline dev exited with ${child.exitCode}:\n${out}`);
      const url = /REST\s+(http:\/\/\S+)/.exec(out)?.[1];
      const token = /token\s+(\S+)/.exec(out)?.[1];
      return url && token && /ready/.test(out) ? ([null, url, token] as const) : undefined;
    },
    30_000,
    'jobline dev to start',
  );
  return { child, api: new RestClient(url, token), output: () => out };
}

function natsServersOf(dataDir: string): string {
  return spawnSync('pgrep', ['-f', `nats-server.*${dataDir}`]).stdout.toString().trim();
}

describe('jobline dev killed with SIGKILL mid-run, then started again', () => {
  let dir: TempDir;
  let dev: DevProcess | null = null;

  beforeAll(() => {
    if (!existsSync(CLI)) {
      // `npm test` builds first; a direct `npx jest` run may not have.
      const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) throw new Error('build failed');
    }
    dir = tempDir();
  }, 120_000);
  afterAll(async () => {
    if (dev && dev.child.exitCode === null) {
      dev.child.kill('SIGTERM');
      await new Promise((r) => dev!.child.once('exit', r));
    }
    dir?.remove();
  });

  it('loses no event, finishes every job, and the projection rebuilt from 0 equals the live one', async () => {
    const dataDir = join(dir.path, 'data');
    dev = await startDev(dataDir);
    const jobs: JobView[] = [];
    for (let i = 0; i < 4; i++) jobs.push(await dev.api.submit({ command: ['sleep', '5'] }));
    for (let i = 0; i < 6; i++) jobs.push(await dev.api.submit({ command: `echo job-${i}`, priority: 'high' }));
    await eventually(async () => (await dev!.api.job(jobs[0].id)).status === 'running', 15_000, 'a job to run');

    dev.child.kill('SIGKILL');
    await new Promise((r) => dev!.child.once('exit', r));
    // Its nats-server child outlives it, holding the store: the restart must deal with that.
    expect(natsServersOf(dataDir)).not.toBe('');

    dev = await startDev(dataDir);
    const done = await Promise.all(jobs.map((j) => dev!.api.finished(j.id, 60_000)));
    for (const j of done) expect(['succeeded', 'failed']).toContain(j.status);
    for (const [i, j] of done.slice(4).entries()) {
      expect(j.status).toBe('succeeded');
      expect(await dev.api.log(j.id)).toBe(`job-${i}\n`);
    }
    // Every job's history is whole: submitted, queued, ... and one terminal outcome.
    for (const j of jobs) {
      const types = (await dev.api.events(j.id)).map((e) => e.type);
      expect(types.slice(0, 2)).toEqual(['JobSubmitted', 'JobQueued']);
      expect(types.filter((t) => t === 'JobSubmitted')).toHaveLength(1);
    }
    // No sleep of the killed run survives.
    expect(spawnSync('pgrep', ['-fx', 'sleep 5']).stdout.toString()).toBe('');

    dev.child.kill('SIGTERM');
    // A requested stop is a clean exit (0), after everything it started has stopped.
    expect(await new Promise((r) => dev!.child.once('exit', (code) => r(code)))).toBe(0);
    expect(natsServersOf(dataDir)).toBe('');

    const replay = spawnSync(process.execPath, [CLI, 'replay', '--data-dir', dataDir, '--json'], { cwd: ROOT, encoding: 'utf8' });
    expect(replay.status).toBe(0);
    const result = JSON.parse(replay.stdout);
    expect(result).toMatchObject({ jobs: 10, problems: [], liveMatches: true });
  }, 180_000);
});
