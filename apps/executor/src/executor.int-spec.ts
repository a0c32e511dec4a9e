import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  AttemptReportSchema,
  ExecutorHeartbeatSchema,
  LOG_HEADERS,
  STREAMS,
  subjects,
  type AttemptReport,
  type ExecutorHeartbeat,
  type JobSpecInput,
  type LogStream,
  type RunAttemptMessage,
  type StopAttemptMessage,
} from '../../../libs/contracts/src';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { Executor, type ExecutorOptions } from './core/executor';
import { ATTEMPT_MARKER, NodeProcessRunner } from './node/node-process-runner';

let tmp: TempDir;
let server: RunningNatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
const running: Executor[] = [];

const quietLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: (fields: Record<string, unknown>, message: string) => console.error(message, fields),
};

beforeAll(async () => {
  tmp = tempDir('jobline-executor-');
  server = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
  nc = await connect({ servers: server.url });
  js = jetstream(nc);
  await ensureStreams(await jetstreamManager(nc));
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((e) => e.stop()));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  tmp?.remove();
});

let seq = 0;
const uniqueId = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;

async function startExecutor(overrides: Partial<ExecutorOptions> = {}): Promise<Executor> {
  const executorId = overrides.executorId ?? uniqueId('ex');
  const executor = new Executor({
    nc,
    executorId,
    runner: new NodeProcessRunner({ workRoot: join(tmp.path, 'work', executorId) }),
    runtime: 'node test',
    logger: quietLogger,
    heartbeatMs: 200,
    graceMs: 2000,
    ...overrides,
  });
  await executor.start();
  running.push(executor);
  return executor;
}

/** Subscribes before anything is published so no report or heartbeat is missed. */
function collect<T>(subject: string): T[] {
  const got: T[] = [];
  const sub = nc.subscribe(subject);
  void (async () => {
    for await (const m of sub) got.push(m.json<T>());
  })();
  return got;
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

async function dispatch(executor: Executor, spec: JobSpecInput, attempt = 1, jobId = crypto.randomUUID()): Promise<RunAttemptMessage> {
  const msg: RunAttemptMessage = {
    kind: 'run',
    jobId,
    owner: 'alice',
    attempt,
    spec: { priority: 'normal', ...spec } as RunAttemptMessage['spec'],
    bundleDigest: null,
    dispatchedAt: new Date().toISOString(),
  };
  await js.publish(subjects.work(executor.executorId), JSON.stringify(msg));
  return msg;
}

/** Reports of one job, checked against the contract schema as they are read. */
function reportsOf(jobId: string) {
  const reports = collect<AttemptReport>(subjects.report(jobId));
  const finished = () =>
    waitFor('the finished report', () => reports.find((r) => r.kind === 'finished') as Extract<AttemptReport, { kind: 'finished' }> | undefined);
  const started = () =>
    waitFor('the started report', () => reports.find((r) => r.kind === 'started') as Extract<AttemptReport, { kind: 'started' }> | undefined);
  return { reports, started, finished };
}

interface StoredChunk {
  attempt: number;
  stream: LogStream;
  offset: number;
  data: Uint8Array;
}

/** Every log chunk of a job as stored in JetStream (not as seen on the wire). */
async function storedLogs(jobId: string): Promise<StoredChunk[]> {
  const consumer = await js.consumers.get(STREAMS.logs, { filter_subjects: subjects.logs(jobId), deliver_policy: DeliverPolicy.All });
  const chunks: StoredChunk[] = [];
  for (;;) {
    const m = await consumer.next({ expires: 2000 });
    if (!m) break;
    chunks.push({
      attempt: Number(m.headers?.get(LOG_HEADERS.attempt)),
      stream: m.headers?.get(LOG_HEADERS.stream) as LogStream,
      offset: Number(m.headers?.get(LOG_HEADERS.offset)),
      data: m.data,
    });
    if (m.info.pending === 0) break;
  }
  return chunks;
}

const text = (chunks: StoredChunk[], stream: LogStream) =>
  Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data)).toString('utf8');

