import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JobSpec } from '../../../../../libs/contracts/src';
import type { ExitStatus, RunningProcess } from '../../core/process-runner.port';
import { ATTEMPT_MARKER } from '../node-process-runner';
import { hasEnvEntry, listProcesses } from '../proc-scan';
import type { CgroupDriver } from './cgroup-driver';
import { CgroupV1Driver } from './cgroup-v1';
import { CgroupV2Driver } from './cgroup-v2';
import { findLauncher } from '../launcher/launcher-build';
import { LauncherHandle, probeSandbox } from '../launcher/launcher-client';
import { detectSandbox, hostAllowsSandbox, SandboxUnavailableError } from './detect';
import { cgroupMounts, ownCgroups } from './host';
import { SandboxRunner } from './sandbox-runner';

/**
 * The sandbox against the real kernel: needs root, util-linux and a writable cgroup
 * hierarchy of the kind under test. Each suite says in its title why it is skipped.
 */

// The job user must be able to reach its workspace: the temp root is world-searchable.
const root = mkdtempSync(join(tmpdir(), 'jobline-sandbox-'));
chmodSync(root, 0o755);
const executorId = `t${process.pid}`;

const launcher = findLauncher();

function prepare(kind: 'cgroup-v1' | 'cgroup-v2', workRoot = join(root, kind)): { driver: CgroupDriver; runner: SandboxRunner; workRoot: string } | string {
  const host = hostAllowsSandbox();
  if (host) return host;
  if ('reason' in launcher) return launcher.reason;
  const failed = probeSandbox(launcher.path, 10001, 10001);
  if (failed) return failed;
  mkdirSync(workRoot, { recursive: true });
  const probe = kind === 'cgroup-v1' ? CgroupV1Driver.probe : CgroupV2Driver.probe;
  const driver = probe({ executorId: `${executorId}-${kind.slice(-2)}`, workRoot });
  if ('reason' in driver) return driver.reason;
  return { driver, workRoot, runner: new SandboxRunner({ workRoot, driver, launcher: new LauncherHandle(launcher.path), drainMs: 100 }) };
}

afterAll(() => rmSync(root, { recursive: true, force: true }));

let seq = 0;
const attemptId = () => `a${process.pid}-${++seq}`;

interface Finished {
  status: ExitStatus;
  stdout: string;
  stderr: string;
}

async function collect(proc: RunningProcess): Promise<Finished> {
  const read = async (s: AsyncIterable<Uint8Array>) => {
    const parts: Buffer[] = [];
    for await (const c of s) parts.push(Buffer.from(c));
    return Buffer.concat(parts).toString();
  };
  const [status, stdout, stderr] = await Promise.all([proc.wait(), read(proc.stdout), read(proc.stderr)]);
  return { status, stdout, stderr };
}

/** Host processes that carry an attempt's marker (zombies, which hold nothing, aside). */
function processesOf(id: string): number[] {
  return listProcesses()
    .filter((p) => p.state !== 'Z' && hasEnvEntry(p.pid, `${ATTEMPT_MARKER}=${id}`))
    .map((p) => p.pid);
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function listen(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.end();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port, connections: () => n })),
  );
}

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

