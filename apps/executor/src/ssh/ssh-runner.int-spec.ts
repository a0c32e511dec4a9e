import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../../../libs/testing/src';
import type { RunningProcess } from '../core/process-runner.port';
import { parseSshInventory } from './ssh-inventory';
import { HostKeyError } from './ssh-connection';
import { SshRunner } from './ssh-runner';
import { sshdUnavailable, startTestSshd, type TestSshd } from './testing/sshd';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const unavailable = sshdUnavailable();
const title = unavailable ? `SshRunner against a real sshd (skipped: ${unavailable})` : 'SshRunner against a real sshd';

async function collect(it: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts).toString('utf8');
}
const pgrep = (pattern: string) => spawnSync('pgrep', ['-f', `^${pattern}`], { encoding: 'utf8' }).stdout.trim();

(unavailable ? describe.skip : describe)(title, () => {
  let dir: TempDir;
  let sshd: TestSshd;
  let runner: SshRunner;
  let remoteRoot: string;

  function makeRunner(overrides: Record<string, unknown> = {}, settings: Record<string, unknown> = {}): SshRunner {
    const inv = parseSshInventory({
      hosts: [{ name: 'box', address: '127.0.0.1', port: sshd.port, user: sshd.user, privateKeyFile: sshd.userKeyFile, hostKey: sshd.hostKey, remoteRoot, ...overrides }],
      connectTimeoutMs: 5000,
      keepaliveIntervalMs: 1000,
      ...settings,
    });
    return new SshRunner({ host: inv.hosts[0], settings: inv, logger: quiet });
  }
  const launch = (r: SshRunner, argv: string[], env: Record<string, string> = {}) =>
    r.launch({ attemptId: `${randomUUID()}-1`, argv, env: { PATH: '/usr/bin:/bin', ...env } });

  beforeAll(async () => {
    dir = tempDir();
    remoteRoot = join(dir.path, 'remote');
    sshd = await startTestSshd(dir.path);
    runner = makeRunner();
    runner.start();
  });
  afterAll(async () => {
    runner?.close();
    await sshd?.stop();
    dir?.remove();
  });

  it('streams stdout and stderr separately, reports the exit code, removes the workspace', async () => {
    const p = await launch(runner, ['sh', '-c', 'echo out; echo err >&2; pwd; echo "$HOME $JOBLINE_ATTEMPT $FOO"; exit 5'], { FOO: 'bar baz' });
    const [out, err, status] = await Promise.all([collect(p.stdout), collect(p.stderr), p.wait()]);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('out');
    const ws = lines[1];
    expect(ws.startsWith(join(remoteRoot, 'box') + '/')).toBe(true);
    expect(lines[2]).toMatch(new RegExp(`^${ws} .+-1 bar baz$`));
    expect(err).toBe('err\n');
    expect(status).toMatchObject({ exitCode: 5, signal: null });
    expect(p.pid).toBeGreaterThan(1);
    expect(existsSync(ws)).toBe(true);
    await p.dispose();
    expect(existsSync(ws)).toBe(false);
  });

  it('runs the command as its own process group and reports a signal as 128 + n', async () => {
    const p = await launch(runner, ['sh', '-c', 'ps -o pgid= -p $$; kill -TERM $$']);
    const [out, status] = await Promise.all([collect(p.stdout), p.wait()]);
    expect(Number(out.trim())).toBe(p.pid);
    expect(status).toMatchObject({ exitCode: 143, signal: 'SIGTERM' });
    await p.dispose();
  });

  it('shutdown kills the whole remote group: nothing survives', async () => {
    const tag = `1000.${Math.floor(Math.random() * 1e6)}`;
    const p = await launch(runner, ['sh', '-c', `sleep ${tag} & sleep ${tag} & wait`]);
    const out = collect(p.stdout);
    // Both sleeps run before the stop.
    for (let i = 0; i < 200 && pgrep(`sleep ${tag}`).split('\n').filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(pgrep(`sleep ${tag}`).split('\n').filter(Boolean)).toHaveLength(2);
    await p.shutdown(2000);
    const status = await p.wait();
    await out;
    expect(status.signal).toBe('SIGTERM');
    expect(pgrep(`sleep ${tag}`)).toBe('');
    await p.dispose();
  });

  it('a background child that keeps the pipes open does not hold wait(), and is killed', async () => {
    const tag = `1001.${Math.floor(Math.random() * 1e6)}`;
    const p = await launch(runner, ['sh', '-c', `sleep ${tag} & echo started`]);
    const status = await p.wait();
    expect(status.exitCode).toBe(0);
    expect(await collect(p.stdout)).toBe('started\n');
    expect(pgrep(`sleep ${tag}`)).toBe('');
    await p.dispose();
  });

  it('reuses one connection across attempts', async () => {
    const conns = new Set<unknown>();
    for (let i = 0; i < 3; i++) {
      conns.add(await runner.conn.get());
      const p = await launch(runner, ['true']);
      await p.wait();
      await p.dispose();
    }
    expect(conns.size).toBe(1);
  });

  it('a missing program exits 127 like a shell', async () => {
    const p = await launch(runner, ['no-such-program-xyz']);
    const [err, status] = await Promise.all([collect(p.stderr), p.wait()]);
    expect(status.exitCode).toBe(127);
    expect(err).toMatch(/no-such-program-xyz/);
    await p.dispose();
  });

  it('copies a bundle into the workspace, unpacks it and runs .jobline/run.sh there; the workspace goes after', async () => {
    const src = join(dir.path, `bundle-src-${randomUUID()}`);
    mkdirSync(join(src, '.jobline'), { recursive: true });
    mkdirSync(join(src, 'sub'));
    writeFileSync(join(src, 'a.txt'), 'one\n');
    writeFileSync(join(src, 'sub', 'b.txt'), Buffer.alloc(300_000, 'b'));
    writeFileSync(join(src, '.jobline', 'run.sh'), 'cd sub && wc -c b.txt && cat ../a.txt && pwd && read x; echo "stdin: $x"\n');
    const bundleFile = `${src}.tar.gz`;
    execFileSync('tar', ['-czf', bundleFile, '-C', src, '.']);
    const p = await runner.launch({ attemptId: `${randomUUID()}-1`, argv: ['/bin/sh', '.jobline/run.sh'], env: { PATH: '/usr/bin:/bin' }, bundleFile });
    const [out, status] = await Promise.all([collect(p.stdout), p.wait()]);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('300000 b.txt');
    expect(lines[1]).toBe('one');
    const ws = lines[2].replace(/\/sub$/, '');
    expect(ws.startsWith(join(remoteRoot, 'box') + '/')).toBe(true);
    // The command's stdin is /dev/null, as for a local attempt; the uploaded tar.gz is not left beside the workspace.
    expect(lines[3]).toBe('stdin:');
    expect(status.exitCode).toBe(0);
    expect(existsSync(`${ws}.tar.gz`)).toBe(false);
    await p.dispose();
    expect(existsSync(ws)).toBe(false);
  });

  it('a bundle that cannot be unpacked fails the launch and leaves nothing on the host', async () => {
    const bad = join(dir.path, `bad-${randomUUID()}.tar.gz`);
    writeFileSync(bad, 'not a tar.gz');
    const attemptId = `${randomUUID()}-1`;
    await expect(runner.launch({ attemptId, argv: ['/bin/sh', '.jobline/run.sh'], env: { PATH: '/usr/bin:/bin' }, bundleFile: bad })).rejects.toThrow(
      /cannot start the attempt on SSH host box: .*cannot unpack the bundle/s,
    );
    expect(readdirSync(join(remoteRoot, 'box')).filter((f) => f.startsWith(attemptId))).toEqual([]);
  });

  it('refuses a host whose key is not the pinned one, before running anything', async () => {
    const wrong = makeRunner({ hostKey: `SHA256:${'A'.repeat(43)}` });
    const marker = join(dir.path, `ran-${randomUUID()}`);
    try {
      await expect(launch(wrong, ['touch', marker])).rejects.toThrow(/host key mismatch for SSH host box .*presented SHA256:.*pins SHA256:A{43}/);
      expect(wrong.conn.lastError).toBeInstanceOf(HostKeyError);
      expect(wrong.available()).toBe(true);
      expect(existsSync(marker)).toBe(false);
    } finally {
      wrong.close();
    }
  });

  it('a dropped connection fails the attempt once the host is back, after killing its processes', async () => {
    const own = makeRunner({ name: 'dropper' });
    own.start();
    const tag = `1002.${Math.floor(Math.random() * 1e6)}`;
    let p: RunningProcess | undefined;
    try {
      p = await launch(own, ['sh', '-c', `sleep ${tag} & sleep ${tag}`]);
      for (let i = 0; i < 200 && pgrep(`sleep ${tag}`).split('\n').filter(Boolean).length < 2; i++) await new Promise((r) => setTimeout(r, 25));
      const waited = p.wait().then(
        () => 'resolved',
        (err: Error) => err.message,
      );
      await sshd.stop();
      for (let i = 0; i < 200 && own.available(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(own.available()).toBe(false);
      // The session went with the connection: the attempt's watchdog killed its group at once.
      for (let i = 0; i < 200 && pgrep(`sleep ${tag}`) !== ''; i++) await new Promise((r) => setTimeout(r, 25));
      expect(pgrep(`sleep ${tag}`)).toBe('');
      await sshd.start();
      expect(await waited).toMatch(/dropped during the attempt/);
      expect(own.available()).toBe(true);
      expect(pgrep(`sleep ${tag}`)).toBe('');
    } finally {
      await p?.dispose();
      own.close();
    }
    // The shared runner reconnects too.
    const q = await launch(runner, ['echo', 'again']);
    expect(await collect(q.stdout)).toBe('again\n');
    await q.wait();
    await q.dispose();
  });
});