function expectContiguous(chunks: StoredChunk[]): number {
  let next = 0;
  for (const c of [...chunks].sort((a, b) => a.offset - b.offset)) {
    expect(c.offset).toBe(next);
    next += c.data.length;
  }
  return next;
}

/** Live processes whose command line starts with the text, NULs read as spaces (zombies excluded: they run nothing). */
function processesMatching(needle: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ').startsWith(needle)) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const marker = () => `${1000 + Math.floor(Math.random() * 1000)}.${process.pid}${seq++}`;

describe('Executor with the Node runner, against a real nats-server', () => {
  it('runs a shell command and reports started, then finished with its exit code and logs', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { reports, finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'echo hello; echo oops >&2; exit 3' }, 1, jobId);

    const done = await finished();
    expect(reports.map((r) => r.kind)).toEqual(['started', 'finished']);
    for (const r of reports) expect(AttemptReportSchema.safeParse(r).success).toBe(true);
    const started = reports[0] as Extract<AttemptReport, { kind: 'started' }>;
    expect(started).toMatchObject({ jobId, attempt: 1, executorId: ex.executorId, sandbox: 'none' });
    expect(started.pid).toBeGreaterThan(0);
    expect(done).toMatchObject({ exitCode: 3, signal: null, oomKilled: false, logBytes: 11, usage: null });
    expect(Date.parse(done.finishedAt)).toBeGreaterThanOrEqual(Date.parse(started.startedAt));

    const chunks = await storedLogs(jobId);
    expect(text(chunks, 'stdout')).toBe('hello\n');
    expect(text(chunks, 'stderr')).toBe('oops\n');
    expect(chunks.every((c) => c.attempt === 1)).toBe(true);
    expect(expectContiguous(chunks)).toBe(11);
  });

  it('runs an argv array without a shell, in a clean environment, in its workdir', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: ['printf', '%s|', 'a b', '$HOME', '*'] }, 1, jobId);
    expect((await finished()).exitCode).toBe(0);
    expect(text(await storedLogs(jobId), 'stdout')).toBe('a b|$HOME|*|');

    const envJob = crypto.randomUUID();
    const envReports = reportsOf(envJob);
    await dispatch(ex, { command: 'pwd; echo "$FOO|$HOME"; env', env: { FOO: 'bar' }, workdir: 'sub/dir' }, 1, envJob);
    expect((await envReports.finished()).exitCode).toBe(0);
    const [pwd, line, ...env] = text(await storedLogs(envJob), 'stdout').split('\n');
    const home = join(tmp.path, 'work', ex.executorId, `${envJob}-1`);
    expect(pwd).toBe(join(home, 'sub/dir'));
    expect(line).toBe(`bar|${home}`);
    const names = env.filter(Boolean).map((l) => l.split('=')[0]);
    expect(names).not.toContain('JEST_WORKER_ID');
    expect(names).toEqual(expect.arrayContaining(['PATH', 'HOME', 'FOO', ATTEMPT_MARKER]));
  });

  it('carries binary output byte for byte, all 256 values, across many chunks', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    const script = 'const b=Buffer.alloc(256*4096);for(let i=0;i<b.length;i++)b[i]=i%256;process.stdout.write(b)';
    await dispatch(ex, { command: [process.execPath, '-e', script] }, 1, jobId);
    const done = await finished();
    expect(done.exitCode).toBe(0);
    const chunks = await storedLogs(jobId);
    expect(chunks.length).toBeGreaterThan(1);
    expect(expectContiguous(chunks)).toBe(256 * 4096);
    const out = Buffer.concat(chunks.sort((a, b) => a.offset - b.offset).map((c) => c.data));
    const expected = Buffer.alloc(256 * 4096);
    for (let i = 0; i < expected.length; i++) expected[i] = i % 256;
    expect(out.equals(expected)).toBe(true);
    expect(done.logBytes).toBe(expected.length);
  });

  it('runs steps in order with markers, stopping at the first failure with its exit code', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    await dispatch(
      ex,
      {
        steps: [
          { name: 'first', run: 'echo one' },
          { name: 'breaks', run: 'echo two; exit 4' },
          { name: 'never', run: 'echo three' },
        ],
      },
      1,
      jobId,
    );
    expect((await finished()).exitCode).toBe(4);
    const chunks = await storedLogs(jobId);
    expect(text(chunks, 'stdout')).toBe('one\ntwo\n');
    expect(text(chunks, 'stderr')).toBe('==> [1/3] first\n==> [2/3] breaks\n');
  });

  it('stops an attempt on a stop order and leaves no process of it behind', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const mark = marker();
    const { started, finished } = reportsOf(jobId);
    await dispatch(ex, { command: `sleep ${mark} & sleep ${mark} & wait` }, 1, jobId);
    await started();
    await waitFor('both sleeps to run', () => processesMatching(`sleep ${mark}`).length === 2);

    const stop: StopAttemptMessage = { kind: 'stop', jobId, attempt: 1, reason: 'cancel' };
    await js.publish(subjects.control(ex.executorId), JSON.stringify(stop));
    const done = await finished();
    expect(['SIGTERM', 'SIGKILL']).toContain(done.signal);
    expect(done.exitCode).toBe(done.signal === 'SIGTERM' ? 143 : 137);
    expect(processesMatching(`sleep ${mark}`)).toEqual([]);
  });

  it('ignores a stop order for an attempt it does not run', async () => {
    const ex = await startExecutor({ capacity: 1 });
    const stop: StopAttemptMessage = { kind: 'stop', jobId: crypto.randomUUID(), attempt: 1, reason: 'cancel' };
    await js.publish(subjects.control(ex.executorId), JSON.stringify(stop));
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'true' }, 1, jobId);
    expect((await finished()).exitCode).toBe(0);
  });

  it('does not wait for a background child that keeps stdout open', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const mark = marker();
    const { started, finished } = reportsOf(jobId);
    await dispatch(ex, { command: `(sleep ${mark} &) ; echo done` }, 1, jobId);
    const s = await started();
    const done = await finished();
    expect(done.exitCode).toBe(0);
    expect(Date.parse(done.finishedAt) - Date.parse(s.startedAt)).toBeLessThan(2500);
    expect(text(await storedLogs(jobId), 'stdout')).toBe('done\n');
    // What an attempt leaves in its process group does not outlive it.
    await waitFor('the orphan to be gone', () => processesMatching(`sleep ${mark}`).length === 0, 5000);
  });

  it('with capacity 1, starts a second job only after the first finished', async () => {
    const ex = await startExecutor({ capacity: 1 });
    const first = crypto.randomUUID();
    const second = crypto.randomUUID();
    const a = reportsOf(first);
    const b = reportsOf(second);
    await dispatch(ex, { command: 'sleep 0.3' }, 1, first);
    await dispatch(ex, { command: 'true' }, 1, second);
    const aDone = await a.finished();
    const bStarted = await b.started();
    await b.finished();
    expect(Date.parse(bStarted.startedAt)).toBeGreaterThanOrEqual(Date.parse(aDone.finishedAt));
  });

  it('ignores a re-delivered run of an attempt it already ran', async () => {
    const ex = await startExecutor({ capacity: 1 });
    const jobId = crypto.randomUUID();
    const { reports, finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'echo once' }, 1, jobId);
    await dispatch(ex, { command: 'echo once' }, 1, jobId);
    await finished();
    // With one slot, work is taken in order: once the next job has finished, the duplicate was seen.
    const after = crypto.randomUUID();
    const afterReports = reportsOf(after);
    await dispatch(ex, { command: 'true' }, 1, after);
    await afterReports.finished();
    expect(reports.map((r) => r.kind)).toEqual(['started', 'finished']);
  });

  it('sends heartbeats with its capacity and running attempts', async () => {
    const executorId = uniqueId('hb');
    const beats = collect<ExecutorHeartbeat>(subjects.heartbeat(executorId));
    const ex = await startExecutor({ executorId, capacity: 3, labels: { zone: 'test' } });
    await waitFor('a first heartbeat', () => beats.length > 0, 5000);
    expect(ExecutorHeartbeatSchema.safeParse(beats[0]).success).toBe(true);
    expect(beats[0]).toMatchObject({ executorId, kind: 'local', capacity: 3, running: [], labels: { zone: 'test' }, sandbox: 'none', runtime: 'node test' });

    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'sleep 0.8' }, 2, jobId);
    const busy = await waitFor('a heartbeat listing the attempt', () => beats.find((b) => b.running.some((r) => r.jobId === jobId)));
    expect(busy.running).toEqual([{ jobId, attempt: 2 }]);
    expect(busy.instanceId).toBe(beats[0].instanceId);
    await finished();
    const count = beats.length;
    await waitFor('a heartbeat after the slot freed', () => beats.length > count && beats[beats.length - 1].running.length === 0, 5000);
  });

  it('reports a program that cannot be started as finished with 127 and an error', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { reports, finished } = reportsOf(jobId);
    await dispatch(ex, { command: ['/nonexistent/jobline-no-such-program'] }, 1, jobId);
    const done = await finished();
    expect(reports.map((r) => r.kind)).toEqual(['started', 'finished']);
    expect(done.exitCode).toBe(127);
    expect(done.error).toMatch(/not found/);
    expect(AttemptReportSchema.safeParse(done).success).toBe(true);
    expect(existsSync(join(tmp.path, 'work', ex.executorId, `${jobId}-1`))).toBe(false);
  });

  it('shuts running attempts down on stop() and still reports them', async () => {
    const ex = await startExecutor({ graceMs: 500 });
    running.splice(running.indexOf(ex), 1);
    const jobId = crypto.randomUUID();
    const mark = marker();
    const { started, finished } = reportsOf(jobId);
    await dispatch(ex, { command: `trap '' TERM; sleep ${mark}` }, 1, jobId);
    await started();
    await waitFor('the sleep to run', () => processesMatching(`sleep ${mark}`).length === 1);
    await ex.stop();
    const done = await finished();
    expect(done.signal).not.toBeNull();
    expect(processesMatching(`sleep ${mark}`)).toEqual([]);
  });
});