for (const kind of ['cgroup-v1', 'cgroup-v2'] as const) {
  const setup = prepare(kind);
  const title = typeof setup === 'string' ? `sandbox ${kind} (SKIPPED: ${setup})` : `sandbox ${kind}`;

  (typeof setup === 'string' ? describe.skip : describe)(title, () => {
    const { runner, driver } = setup as Exclude<typeof setup, string>;
    const setup2 = () => setup as Exclude<typeof setup, string>;

    afterAll(async () => {
      await runner.cleanupLeftovers();
      await runner.close();
      await driver.removeParent();
    });

    async function run(argv: string[], resources?: JobSpec['resources'], env: Record<string, string> = {}): Promise<Finished & { id: string }> {
      const id = attemptId();
      const proc = await runner.launch({ attemptId: id, argv, env: { PATH, ...env }, resources });
      const done = await collect(proc);
      await proc.dispose();
      return { ...done, id };
    }

    it('reports exit codes, and signals as 128 + n with the name', async () => {
      expect((await run(['sh', '-c', 'exit 3'])).status).toMatchObject({ exitCode: 3, signal: null, oomKilled: false });
      expect((await run(['sh', '-c', 'kill -TERM $$'])).status).toMatchObject({ exitCode: 143, signal: 'SIGTERM' });
    });

    it('runs as an unprivileged user, in its own cgroup, seeing only its own processes and a clean environment', async () => {
      const { stdout, id } = await run(['sh', '-c', 'id -u; id -g; echo ---; cat /proc/self/cgroup; echo ---; ls /proc | grep -c "^[0-9]"; echo ---; env']);
      const [ids, cgroups, procCount, env] = stdout.split('---\n');
      expect(ids.trim().split('\n')).toEqual(['10001', '10001']);
      // Every controller line of ours names jobline/<executor>/<attempt>.
      const lines = cgroups.trim().split('\n');
      expect(driver.parentName).toMatch(new RegExp(`^jobline/${executorId}-${kind.slice(-2)}\\.[0-9a-f]{12}$`));
      const ours = lines.filter((l) => l.endsWith(`/${driver.parentName}/${id}`));
      expect(ours.length).toBeGreaterThanOrEqual(kind === 'cgroup-v1' ? 4 : 1);
      // The init, the shell, ls and grep: nothing of the host.
      expect(Number(procCount.trim())).toBeLessThanOrEqual(5);
      const names = env
        .trim()
        .split('\n')
        .map((l) => l.slice(0, l.indexOf('=')))
        .sort();
      expect(names).toEqual(['HOME', ATTEMPT_MARKER, 'PATH', 'PWD'].sort()); // PWD is the job shell's own
    });

    it('has no capabilities, no new privileges, no supplementary groups, and cannot become root', async () => {
      // A set-uid-root program the job can run: it works outside (euid 0), not inside.
      const dir = mkdtempSync('/var/tmp/jobline-suid-');
      chmodSync(dir, 0o755);
      const suid = join(dir, 'id');
      writeFileSync(suid, readFileSync('/usr/bin/id'));
      chmodSync(suid, 0o4755);
      let done: Finished;
      try {
        expect(spawnSync(suid, ['-u'], { uid: 10001, gid: 10001, encoding: 'utf8' }).stdout.trim()).toBe('0');
        done = await run(['sh', '-c', `grep -E "^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs):" /proc/self/status; echo "euid $(${suid} -u)"`]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const { stdout, status } = done;
      expect(status.exitCode).toBe(0);
      expect(stdout).toContain('euid 10001\n');
      const f = Object.fromEntries(stdout.trim().split('\n').map((l) => l.split(/:\s*/, 2) as [string, string]));
      expect(f.Uid.split(/\s+/)).toEqual(['10001', '10001', '10001', '10001']);
      expect(f.Gid.split(/\s+/)).toEqual(['10001', '10001', '10001', '10001']);
      expect(f.Groups ?? '').toBe('');
      for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(f[cap]).toBe('0000000000000000');
      expect(f.NoNewPrivs).toBe('1');
    });

    it('lets the job reopen its own output, and shows no other workspace', async () => {
      const other = attemptId();
      mkdirSync(join(setup2().workRoot, other));
      try {
        const { stdout, stderr, status } = await run(['sh', '-c', `echo to-stdout > /dev/stdout; echo to-stderr > /proc/self/fd/2; ls -A "${setup2().workRoot}"`]);
        expect(status.exitCode).toBe(0);
        expect(stderr).toBe('to-stderr\n');
        const [line, ...listed] = stdout.trim().split('\n');
        expect(line).toBe('to-stdout');
        expect(listed).toHaveLength(1);
        expect(listed[0]).not.toBe(other);
      } finally {
        rmSync(join(setup2().workRoot, other), { recursive: true, force: true });
      }
    });

    it('passes only the given variables, and gives a private /tmp and its own workspace as HOME', async () => {
      const { stdout } = await run(['/usr/bin/env'], undefined, { GREETING: 'hello world' });
      const vars = stdout.trim().split('\n');
      expect(vars.map((l) => l.slice(0, l.indexOf('='))).sort()).toEqual(['GREETING', 'HOME', ATTEMPT_MARKER, 'PATH'].sort());
      expect(vars).toEqual(expect.arrayContaining([`GREETING=hello world`, `PATH=${PATH}`]));
      const hostFile = join(tmpdir(), `jobline-host-only-${process.pid}`);
      writeFileSync(hostFile, 'host');
      try {
        const tmp = await run(['sh', '-c', `touch /tmp/mine && ls -A /tmp && test ! -e ${hostFile} && touch "$HOME/f" && pwd && echo "$HOME" && stat -c %u "$HOME"`]);
        expect(tmp.status.exitCode).toBe(0);
        const lines = tmp.stdout.trim().split('\n');
        const [pwd, home, owner] = lines.slice(-3);
        expect(lines).toContain('mine');
        expect(pwd).toBe(home);
        expect(owner).toBe('10001');
        expect(existsSync('/tmp/mine')).toBe(false);
      } finally {
        rmSync(hostFile, { force: true });
      }
    });

    it('memoryMb 64 and 300 MB allocated: killed, oomKilled, and the next job is unaffected', async () => {
      const [oom, other] = await Promise.all([run(['sh', '-c', 'head -c 300M /dev/zero | tail'], { memoryMb: 64 }), run(['sh', '-c', 'echo fine'])]);
      expect(oom.status.exitCode).not.toBe(0);
      expect(oom.status.oomKilled).toBe(true);
      expect(oom.status.usage?.maxRssBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
      expect(other.status).toMatchObject({ exitCode: 0, oomKilled: false });
      expect(other.stdout).toBe('fine\n');
    });

    it('pids 32 and a (bounded) fork bomb: contained, then nothing left after a stop', async () => {
      const id = attemptId();
      // 100 forks that each stay (a shell would exit at its first failed fork).
      const bomb = [
        'import subprocess, time',
        'ok = failed = 0',
        'for i in range(100):',
        '    try:',
        '        subprocess.Popen(["sleep", "1000"]); ok += 1',
        '    except OSError:',
        '        failed += 1',
        'print(ok, failed, flush=True)',
        'time.sleep(1000)',
      ].join('\n');
      const proc = await runner.launch({ attemptId: id, argv: ['python3', '-c', bomb], env: { PATH }, resources: { pids: 32 } });
      const errors = (async () => {
        for await (const _ of proc.stderr) void _;
      })();
      // The loop's summary comes once every fork has been tried; the children stay.
      let line = '';
      for await (const chunk of proc.stdout) {
        line += Buffer.from(chunk).toString();
        if (line.includes('\n')) break;
      }
      const [ok, failed] = line.trim().split(' ').map(Number);
      expect(ok).toBeLessThan(32);
      expect(failed).toBe(100 - ok);
      const running = processesOf(id).length;
      expect(running).toBeGreaterThan(1);
      expect(running).toBeLessThanOrEqual(32);
      await proc.shutdown(500);
      await proc.wait();
      await errors;
      expect(processesOf(id)).toEqual([]);
      await proc.dispose();
    });

    it('cpu 0.2 and a 3 s busy loop: about 0.6 s of cpu time, not 3 s', async () => {
      const { status } = await run(['timeout', '3', 'sh', '-c', 'while :; do :; done'], { cpu: 0.2 });
      expect(status.usage).not.toBeNull();
      expect(status.usage!.cpuMs).toBeGreaterThan(50);
      expect(status.usage!.cpuMs).toBeLessThan(1500);
    });

    it('network false: a loopback port of the host is unreachable; network true: it is reachable', async () => {
      const { server, port, connections } = await listen();
      try {
        const connect = ['python3', '-c', `import socket; socket.create_connection(("127.0.0.1", ${port}), timeout=5).close(); print("connected")`];
        const isolated = await run(connect, { network: false });
        expect(isolated.status.exitCode).not.toBe(0);
        expect(isolated.stderr).toMatch(/refused/i);
        expect(connections()).toBe(0);
        const open = await run(connect, { network: true });
        expect(open.status.exitCode).toBe(0);
        expect(open.stdout).toBe('connected\n');
        expect(connections()).toBe(1);
      } finally {
        server.close();
      }
    });

    it('network false: every attempt has a network namespace of its own with loopback up, even those started at once from the spare ones', async () => {
      // One attempt first, then a pause: the launcher has made its spare namespaces by then.
      expect((await run(['true'])).status.exitCode).toBe(0);
      await new Promise((r) => setTimeout(r, 300));
      // Each binds the same loopback port and holds it while the others run: in a shared namespace all but one would fail.
      const bind = [
        'python3',
        '-c',
        'import os, socket, time\ns = socket.socket(); s.bind(("127.0.0.1", 7777)); s.listen(1)\nc = socket.create_connection(("127.0.0.1", 7777), timeout=5)\nprint(os.readlink("/proc/self/ns/net")); time.sleep(1)',
      ];
      const all = await Promise.all(Array.from({ length: 4 }, () => run(bind)));
      for (const r of all) expect(r.status.exitCode).toBe(0);
      const namespaces = all.map((r) => r.stdout.trim());
      for (const ns of namespaces) expect(ns).toMatch(/^net:\[\d+\]$/);
      expect(new Set(namespaces).size).toBe(4);
      expect(namespaces).not.toContain(readlinkSync('/proc/self/ns/net'));
    });

    it("stopping sh -c 'sleep 1000 & sleep 1000 & wait' leaves no sleep on the host and removes the cgroup", async () => {
      const id = attemptId();
      const proc = await runner.launch({ attemptId: id, argv: ['sh', '-c', 'sleep 1000 & sleep 1000 & wait'], env: { PATH } });
      const done = collect(proc);
      await waitFor('both sleeps', () => processesOf(id).length >= 3);
      await proc.shutdown(1000);
      const { status, stderr } = await done;
      expect(status.exitCode).toBeGreaterThan(0);
      expect(stderr).not.toMatch(/unshare/);
      expect(processesOf(id)).toEqual([]);
      await proc.dispose();
      expect(driver.list()).not.toContain(id);
    });

    it('a stop right after the launch reaches the job (the launch returns once the job runs in its cgroup)', async () => {
      for (let i = 0; i < 5; i++) {
        const id = attemptId();
        const proc = await runner.launch({ attemptId: id, argv: ['sleep', '1000'], env: { PATH } });
        const done = collect(proc);
        expect(driver.open(id).pids().length).toBeGreaterThanOrEqual(2); // the init and the job
        await proc.shutdown(2000);
        expect((await done).status).toMatchObject({ exitCode: 143, signal: 'SIGTERM' });
        expect(processesOf(id)).toEqual([]);
        await proc.dispose();
      }
    });

    it('a background child holding the output open does not keep the attempt alive', async () => {
      const { status, stdout, id } = await run(['sh', '-c', '(sleep 1000 &); echo main done']);
      expect(status.exitCode).toBe(0);
      expect(stdout).toBe('main done\n');
      expect(processesOf(id)).toEqual([]);
    });

    it('signal() reaches the job behind the init', async () => {
      const id = attemptId();
      const proc = await runner.launch({ attemptId: id, argv: ['sleep', '1000'], env: { PATH } });
      const done = collect(proc);
      await waitFor('the sleep', () => processesOf(id).length >= 1);
      proc.signal('SIGTERM');
      expect((await done).status).toMatchObject({ exitCode: 143, signal: 'SIGTERM' });
      await proc.dispose();
    });

    it('a missing program is a launch error, as without the sandbox', async () => {
      await expect(runner.launch({ attemptId: attemptId(), argv: ['no-such-program-here'], env: { PATH } })).rejects.toThrow(/not found/);
    });

    it('dispose removes the cgroup and the workspace, empty or not', async () => {
      const empty = await run(['true']);
      const full = await run(['sh', '-c', 'mkdir -p a/b && echo x > a/b/f && echo y > g']);
      for (const r of [empty, full]) {
        expect(r.status.exitCode).toBe(0);
        expect(driver.list()).not.toContain(r.id);
        expect(existsSync(join(setup2().workRoot, r.id))).toBe(false);
      }
    });

    it("when the launcher's remover is killed, the launcher removes the cgroups and workspaces itself, and starts go on", async () => {
      await run(['true']);
      const launcherPid = (await runner.launcher.get()).pid;
      const parentOf = (pid: number) => {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        } catch {
          return -1;
        }
      };
      // Between attempts the remover is the launcher's only child.
      const children = listProcesses().filter((p) => parentOf(p.pid) === launcherPid && p.state !== 'Z');
      expect(children).toHaveLength(1);
      process.kill(children[0].pid, 'SIGKILL');
      await waitFor('the remover gone', () => parentOf(children[0].pid) !== launcherPid);
      const after = await Promise.all([run(['true']), run(['sh', '-c', 'echo x > f']), run(['true'])]);
      for (const r of after) {
        expect(r.status.exitCode).toBe(0);
        expect(driver.list()).not.toContain(r.id);
        expect(existsSync(join(setup2().workRoot, r.id))).toBe(false);
      }
      expect((await runner.launcher.get()).pid).toBe(launcherPid);
    });

    it('a cgroup the launcher cannot make or configure is a launch error (125): nothing runs, nothing is left', async () => {
      // A limit the kernel refuses: the write fails in the attempt's init, before anything of the job runs.
      const id = attemptId();
      const refused = runner.launch({ attemptId: id, argv: ['sh', '-c', `touch ${join(root, 'ran')}`], env: { PATH }, resources: { cpu: 1e9 } });
      await expect(refused).rejects.toMatchObject({ exitCode: 125, message: expect.stringMatching(/cannot create the attempt's cgroup: write .*cpu/) });
      expect(existsSync(join(root, 'ran'))).toBe(false);
      expect(driver.list()).not.toContain(id);
      expect(existsSync(join(setup2().workRoot, id))).toBe(false);
    });

    it('writes each limit to the cgroup', async () => {
      const id = attemptId();
      const resources = { cpu: 0.5, memoryMb: 100, pids: 50, ioReadBps: 1_000_000, ioWriteBps: 2_000_000 };
      const proc = await runner.launch({ attemptId: id, argv: ['true'], env: { PATH }, resources });
      await collect(proc);
      const own = ownCgroups();
      const mounts = cgroupMounts();
      const file = (controller: string, name: string) => {
        const m = kind === 'cgroup-v1' ? mounts.find((x) => x.controllers.includes(controller)) : mounts.find((x) => x.fstype === 'cgroup2');
        const base = join(m!.mountpoint, own.get(kind === 'cgroup-v1' ? controller : '')!);
        return readFileSync(join(base, driver.parentName, id, name), 'utf8').trim();
      };
      const mb100 = String(100 * 1024 * 1024);
      if (kind === 'cgroup-v1') {
        expect([file('cpu', 'cpu.cfs_quota_us'), file('cpu', 'cpu.cfs_period_us')]).toEqual(['50000', '100000']);
        expect(file('memory', 'memory.limit_in_bytes')).toBe(mb100);
        if (!runner.note?.includes('memsw')) expect(file('memory', 'memory.memsw.limit_in_bytes')).toBe(mb100);
        expect(file('pids', 'pids.max')).toBe('50');
        if (!runner.note?.includes('io limits')) {
          expect(file('blkio', 'blkio.throttle.read_bps_device')).toMatch(/^\d+:\d+ 1000000$/);
          expect(file('blkio', 'blkio.throttle.write_bps_device')).toMatch(/^\d+:\d+ 2000000$/);
        }
      } else {
        expect(file('', 'cpu.max')).toBe('50000 100000');
        expect(file('', 'memory.max')).toBe(mb100);
        expect(file('', 'pids.max')).toBe('50');
        if (!runner.note?.includes('io limits')) expect(file('', 'io.max')).toMatch(/rbps=1000000 wbps=2000000/);
      }
      await proc.dispose();
    });

    it('a restarted executor kills and removes what a crashed one left: processes, cgroups, workspaces', async () => {
      const id = attemptId();
      const proc = await runner.launch({ attemptId: id, argv: ['sh', '-c', 'sleep 1000 & sleep 1000'], env: { PATH } });
      const done = collect(proc);
      await waitFor('the sleeps', () => processesOf(id).length >= 3);
      // A second runner on the same executor id and work root plays the restarted executor.
      const again = prepare(kind) as Exclude<typeof setup, string>;
      await again.runner.cleanupLeftovers();
      expect(processesOf(id)).toEqual([]);
      expect(again.driver.list()).not.toContain(id);
      expect(existsSync(join(again.workRoot, id))).toBe(false);
      expect((await done).status.exitCode).not.toBe(0);
      await proc.dispose();
    });

    it('an executor with the same id on another work root leaves those attempts alone', async () => {
      const id = attemptId();
      const proc = await runner.launch({ attemptId: id, argv: ['sh', '-c', 'sleep 1000 & sleep 1000'], env: { PATH } });
      const done = collect(proc);
      await waitFor('the sleeps', () => processesOf(id).length >= 3);
      // Same executor id, another data folder: a second dev stack, both `local`.
      const other = prepare(kind, join(root, `${kind}-elsewhere`)) as Exclude<typeof setup, string>;
      try {
        expect(other.driver.parentName).not.toBe(driver.parentName);
        await other.runner.cleanupLeftovers();
        expect(processesOf(id).length).toBeGreaterThanOrEqual(3);
        expect(driver.list()).toContain(id);
      } finally {
        await proc.shutdown(500);
        await done;
        await proc.dispose();
        await other.driver.removeParent();
      }
      expect(processesOf(id)).toEqual([]);
    });
  });
}

describe('sandbox detection', () => {
  it('mode none runs unsandboxed and says so (JobStarted carries the note)', () => {
    const { runner, detection } = detectSandbox({ mode: 'none', executorId: 'det', workRoot: join(root, 'det-none') });
    expect(detection.kind).toBe('none');
    expect(runner.kind).toBe('none');
    expect(runner.note).toMatch(/turned off by configuration \(JOBLINE_SANDBOX=none\)/);
    if (process.geteuid?.() === 0) expect(runner.note).toMatch(/jobs run as root/);
  });

  it('mode required refuses to start without a full sandbox, saying why', () => {
    const attempt = () => detectSandbox({ mode: 'required', executorId: 'det', workRoot: join(root, 'det-req'), launcherPath: '/bin/false' });
    expect(attempt).toThrow(SandboxUnavailableError);
    expect(attempt).toThrow(/JOBLINE_SANDBOX=required but no sandbox can be set up: .+/);
  });

  (process.geteuid?.() === 0 ? it : it.skip)(
    `mode auto as root refuses to start when the sandbox cannot be set up${process.geteuid?.() === 0 ? '' : ' (SKIPPED: needs root)'}`,
    () => {
      // A launcher whose probe fails: as root a sandbox should work, so no fallback to jobs as root.
      const attempt = () => detectSandbox({ mode: 'auto', executorId: 'det', workRoot: join(root, 'det-auto-broken'), launcherPath: '/bin/false' });
      expect(attempt).toThrow(SandboxUnavailableError);
      expect(attempt).toThrow(/should allow it \(the sandbox probe failed: .+\).*JOBLINE_SANDBOX=none/);
    },
  );

  it('mode auto picks what the host allows and names why anything stronger was refused', async () => {
    const { runner, detection } = detectSandbox({ executorId: 'jobline-detect-test', workRoot: join(root, 'det-auto') });
    if (runner instanceof SandboxRunner) await runner.removeParent();
    expect(runner.kind).toBe(detection.kind);
    if (detection.kind === 'none') expect(detection.note).toMatch(/^no sandbox \(.+\)/);
    else expect(['cgroup-v1', 'cgroup-v2']).toContain(detection.kind);
    if (detection.kind === 'cgroup-v1') expect(detection.refused.join(' ')).toMatch(/v2/);
  });
});
