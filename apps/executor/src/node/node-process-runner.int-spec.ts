import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningProcess } from '../core/process-runner.port';
import { findLauncher } from './launcher/launcher-build';
import { LauncherHandle } from './launcher/launcher-client';
import { ATTEMPT_MARKER, NodeProcessRunner, removeWorkspace } from './node-process-runner';
import { hasEnvEntry, listProcesses } from './proc-scan';

/** The unsandboxed runner through the real jobline-launcher (built from its source when needed). */

const launcher = findLauncher();
const title = 'reason' in launcher ? `unsandboxed runner via the launcher (SKIPPED: ${launcher.reason})` : 'unsandboxed runner via the launcher';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function collect(proc: RunningProcess) {
  const read = async (s: AsyncIterable<Uint8Array>) => {
    const parts: Buffer[] = [];
    for await (const c of s) parts.push(Buffer.from(c));
    return Buffer.concat(parts).toString();
  };
  const [status, stdout, stderr] = await Promise.all([proc.wait(), read(proc.stdout), read(proc.stderr)]);
  return { status, stdout, stderr };
}

const processesOf = (id: string) => listProcesses().filter((p) => p.state !== 'Z' && hasEnvEntry(p.pid, `${ATTEMPT_MARKER}=${id}`));

async function waitFor(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

('reason' in launcher ? describe.skip : describe)(title, () => {
  const root = mkdtempSync(join(tmpdir(), 'jobline-plain-'));
  const runner = new NodeProcessRunner({ workRoot: root, drainMs: 100, launcher: new LauncherHandle((launcher as { path: string }).path) });
  let seq = 0;
  const id = () => `p${process.pid}-${++seq}`;

  afterAll(async () => {
    await runner.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('runs argv in its workspace with exactly the given environment, both streams apart, exit codes and signals', async () => {
    const a = id();
    const proc = await runner.launch({ attemptId: a, argv: ['sh', '-c', 'pwd; env | sort; echo oops >&2; echo again > /dev/stdout; exit 4'], env: { PATH, GREETING: 'hi there' } });
    const { status, stdout, stderr } = await collect(proc);
    await proc.dispose();
    expect(status).toMatchObject({ exitCode: 4, signal: null });
    const [pwd, ...rest] = stdout.trim().split('\n');
    expect(pwd).toBe(join(root, a));
    expect(rest.pop()).toBe('again');
    expect(rest.sort()).toEqual([`${ATTEMPT_MARKER}=${a}`, 'GREETING=hi there', `HOME=${join(root, a)}`, `PATH=${PATH}`, `PWD=${join(root, a)}`].sort());
    expect(stderr).toBe('oops\n');
    const killed = await runner.launch({ attemptId: id(), argv: ['sh', '-c', 'kill -KILL $$'], env: { PATH } });
    expect((await collect(killed)).status).toMatchObject({ exitCode: 137, signal: 'SIGKILL' });
    await killed.dispose();
  });

  it('dispose removes the workspace: left empty, left with files and folders, or replaced by a link (whose target stays)', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'jobline-plain-outside-'));
    writeFileSync(join(outside, 'keep.txt'), 'kept');
    try {
      const scripts = ['true', 'mkdir -p a/b && echo x > a/b/f && echo y > g', `cd .. && rm -rf "$OLDPWD" && ln -s ${outside} "$OLDPWD"`];
      for (const script of scripts) {
        const a = id();
        const proc = await runner.launch({ attemptId: a, argv: ['sh', '-c', script], env: { PATH } });
        expect((await collect(proc)).status).toMatchObject({ exitCode: 0 });
        await proc.dispose();
        expect(existsSync(join(root, a))).toBe(false);
      }
      expect(readFileSync(join(outside, 'keep.txt'), 'utf8')).toBe('kept');
      // Already gone: nothing to do.
      await expect(removeWorkspace(join(root, 'never-made'))).resolves.toBeUndefined();
      mkdirSync(join(root, 'made-here', 'nested'), { recursive: true });
      await removeWorkspace(join(root, 'made-here'));
      expect(existsSync(join(root, 'made-here'))).toBe(false);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('running.json lists the attempts running, and still parses (a whole JSON text) as the list shrinks', async () => {
    const recorded = () => JSON.parse(readFileSync(join(root, 'running.json'), 'utf8')).attempts as Record<string, { pgid: number }>;
    const ids = [id(), id(), id()];
    const procs: RunningProcess[] = [];
    for (const a of ids) procs.push(await runner.launch({ attemptId: a, argv: ['sleep', '1000'], env: { PATH } }));
    await runner.persisted();
    expect(recorded()).toMatchObject(Object.fromEntries(ids.map((a, i) => [a, { pgid: procs[i].pid }])));
    for (const [i, proc] of procs.entries()) {
      await proc.shutdown(2000);
      await proc.wait();
      await proc.dispose();
      await runner.persisted();
      expect(Object.keys(recorded()).sort()).toEqual(ids.slice(i + 1).sort());
    }
  });

  it('a stop right after the launch reaches the job (the launch returns once the job has exec\'d)', async () => {
    for (let i = 0; i < 5; i++) {
      const a = id();
      const proc = await runner.launch({ attemptId: a, argv: ['sleep', '1000'], env: { PATH } });
      const done = collect(proc);
      expect(processesOf(a).map((p) => p.pid)).toContain(proc.pid);
      await proc.shutdown(2000);
      expect((await done).status).toMatchObject({ exitCode: 143, signal: 'SIGTERM' });
      expect(processesOf(a)).toEqual([]);
      await proc.dispose();
    }
  });

  it('a missing program is a launch error (127), before anything runs', async () => {
    await expect(runner.launch({ attemptId: id(), argv: ['no-such-program-here'], env: { PATH } })).rejects.toMatchObject({ exitCode: 127, message: expect.stringMatching(/not found/) });
  });

  it('refuses an attempt that asks for limits it cannot enforce, saying which', async () => {
    const a = id();
    await expect(runner.launch({ attemptId: a, argv: ['true'], env: { PATH }, resources: { memoryMb: 64, pids: 10 } })).rejects.toMatchObject({
      exitCode: 125,
      message: expect.stringMatching(/cannot enforce resources\.memoryMb, resources\.pids/),
    });
    await expect(runner.launch({ attemptId: id(), argv: ['true'], env: { PATH }, resources: { network: false } })).rejects.toThrow(/resources\.network: false/);
    expect(processesOf(a)).toEqual([]);
    // network: true asks for nothing this runner lacks.
    const ok = await runner.launch({ attemptId: id(), argv: ['true'], env: { PATH }, resources: { network: true } });
    expect((await collect(ok)).status.exitCode).toBe(0);
    await ok.dispose();
  });

  it('closing the launcher kills every process of its jobs, even one that left the session', async () => {
    const a = id();
    const proc = await runner.launch({ attemptId: a, argv: ['sh', '-c', 'setsid sleep 1000 & sleep 1000 & wait'], env: { PATH } });
    const done = collect(proc);
    await waitFor('the sleeps', () => processesOf(a).length >= 3);
    await runner.close();
    await waitFor('nothing of the job', () => processesOf(a).length === 0, 5000);
    expect((await done).status.signal).toBe('SIGKILL');
    await proc.dispose();
    // The next launch starts a new launcher.
    const again = await runner.launch({ attemptId: id(), argv: ['true'], env: { PATH } });
    expect((await collect(again)).status.exitCode).toBe(0);
    await again.dispose();
  });
});