describe('NodeProcessRunner.cleanupLeftovers', () => {
  it('kills the groups a crashed executor recorded, verified by their marker, and removes stale workspaces', async () => {
    const workRoot = join(tmp.path, 'crashed');
    mkdirSync(join(workRoot, 'stale-attempt'), { recursive: true });
    const mark = marker();
    // What a crashed executor leaves: a detached group carrying the attempt marker ...
    const leftover = spawn('/bin/sh', ['-c', `sleep ${mark} & sleep ${mark}`], {
      detached: true,
      stdio: 'ignore',
      env: { PATH: '/usr/bin:/bin', [ATTEMPT_MARKER]: 'job-a-1' },
    });
    // ... and a group recorded under a reused pid: it does not carry the marker, so it must survive.
    const innocent = spawn('sleep', [`${mark}1`], { detached: true, stdio: 'ignore', env: { PATH: '/usr/bin:/bin' } });
    mkdirSync(join(workRoot, 'job-a-1'));
    writeFileSync(
      join(workRoot, 'running.json'),
      JSON.stringify({
        version: 1,
        attempts: { 'job-a-1': { pgid: leftover.pid, startedAt: '' }, 'job-b-1': { pgid: innocent.pid, startedAt: '' } },
      }),
    );
    try {
      await waitFor('the leftover group to run', () => processesMatching(`sleep ${mark} `).length === 2 && processesMatching(`sleep ${mark}1`).length === 1);

      await new NodeProcessRunner({ workRoot }).cleanupLeftovers();

      await waitFor('the leftovers to be gone', () => processesMatching(`sleep ${mark} `).length === 0, 5000);
      expect(processesMatching(`sleep ${mark}1`)).toEqual([innocent.pid]);
      expect(readdirSync(workRoot)).toEqual(['running.json']);
      expect(JSON.parse(readFileSync(join(workRoot, 'running.json'), 'utf8')).attempts).toEqual({});
    } finally {
      for (const pid of [leftover.pid, innocent.pid]) {
        try {
          process.kill(-pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
});
