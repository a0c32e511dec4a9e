import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { decodeJobEvent, jobStreamName, subjects, type ExecutorHeartbeat, type JobEvent, type JobSpecInput, type LogStream } from '../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../libs/event-store/src';
import { connectNats } from '../../libs/messaging/src/connection';
import { readLogChunks, type SequencedLogChunk } from '../../libs/messaging/src/logs';
import { JetStreamPublisher } from '../../libs/messaging/src/publisher';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import type { Orchestrator } from '../../apps/orchestrator/src/orchestrator';
import { createOrchestratorApp } from '../../apps/orchestrator/src/orchestrator.module';
import { DENO_RUN_FLAGS, denoExecutorArgs, DENO_ENTRY } from '../../apps/executor/src/deno/deno-command';

/**
 * The core journeys with the executor running under Deno: a real nats-server, the
 * orchestrator on a SQLite store, and `deno run … main.deno.ts` as a separate process,
 * started exactly as the README says. Skips, saying why, when the deno binary cannot run.
 */

const ROOT = resolve(__dirname, '../..');
/** The deno dev dependency, or DENO_BIN to try another build. */
const DENO = process.env.DENO_BIN || join(ROOT, 'node_modules/.bin/deno');
const EXECUTOR_ID = 'deno-e2e';
const ATTEMPT_MARKER = 'JOBLINE_ATTEMPT';

