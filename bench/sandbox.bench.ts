/**
 * The local sandbox against a bare spawn, with tiny jobs (`true`), every figure from this run:
 *  - bareSpawn: child_process.spawn('true') → exit, at the given concurrency;
 *  - launchers: each way of starting `true` in pid/mount/ipc/uts/net namespaces as uid 10001
 *    that we measured (no cgroup: its cost, ≈0.3 ms, is the same for all), with what each
 *    lacks of the sandbox's properties; `jobline-launcher` is the one the sandbox uses;
 *  - sandboxRunner: SandboxRunner.launch → wait → dispose (workspace, cgroup with limits,
 *    namespaces, mounts, privilege drop, clean-up), with each stage's p50/p99 (stages);
 *  - executor: the same jobs through the Executor over NATS, every finished report stored.
 * Overheads are p50/p99 minus the bare spawn's. For the SandboxRunner, CPU per attempt too
 * (the benchmark's own process, and the launcher with its remover and the inits and jobs it reaped, from
 * /proc): unlike jobs/s, it hardly moves when other work shares the machine. Needs root and cgroups; elsewhere it says why
 * and measures nothing. On a shared machine the figures are indicative only.
 *
 *   npm run bench -- sandbox [--jobs=N] [--capacity=N]
 *   node dist/bench/sandbox.bench.js [jobs] [capacity]      (alone; prints one JSON line)
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { subjects, type AttemptReport, type RunAttemptMessage } from '../libs/contracts/src';
import { ensureStreams } from '../libs/messaging/src/streams';
import { startNatsServer } from '../libs/messaging/src/nats-server';
import { tempDir } from '../libs/testing/src/temp-dir';
import { withDefaults } from './bench-kit';
import { Executor } from '../apps/executor/src/core/executor';
import type { ProcessRunner } from '../apps/executor/src/core/process-runner.port';
import { Launcher } from '../apps/executor/src/node/launcher/launcher-client';
import { findLauncher } from '../apps/executor/src/node/launcher/launcher-build';
import { detectSandbox } from '../apps/executor/src/node/sandbox/detect';
import { which } from '../apps/executor/src/node/sandbox/host';
import { SandboxRunner } from '../apps/executor/src/node/sandbox/sandbox-runner';
import { FileReportOutbox, outboxDir } from '../apps/executor/src/node/file-report-outbox';
import { OrchestratorPeer } from '../apps/executor/src/testing/orchestrator-peer';

const silent = { info: () => undefined, warn: () => undefined, error: (f: object, m: string) => console.error(m, f) };
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SandboxBenchOptions {
  /** Jobs per measurement (default 1,000). */
  jobs: number;
  /** Attempts at a time (default 4). */
  capacity: number;
}

export const SANDBOX_DEFAULTS: SandboxBenchOptions = { jobs: 1000, capacity: 4 };

interface Measured {
  jobsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

function quantile(sorted: number[], q: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] * 100) / 100;
}

/** Runs `one` jobs times with `concurrency` in flight; jobs/s and latency quantiles of one call. */
async function measure(jobs: number, concurrency: number, one: (i: number) => Promise<void>): Promise<Measured> {
  const times: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < jobs; i = next++) {
        const s = performance.now();
        await one(i);
        times.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  times.sort((a, b) => a - b);
  return { jobsPerSec: Math.round(jobs / seconds), p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99) };
}