function denoProblem(): string | null {
  if (!existsSync(DENO)) return `${DENO} is missing (the deno dev dependency is not installed: run npm ci, and allow its install script)`;
  const r = spawnSync(DENO, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return `${DENO} cannot run: ${r.error.message}`;
  if (r.status !== 0) return `${DENO} --version exited with ${r.status}: ${r.stderr.trim()}`;
  return null;
}

const problem = denoProblem();
if (problem) console.warn(`Deno executor journeys skipped: ${problem}`);
const describeWithDeno = problem ? describe.skip : describe;

const quiet = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const TERMINAL = ['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut'];

/**
 * Live processes whose command line is exactly `needle`, NULs read as spaces, argv[0] by its
 * basename: Deno.Command resolves a bare program name itself and passes the full path as argv[0]
 * (`/usr/bin/sleep 300`), where Node passes it as given (`sleep 300`). Zombies run nothing.
 */
function processesMatching(needle: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ').trim();
      if (cmdline.replace(/^\S*\//, '') === needle) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** A sleep duration no other process on the host has on its command line. */
const unique = (seconds: number) => `${seconds}.${process.pid}${Math.floor(Math.random() * 1e6)}`;

function killQuietly(target: number | undefined): void {
  if (!target || target === 1 || target === -1) return;
  try {
    process.kill(target, 'SIGKILL');
  } catch {
    // already gone
  }
}

describeWithDeno('executor under Deno: the core journeys through a real nats-server and orchestrator', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let store: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let app: INestMicroservice;
  let orchestrator: Orchestrator;
  let publisher: JetStreamPublisher;
  let deno: ChildProcess | undefined;
  let denoExit: Promise<number | null>;
  let denoOutput = '';
  let workRoot: string;
  const heartbeats: ExecutorHeartbeat[] = [];
  const strays: number[] = [];
  // What a crashed executor left: a recorded group carrying its attempt marker, and a pid recorded
  // for an attempt whose process is not ours (no marker) and must survive.
  const leftoverMark = unique(300);
  const innocentMark = unique(300);
  let leftover: ChildProcess;
  let innocent: ChildProcess;

  const env = () => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    DENO_DIR: join(dir.path, 'deno-cache'),
    DENO_NO_UPDATE_CHECK: '1',
    NO_COLOR: '1',
    JOBLINE_NATS_URL: server.url,
    JOBLINE_EXECUTOR_ID: EXECUTOR_ID,
    JOBLINE_EXECUTOR_CAPACITY: '4',
    JOBLINE_WORK_ROOT: workRoot,
    JOBLINE_GRACE_MS: '1000',
    // Without a sandbox, as root only when said so (the tests run as root here).
    ...(process.getuid?.() === 0 ? { JOBLINE_SANDBOX: 'none' } : {}),
    // In the executor's environment, never in a job's.
    JOBLINE_E2E_CANARY: 'must-not-leak',
  });

  beforeAll(async () => {
    dir = tempDir('jobline-deno-e2e-');
    workRoot = join(dir.path, 'work');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'deno-e2e' });
    js = jetstream(nc);
    publisher = new JetStreamPublisher(js);
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
    ({ app, orchestrator } = await createOrchestratorApp({ eventStore: store, checkpoints, nc, logger: quiet, cancelConfirmMs: 5000 }));

    const own = join(workRoot, EXECUTOR_ID);
    mkdirSync(join(own, 'job-a-1'), { recursive: true });
    mkdirSync(join(own, 'stale-attempt'));
    leftover = spawn('/bin/sh', ['-c', `sleep ${leftoverMark} & sleep ${leftoverMark}`], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: '/usr/bin:/bin', [ATTEMPT_MARKER]: 'job-a-1' },
    });
    innocent = spawn('sleep', [innocentMark], { detached: true, stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
    writeFileSync(
      join(own, 'running.json'),
      JSON.stringify({ version: 1, attempts: { 'job-a-1': { pgid: leftover.pid, startedAt: '' }, 'job-b-1': { pgid: innocent.pid, startedAt: '' } } }),
    );
    await eventually(() => processesMatching(`sleep ${leftoverMark}`).length === 2 && processesMatching(`sleep ${innocentMark}`).length === 1, 10_000, 'the planted leftovers');

    const sub = nc.subscribe(subjects.heartbeat(EXECUTOR_ID));
    void (async () => {
      for await (const m of sub) heartbeats.push(m.json<ExecutorHeartbeat>());
    })();
    deno = spawn(DENO, denoExecutorArgs({ natsUrl: server.url, workRoot }), { cwd: ROOT, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    deno.stdout?.on('data', (d) => (denoOutput += String(d)));
    deno.stderr?.on('data', (d) => (denoOutput += String(d)));
    denoExit = new Promise((done) => deno!.once('exit', (code) => done(code)));
    await eventually(() => {
      if (deno?.exitCode !== null) throw new Error(`the Deno executor exited with ${deno?.exitCode}:\n${denoOutput}`);
      return heartbeats.length > 0;
    }, 60_000, "the Deno executor's first heartbeat");
  }, 120_000);

  afterAll(async () => {
    if (deno && deno.exitCode === null && deno.signalCode === null) {
      deno.kill('SIGTERM');
      const timer = setTimeout(() => deno?.kill('SIGKILL'), 10_000);
      await denoExit;
      clearTimeout(timer);
    }
    for (const pid of [leftover?.pid, innocent?.pid]) killQuietly(pid && -pid);
    for (const pid of strays) killQuietly(pid);
    await app?.close();
    await orchestrator?.stop();
    await nc?.drain();
    await store?.close();
    await checkpoints?.close();
    await server?.stop();
    dir?.remove();
  }, 60_000);

  async function submit(spec: JobSpecInput): Promise<string> {
    const jobId = randomUUID();
    await publisher.publish(subjects.submit('alice'), { jobId, spec }, { msgId: jobId });
    return jobId;
  }
  async function history(jobId: string): Promise<JobEvent[]> {
    return (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  }
  function finished(jobId: string, timeoutMs = 30_000): Promise<JobEvent[]> {
    return eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => TERMINAL.includes(e.type)) ? h : undefined;
    }, timeoutMs, `job ${jobId} to finish (executor output:\n${denoOutput})`);
  }
  const started = (jobId: string) => eventually(async () => (await history(jobId)).some((e) => e.type === 'JobStarted'), 30_000, `job ${jobId} to start`);
  const dataOf = <T extends JobEvent['type']>(events: JobEvent[], type: T) => events.find((e) => e.type === type)?.data as Extract<JobEvent, { type: T }>['data'];
  async function logs(jobId: string): Promise<SequencedLogChunk[]> {
    const chunks: SequencedLogChunk[] = [];
    for await (const c of readLogChunks(js, jobId)) chunks.push(c);
    return chunks.sort((a, b) => a.offset - b.offset);
  }
  const bytesOf = (chunks: SequencedLogChunk[], stream: LogStream) => Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data));
  const text = (chunks: SequencedLogChunk[], stream: LogStream) => bytesOf(chunks, stream).toString('utf8');

  it('announces itself as a Deno executor and cleans up what a crashed predecessor left', async () => {
    expect(heartbeats[0]).toMatchObject({ executorId: EXECUTOR_ID, kind: 'local', capacity: 4, sandbox: 'none', running: [] });
    expect(heartbeats[0].runtime).toMatch(/^deno \d+\.\d+$/);
    await eventually(() => processesMatching(`sleep ${leftoverMark}`).length === 0, 10_000, 'the leftover group to be killed');
    expect(processesMatching(`sleep ${innocentMark}`)).toEqual([innocent.pid]);
    const own = join(workRoot, EXECUTOR_ID);
    expect(readdirSync(own)).toEqual(['running.json']);
    expect(JSON.parse(readFileSync(join(own, 'running.json'), 'utf8')).attempts).toEqual({});
  });

  it('a failing command ends with its exit code, both output lines and its history in order', async () => {
    const jobId = await submit({ command: "sh -c 'echo hello; echo oops >&2; exit 3'" });
    const events = await finished(jobId);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(dataOf(events, 'JobStarted')).toMatchObject({ attempt: 1, executorId: EXECUTOR_ID, sandbox: 'none' });
    // Recorded before the command runs (the claim): there is no pid to record yet.
    expect(dataOf(events, 'JobStarted').pid).toBeUndefined();
    expect(dataOf(events, 'JobCompleted')).toMatchObject({ attempt: 1, exitCode: 3, signal: null, oomKilled: false, logBytes: 11, usage: null });
    const chunks = await logs(jobId);
    expect(text(chunks, 'stdout')).toBe('hello\n');
    expect(text(chunks, 'stderr')).toBe('oops\n');
    expect(chunks.every((c) => c.attempt === 1)).toBe(true);
  });

  it('runs an argv array without a shell, in a clean environment, in its workdir', async () => {
    const argv = await submit({ command: ['printf', '%s|', 'a b', '$HOME', '*', '`id`'] });
    expect(dataOf(await finished(argv), 'JobCompleted').exitCode).toBe(0);
    expect(text(await logs(argv), 'stdout')).toBe('a b|$HOME|*|`id`|');

    const envJob = await submit({ command: 'pwd; echo "$FOO|$HOME"; env', env: { FOO: 'bar' }, workdir: 'sub/dir' });
    expect(dataOf(await finished(envJob), 'JobCompleted').exitCode).toBe(0);
    const [pwd, line, ...vars] = text(await logs(envJob), 'stdout').split('\n');
    const home = join(workRoot, EXECUTOR_ID, `${envJob}-1`);
    expect(pwd).toBe(join(home, 'sub/dir'));
    expect(line).toBe(`bar|${home}`);
    const names = vars.filter(Boolean).map((l) => l.split('=')[0]);
    expect(names).toEqual(expect.arrayContaining(['PATH', 'HOME', 'FOO', ATTEMPT_MARKER]));
    for (const leaked of ['JOBLINE_E2E_CANARY', 'JOBLINE_NATS_URL', 'DENO_DIR', 'JEST_WORKER_ID']) expect(names).not.toContain(leaked);
  });

  it('carries binary output byte for byte, all 256 values, across many chunks', async () => {
    const script = 'const b=Buffer.alloc(256*4096);for(let i=0;i<b.length;i++)b[i]=i%256;process.stdout.write(b)';
    const jobId = await submit({ command: [process.execPath, '-e', script] });
    const done = dataOf(await finished(jobId), 'JobCompleted');
    expect(done.exitCode).toBe(0);
    const chunks = await logs(jobId);
    expect(chunks.length).toBeGreaterThan(1);
    let next = 0;
    for (const c of chunks) {
      expect(c.offset).toBe(next);
      next += c.data.length;
    }
    const expected = Buffer.alloc(256 * 4096);
    for (let i = 0; i < expected.length; i++) expected[i] = i % 256;
    expect(bytesOf(chunks, 'stdout').equals(expected)).toBe(true);
    expect(done.logBytes).toBe(expected.length);
  });

  it('runs steps in order with markers, stopping at the first failure with its exit code', async () => {
    const jobId = await submit({
      steps: [
        { name: 'first', run: 'echo one' },
        { name: 'breaks', run: 'echo two; exit 4' },
        { name: 'never', run: 'echo three' },
      ],
    });
    expect(dataOf(await finished(jobId), 'JobCompleted').exitCode).toBe(4);
    const chunks = await logs(jobId);
    expect(text(chunks, 'stdout')).toBe('one\ntwo\n');
    expect(text(chunks, 'stderr')).toBe('==> [1/3] first\n==> [2/3] breaks\n');
  });

  it('reports a program that cannot be started with 127 and the reason', async () => {
    const jobId = await submit({ command: ['/nonexistent/jobline-no-such-program'] });
    const done = dataOf(await finished(jobId), 'JobCompleted');
    expect(done).toMatchObject({ exitCode: 127, logBytes: 0 });
    expect(done.error).toMatch(/not found/);
    expect(existsSync(join(workRoot, EXECUTOR_ID, `${jobId}-1`))).toBe(false);
  });

  it('does not wait for a background child that keeps stdout open, in the group or escaped from it', async () => {
    // A background child in the attempt's group goes with it; one that called setsid() is only cut off its pipe.
    const inGroup = unique(300);
    const escaped = unique(300);
    // The escapee writes `ready` once it has its own session, so the main process ends only after that.
    const jobId = await submit({
      command: `(sleep ${inGroup} &) ; setsid sh -c 'echo > ready; exec sleep ${escaped}' & while [ ! -e ready ]; do sleep 0.01; done; echo done`,
    });
    // Were the pipe holders waited for, the job would not finish for 300 s.
    const events = await finished(jobId, 30_000);
    const escapees = processesMatching(`sleep ${escaped}`);
    strays.push(...escapees);
    // Without a cgroup nothing finds a process that left the group once the attempt ended normally
    // (as with the Node runner): it is cut off the pipe, and only a stop kills it (next test).
    expect(escapees).toHaveLength(1);
    expect(dataOf(events, 'JobCompleted').exitCode).toBe(0);
    expect(text(await logs(jobId), 'stdout')).toBe('done\n');
    await eventually(() => processesMatching(`sleep ${inGroup}`).length === 0, 10_000, 'the in-group child to be gone');
  });

  it('a cancelled `sleep 300` ends cancelled and leaves no process, even one that left the group', async () => {
    const duration = unique(300);
    const plain = await submit({ command: ['sleep', duration] });
    await started(plain);
    await eventually(() => processesMatching(`sleep ${duration}`).length === 1, 10_000, 'the sleep to run');
    await publisher.publish(subjects.cancel('alice'), { jobId: plain }, { msgId: randomUUID() });
    const events = await finished(plain, 30_000);
    expect(events.map((e) => e.type).slice(-2)).toEqual(['JobCancelRequested', 'JobCancelled']);
    expect(processesMatching(`sleep ${duration}`)).toEqual([]);

    const escaped = unique(300);
    const tree = await submit({ command: `setsid sleep ${escaped} & sleep ${escaped}` });
    await started(tree);
    await eventually(() => processesMatching(`sleep ${escaped}`).length === 2, 10_000, 'both sleeps to run');
    await publisher.publish(subjects.cancel('alice'), { jobId: tree }, { msgId: randomUUID() });
    expect((await finished(tree, 30_000)).at(-1)?.type).toBe('JobCancelled');
    const left = processesMatching(`sleep ${escaped}`);
    strays.push(...left);
    expect(left).toEqual([]);
  });

  it('timeoutSeconds 1 on `sleep 30` ends timed out and leaves no process', async () => {
    const duration = unique(30);
    const jobId = await submit({ command: ['sleep', duration], timeoutSeconds: 1 });
    const events = await finished(jobId, 30_000);
    // The terminal event; the stopped attempt's report (JobAttemptStopped) may follow it.
    expect(events.filter((e) => TERMINAL.includes(e.type)).map((e) => e.type)).toEqual(['JobTimedOut']);
    await eventually(() => processesMatching(`sleep ${duration}`).length === 0, 10_000, 'the sleep to be gone');
  });

  it('fails closed: JOBLINE_SANDBOX=required refuses to start (exit 2), and so does auto as root', () => {
    const run = (sandbox: string) => spawnSync(DENO, denoExecutorArgs({ natsUrl: server.url, workRoot: join(dir.path, 'refused') }), { cwd: ROOT, env: { ...env(), JOBLINE_SANDBOX: sandbox, JOBLINE_EXECUTOR_ID: 'deno-refused', JOBLINE_WORK_ROOT: join(dir.path, 'refused') }, encoding: 'utf8', timeout: 60_000 });
    const required = run('required');
    expect(required.status).toBe(2);
    expect(required.stdout + required.stderr).toMatch(/JOBLINE_SANDBOX=required, but the Deno executor cannot sandbox/);
    if (process.getuid?.() === 0) {
      const auto = run('auto');
      expect(auto.status).toBe(2);
      expect(auto.stdout + auto.stderr).toMatch(/running as root with JOBLINE_SANDBOX=auto/);
    }
  });

  it('type-checks under Deno (tsc never compiles the *.deno.ts files)', () => {
    const r = spawnSync(DENO, ['check', ...DENO_RUN_FLAGS.filter((f) => f !== '--no-prompt'), DENO_ENTRY], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DENO_DIR: join(dir.path, 'deno-cache'), DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' },
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect({ status: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toMatchObject({ status: 0 });
  }, 130_000);

  it('on SIGTERM, stops its running attempt, reports it and exits 0', async () => {
    const duration = unique(300);
    const jobId = await submit({ command: ['sleep', duration] });
    await started(jobId);
    await eventually(() => processesMatching(`sleep ${duration}`).length === 1, 10_000, 'the sleep to run');
    deno!.kill('SIGTERM');
    expect(await denoExit).toBe(0);
    expect(processesMatching(`sleep ${duration}`)).toEqual([]);
    const done = dataOf(await finished(jobId), 'JobCompleted');
    expect(done).toMatchObject({ signal: 'SIGTERM', exitCode: 143 });
    expect(denoOutput).toMatch(/"msg":"executor stopped"/);
  });
});