function spawnOk(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.resume();
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err.trim()}`))));
  });
}

const spawnTrue = () => spawnOk('true', []);

/** A process' /proc/<pid>/stat fields after the command name (f[1] is the parent pid). */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime, stime, cutime, cstime in ms (USER_HZ is 100 on Linux). */
const cpuMsOfFields = (f: string[]) => ([11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i]), 0) * 1000) / 100;

/**
 * CPU ms a process used, itself and the children it reaped, plus its live children (the
 * launcher's remover, which lives as long as it does).
 */
function cpuMsOf(pid: number): number {
  const own = statFields(pid);
  if (!own) return 0;
  let ms = cpuMsOfFields(own);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === pid) ms += cpuMsOfFields(f);
  }
  return ms;
}

interface Alternative {
  name: string;
  /** The sandbox properties this way of launching does not provide by itself. */
  lacks: string[];
  one: () => Promise<void>;
}

/** The launchers measured side by side (issue 12): each starts `true` in the five namespaces as uid 10001. */
function alternatives(dir: string, launcher: Launcher | null): { run: Alternative[]; skipped: Record<string, string> } {
  const run: Alternative[] = [];
  const skipped: Record<string, string> = {};
  const tool = (n: string) => which(n);
  const ns = ['--pid', '--mount', '--ipc', '--uts', '--net', '--fork', '--mount-proc'];
  const setpriv = ['--reuid=10001', '--regid=10001', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs'];
  const fstab = join(dir, 'fstab');
  writeFileSync(fstab, 'jobline-tmp /tmp tmpfs rw,nosuid,nodev,mode=1777 0 0\njobline-shm /dev/shm tmpfs rw,nosuid,nodev,mode=1777 0 0\n');
  if (tool('unshare') && tool('setpriv') && tool('ip')) {
    // The chain the sandbox used before the launcher: unshare → sh → mount → ip → setpriv → env → job.
    run.push({
      name: 'util-linux chain (unshare, sh, mount, ip, setpriv, env)',
      lacks: [],
      one: () => spawnOk('unshare', [...ns, '--', '/bin/sh', '-c', `mount -a -T ${fstab} && ip link set lo up && exec setpriv ${setpriv.join(' ')} -- env -i PATH=/usr/bin:/bin true`]),
    });
    run.push({
      name: 'util-linux unshare, one exec (--setuid --setgid --mount-proc --kill-child)',
      lacks: ['private /tmp and /dev/shm', 'loopback up', 'no_new_privs', 'empty bounding set', 'cgroup join before exec (needs one more program)'],
      one: () => spawnOk('unshare', [...ns, '--setuid', '10001', '--setgid', '10001', '--kill-child', '--', '/bin/true']),
    });
  } else skipped['util-linux'] = 'unshare, setpriv or ip not installed';
  const bwrap = tool('bwrap');
  if (bwrap && tool('setpriv')) {
    // As root, bwrap maps the job's uid to root on the host; it must itself run as the job user, in a user namespace.
    const args = [...setpriv, bwrap, '--unshare-user', '--uid', '10001', '--gid', '10001', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-net', '--die-with-parent', '--dev-bind', '/', '/', '--proc', '/proc', '--tmpfs', '/tmp', '--tmpfs', '/dev/shm', '--clearenv', '/bin/true'];
    const probe = spawnSync('setpriv', args, { encoding: 'utf8' });
    if (probe.status === 0) {
      run.push({
        name: 'bubblewrap (setpriv → bwrap --unshare-user)',
        lacks: ['cgroup join before exec (needs one more program)', 'needs unprivileged user namespaces (a user namespace around every job)'],
        one: () => spawnOk('setpriv', args),
      });
    } else skipped.bubblewrap = `bwrap cannot run here: ${probe.stderr.trim()}`;
  } else skipped.bubblewrap = 'bwrap not installed';
  skipped['OCI runtimes (crun, runc)'] =
    'not run by this benchmark: they need an OCI bundle with its own rootfs per attempt; by hand on the 2-core dev machine, runc 1.1.5 made 39 jobs/s (p50 99 ms) and crun 1.8.1 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported")';
  if (launcher) {
    const ws = join(dir, 'ws');
    mkdirSync(ws, { recursive: true });
    chownSync(ws, 10001, 10001);
    run.push({
      name: 'jobline-launcher (long-lived, forks from a small process; the sandbox uses it)',
      lacks: [],
      one: async () => {
        const p = await launcher.run({ mode: 'sandbox', uid: 10001, gid: 10001, isolateNetwork: true, mask: '', workspace: ws, cwd: ws, program: '/bin/true', procsFiles: [], argv: ['true'], env: { PATH } });
        p.stdout.resume();
        p.stderr.resume();
        const e = await p.exited;
        if (e.code !== 0) throw new Error(`jobline-launcher: true exited ${e.code ?? e.signal}`);
      },
    });
  }
  return { run, skipped };
}

const overhead = (m: Measured, bare: Measured) => ({ p50Ms: Math.round((m.p50Ms - bare.p50Ms) * 100) / 100, p99Ms: Math.round((m.p99Ms - bare.p99Ms) * 100) / 100 });

/** Per attempt, where the SandboxRunner's time goes: launch (workspace, cgroup, namespaces, until the job runs), run (until its exit is known and its pipes ended), dispose (cgroup and workspace removed). */
interface Stages {
  launch: number[];
  run: number[];
  dispose: number[];
}

async function runnerOnce(runner: ProcessRunner, id: string, stages?: Stages): Promise<void> {
  const t0 = performance.now();
  const proc = await runner.launch({ attemptId: id, argv: ['true'], env: { PATH }, resources: { cpu: 1, memoryMb: 256, pids: 64 } });
  const t1 = performance.now();
  const drain = async (s: AsyncIterable<Uint8Array>) => {
    for await (const _ of s) void _;
  };
  const [status] = await Promise.all([proc.wait(), drain(proc.stdout), drain(proc.stderr)]);
  const t2 = performance.now();
  await proc.dispose();
  stages?.launch.push(t1 - t0);
  stages?.run.push(t2 - t1);
  stages?.dispose.push(performance.now() - t2);
  if (status.exitCode !== 0) throw new Error(`sandboxed true exited ${status.exitCode}`);
}

const stageQuantiles = (stages: Stages) =>
  Object.fromEntries(
    Object.entries(stages).map(([name, times]: [string, number[]]) => {
      const sorted = [...times].sort((a, b) => a - b);
      return [name, { p50Ms: quantile(sorted, 0.5), p99Ms: quantile(sorted, 0.99) }];
    }),
  );

export async function runSandboxBench(options: Partial<SandboxBenchOptions> = {}): Promise<object> {
  const { jobs, capacity } = withDefaults(SANDBOX_DEFAULTS, options);
  const tmp = tempDir('jobline-bench-sandbox-');
  chmodSync(tmp.path, 0o755);
  const executorId = `bench${process.pid}`;
  const { runner, detection } = detectSandbox({ executorId, workRoot: join(tmp.path, 'work') });
  if (!(runner instanceof SandboxRunner)) {
    tmp.remove();
    return { jobs, capacity, skipped: `no sandbox on this host: ${detection.refused.join('; ')}` };
  }
  const found = findLauncher();
  const launcher = 'path' in found ? await Launcher.start(found.path) : null;
  try {
    const alt = alternatives(tmp.path, launcher);
    // Warm-up of every path (page cache, first exec of each tool).
    await measure(50, capacity, spawnTrue);
    for (const a of alt.run) await measure(20, capacity, a.one);
    await measure(50, capacity, (i) => runnerOnce(runner, `warm-${i}`));
    const bare = await measure(jobs, capacity, spawnTrue);
    const launchers = [];
    for (const a of alt.run) {
      const m = await measure(jobs, capacity, a.one);
      launchers.push({ name: a.name, ...m, overheadVsBare: overhead(m, bare), lacks: a.lacks });
    }
    const runnerLauncher = await runner.launcher.get();
    const cpu0 = process.cpuUsage();
    const launcherCpu0 = cpuMsOf(runnerLauncher.pid);
    const stages: Stages = { launch: [], run: [], dispose: [] };
    const sandboxed = await measure(jobs, capacity, (i) => runnerOnce(runner, `r-${i}`, stages));
    const ownCpu = process.cpuUsage(cpu0);
    const cpuPerAttemptMs = {
      executorProcess: Math.round(((ownCpu.user + ownCpu.system) / 1000 / jobs) * 1000) / 1000,
      launcherInitsAndJobs: Math.round(((cpuMsOf(runnerLauncher.pid) - launcherCpu0) / jobs) * 1000) / 1000,
    };
    const viaExecutor = await executorThroughput(runner, executorId, tmp.path, jobs, capacity);
    return {
      jobs,
      capacity,
      sandbox: detection.kind,
      note: detection.note ?? null,
      bareSpawn: bare,
      launchers,
      launchersSkipped: alt.skipped,
      sandboxRunner: { ...sandboxed, overheadVsBare: overhead(sandboxed, bare), cpuPerAttemptMs, stages: stageQuantiles(stages) },
      perAttemptOverheadP50Ms: overhead(sandboxed, bare).p50Ms,
      executor: viaExecutor,
      target: { sandboxedJobsPerSec: 300 },
    };
  } finally {
    await launcher?.close();
    await runner.cleanupLeftovers();
    await runner.close();
    await runner.removeParent().catch(() => undefined);
    tmp.remove();
  }
}

/** Tiny jobs queued at once on one sandboxed executor, until every finished report is stored. */
async function executorThroughput(runner: SandboxRunner, executorId: string, dir: string, jobs: number, capacity: number) {
  const server = await startNatsServer({ storeDir: join(dir, 'nats') });
  const nc = await connect({ servers: server.url });
  const js = jetstream(nc);
  await ensureStreams(await jetstreamManager(nc));
  // The orchestrator's side of claims and leases, without an event store.
  const peer = new OrchestratorPeer({ nc }).start();
  const outbox = new FileReportOutbox(outboxDir(join(dir, 'outbox'), executorId));
  const executor = new Executor({ nc, executorId, runner, outbox, capacity, runtime: 'node bench', logger: silent });
  await executor.start();
  let finished = 0;
  let failed = 0;
  let onFinished: () => void = () => undefined;
  const sub = nc.subscribe(subjects.reportsAll);
  void (async () => {
    for await (const m of sub) {
      const r = m.json<AttemptReport>();
      if (r.kind !== 'finished') continue;
      finished++;
      if (r.exitCode !== 0) failed++;
      onFinished();
    }
  })();
  const dispatch = () => {
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId: randomUUID(),
      owner: 'bench',
      attempt: 1,
      spec: { command: ['true'], priority: 'normal' },
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
      // Everything is queued at once here (a scheduler would send no more than the free slots): no start deadline.
      startBy: new Date(Date.now() + 3_600_000).toISOString(),
    };
    return js.publish(subjects.work(executorId), JSON.stringify(msg));
  };
  const allFinished = (n: number) =>
    new Promise<void>((resolve) => {
      onFinished = () => finished >= n && resolve();
      onFinished();
    });
  try {
    const t0 = performance.now();
    for (let i = 0; i < jobs; i++) await dispatch();
    await allFinished(jobs);
    return { jobsPerSec: Math.round(jobs / ((performance.now() - t0) / 1000)), failed };
  } finally {
    await executor.stop();
    peer.stop();
    sub.unsubscribe();
    await nc.close();
    await server.stop();
  }
}

if (require.main === module) {
  runSandboxBench({ jobs: Number(process.argv[2] ?? SANDBOX_DEFAULTS.jobs), capacity: Number(process.argv[3] ?? SANDBOX_DEFAULTS.capacity) }).then(
    (result) => console.log(JSON.stringify({ bench: 'sandbox', ...result })),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
