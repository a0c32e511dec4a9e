import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  AttemptReportSchema,
  decodeLogChunk,
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
import { connectNats } from '../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { Executor, executorConsumers, NOT_STARTED_EXIT_CODE, type ExecutorOptions } from './core/executor';
import { FileReportOutbox, outboxDir } from './node/file-report-outbox';
import { ATTEMPT_MARKER, NodeProcessRunner } from './node/node-process-runner';
import { OrchestratorPeer } from './testing/orchestrator-peer';

let tmp: TempDir;
let server: RunningNatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let peer: OrchestratorPeer;
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
  // The orchestrator's side of claims and leases: grants every claim unless a test says otherwise.
  peer = new OrchestratorPeer({ nc }).start();
});

afterEach(() => {
  peer.decide = () => 'grant';
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((e) => e.stop()));
});

afterAll(async () => {
  peer?.stop();
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
    outbox: new FileReportOutbox(outboxDir(join(tmp.path, 'work'), executorId)),
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

async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function dispatch(executor: Executor, spec: JobSpecInput, attempt = 1, jobId = crypto.randomUUID(), startInMs = 10_000): Promise<RunAttemptMessage> {
  const msg: RunAttemptMessage = {
    kind: 'run',
    jobId,
    owner: 'alice',
    attempt,
    spec: { priority: 'normal', ...spec } as RunAttemptMessage['spec'],
    bundleDigest: null,
    dispatchedAt: new Date().toISOString(),
    startBy: new Date(Date.now() + startInMs).toISOString(),
  };
  await js.publish(subjects.work(executor.executorId), JSON.stringify(msg));
  return msg;
}

/** What one job's attempts told the orchestrator: claims (the started reports) and the reports on the bus. */
function reportsOf(jobId: string) {
  const onBus = collect<AttemptReport>(subjects.report(jobId));
  const claims = () => peer.claims.filter((c) => c.jobId === jobId);
  /** Claims first: a command runs only after its claim was granted. */
  const all = (): AttemptReport[] => [...claims(), ...onBus];
  const finished = () =>
    waitFor('the finished report', () => onBus.find((r) => r.kind === 'finished') as Extract<AttemptReport, { kind: 'finished' }> | undefined);
  const started = () => peer.until(`the claim of ${jobId}`, () => claims()[0]);
  return { all, onBus, started, finished, claims };
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
    const { all, onBus, finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'echo hello; echo oops >&2; exit 3' }, 1, jobId);

    const done = await finished();
    // The started report is the claim (core NATS request); only the finished one is on JetStream.
    expect(all().map((r) => r.kind)).toEqual(['started', 'finished']);
    expect(onBus.map((r) => r.kind)).toEqual(['finished']);
    for (const r of all()) expect(AttemptReportSchema.safeParse(r).success).toBe(true);
    const started = all()[0] as Extract<AttemptReport, { kind: 'started' }>;
    expect(started).toMatchObject({ jobId, attempt: 1, executorId: ex.executorId, sandbox: 'none' });
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

  it("carries binary output byte for byte, all 256 values, across many chunks, on the logs subject and its owner's", async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    const copies: { chunk: ReturnType<typeof decodeLogChunk>; msgId: string | undefined }[] = [];
    const ownerSub = nc.subscribe(subjects.ownerLogs('alice', jobId), { callback: (_err, m) => void copies.push({ chunk: decodeLogChunk(m), msgId: m.headers?.get('Nats-Msg-Id') }) });
    await nc.flush();
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
    // The owner's copy: every stored chunk, the same bytes and headers, each once (sent after its ack, so before the finished report).
    await nc.flush();
    ownerSub.unsubscribe();
    expect(copies.map((c) => c.chunk === null)).not.toContain(true);
    expect(copies.map((c) => ({ ...c.chunk!, data: Buffer.from(c.chunk!.data) })).sort((a, b) => a.offset - b.offset)).toEqual(
      chunks.map((c) => ({ jobId, attempt: c.attempt, stream: c.stream, offset: c.offset, data: Buffer.from(c.data) })),
    );
    expect(copies.map((c) => c.msgId).sort()).toEqual(chunks.map((c) => `${jobId}.${c.attempt}.${c.offset}`).sort());
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
    const { all, finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'echo once' }, 1, jobId);
    await dispatch(ex, { command: 'echo once' }, 1, jobId);
    await finished();
    // With one slot, work is taken in order: once the next job has finished, the duplicate was seen.
    const after = crypto.randomUUID();
    const afterReports = reportsOf(after);
    await dispatch(ex, { command: 'true' }, 1, after);
    await afterReports.finished();
    expect(all().map((r) => r.kind)).toEqual(['started', 'finished']);
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
    const { all, finished } = reportsOf(jobId);
    await dispatch(ex, { command: ['/nonexistent/jobline-no-such-program'] }, 1, jobId);
    const done = await finished();
    expect(all().map((r) => r.kind)).toEqual(['started', 'finished']);
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

describe('Executor claims, leases and heartbeats, against a real nats-server', () => {
  /** A command that leaves a marker file: it proves whether the command ran at all. */
  const markerFile = () => join(tmp.path, `ran-${crypto.randomUUID()}`);

  it('sends heartbeats every heartbeatMs, not faster, and an option given as undefined takes the default (counted over 3 s)', async () => {
    const fast = uniqueId('hb-fast');
    const plain = uniqueId('hb-default');
    const beats = (id: string) => peer.heartbeats.filter((h) => h.executorId === id);
    await startExecutor({ executorId: fast, heartbeatMs: 250 });
    // What a caller passing its own optional setting through does: the bug that sent ~880 heartbeats a second.
    await startExecutor({ executorId: plain, heartbeatMs: undefined });
    const from = { fast: beats(fast).length, plain: beats(plain).length };
    await new Promise((r) => setTimeout(r, 3000));
    const fastCount = beats(fast).length - from.fast;
    const plainCount = beats(plain).length - from.plain;
    // 12 expected at 250 ms, 3 at the default 1000 ms; late timers on a busy machine send fewer, never more.
    expect(fastCount).toBeGreaterThanOrEqual(6);
    expect(fastCount).toBeLessThanOrEqual(14);
    expect(plainCount).toBeGreaterThanOrEqual(1);
    expect(plainCount).toBeLessThanOrEqual(4);
    expect(beats(fast).every((h) => h.heartbeatMs === 250)).toBe(true);
    expect(beats(plain).every((h) => h.heartbeatMs === 1000)).toBe(true);
  });

  it('runs nothing and reports nothing when its claim is refused', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const file = markerFile();
    peer.decide = (c) => (c.jobId === jobId ? 'refuse' : 'grant');
    const { onBus, claims } = reportsOf(jobId);
    await dispatch(ex, { command: ['touch', file] }, 1, jobId);
    await peer.until('the claim', () => claims().length === 1);
    await waitFor('the attempt to be dropped', () => !ex.running.some((r) => r.jobId === jobId));
    // A later job on the same executor runs: whatever the refused one would have done, it would have done by then.
    const after = crypto.randomUUID();
    const afterReports = reportsOf(after);
    await dispatch(ex, { command: 'true' }, 1, after);
    await afterReports.finished();
    expect(existsSync(file)).toBe(false);
    expect(onBus).toEqual([]);
    expect(claims()).toHaveLength(1);
    expect(await storedLogs(jobId)).toEqual([]);
  });

  it('retries an unanswered claim until the start deadline, then gives the attempt up without running it, and says so', async () => {
    const ex = await startExecutor({ retryMinMs: 50, retryMaxMs: 200, requestTimeoutMs: 200 });
    const jobId = crypto.randomUUID();
    const file = markerFile();
    peer.decide = (c) => (c.jobId === jobId ? 'ignore' : 'grant');
    const { finished, claims } = reportsOf(jobId);
    const msg = await dispatch(ex, { command: ['touch', file] }, 1, jobId, 1500);
    const done = await finished();
    expect(claims().length).toBeGreaterThanOrEqual(3);
    expect(done).toMatchObject({ exitCode: NOT_STARTED_EXIT_CODE, signal: null, logBytes: 0 });
    expect(done.error).toMatch(/not started: no answer to its claim before its start deadline/);
    expect(Date.parse(done.finishedAt)).toBeGreaterThanOrEqual(Date.parse(msg.startBy!));
    expect(existsSync(file)).toBe(false);
  });

  it('does not even claim a run order whose start deadline has passed', async () => {
    const ex = await startExecutor();
    const jobId = crypto.randomUUID();
    const file = markerFile();
    const { finished, claims } = reportsOf(jobId);
    await dispatch(ex, { command: ['touch', file] }, 1, jobId, -1000);
    const done = await finished();
    expect(done.error).toMatch(/not started/);
    expect(claims()).toEqual([]);
    expect(existsSync(file)).toBe(false);
  });

  it('stops an attempt as soon as a lease reply no longer lists it', async () => {
    const ex = await startExecutor({ heartbeatMs: 200, leaseMs: 1500, graceMs: 500 });
    const jobId = crypto.randomUUID();
    const mark = marker();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: `sleep ${mark}` }, 1, jobId);
    await waitFor('the sleep to run', () => processesMatching(`sleep ${mark}`).length === 1);
    // Kept while listed: several heartbeats go by and it runs on.
    const seen = peer.heartbeats.length;
    await peer.until('three more heartbeats', () => peer.heartbeats.length >= seen + 3);
    expect(processesMatching(`sleep ${mark}`)).toHaveLength(1);
    peer.forget(jobId, 1);
    const done = await finished();
    expect(done.signal).toBe('SIGTERM');
    expect(processesMatching(`sleep ${mark}`)).toEqual([]);
  });

  it('keeps running attempts while no lease reply comes (the bus or the orchestrator is away)', async () => {
    const ex = await startExecutor({ heartbeatMs: 100, leaseMs: 600, requestTimeoutMs: 100 });
    const jobId = crypto.randomUUID();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: 'sleep 2; echo survived' }, 1, jobId);
    await reportsOf(jobId).started();
    peer.answerHeartbeats = false;
    try {
      const done = await finished();
      expect(done).toMatchObject({ exitCode: 0, signal: null });
      expect(text(await storedLogs(jobId), 'stdout')).toBe('survived\n');
    } finally {
      peer.answerHeartbeats = true;
    }
  });

  it('makes its consumers again when they are gone (deleted while it ran), and takes work and stop orders', async () => {
    const ex = await startExecutor({ retryMinMs: 50, retryMaxMs: 200 });
    const names = executorConsumers(ex.executorId);
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.delete(STREAMS.work, names.work);
    await jsm.consumers.delete(STREAMS.control, names.control);
    const jobId = crypto.randomUUID();
    const mark = marker();
    const { finished } = reportsOf(jobId);
    await dispatch(ex, { command: `sleep ${mark}` }, 1, jobId);
    await waitFor('the sleep to run', () => processesMatching(`sleep ${mark}`).length === 1, 20_000);
    await js.publish(subjects.control(ex.executorId), JSON.stringify({ kind: 'stop', jobId, attempt: 1, reason: 'cancel' } satisfies StopAttemptMessage));
    expect((await finished()).signal).toBe('SIGTERM');
  });

  it('after a restart, claims nothing before a lease reply answered the new instance', async () => {
    peer.answerHeartbeats = false;
    try {
      const ex = await startExecutor({ heartbeatMs: 100, leaseMs: 1000, requestTimeoutMs: 100 });
      const jobId = crypto.randomUUID();
      const { claims, finished } = reportsOf(jobId);
      await dispatch(ex, { command: 'true' }, 1, jobId);
      await waitFor('the run order to be taken', () => ex.running.some((r) => r.jobId === jobId));
      const beats = peer.heartbeats.length;
      await peer.until('a few unanswered heartbeats', () => peer.heartbeats.length >= beats + 3);
      expect(claims()).toEqual([]);
      peer.answerHeartbeats = true;
      expect((await finished()).exitCode).toBe(0);
      expect(claims()).toHaveLength(1);
    } finally {
      peer.answerHeartbeats = true;
    }
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

describe('Executor through a nats-server outage (stopped, then started again on the same port and store)', () => {
  let dir: TempDir;
  let bus: RunningNatsServer;
  let busNc: NatsConnection;
  let busPeer: OrchestratorPeer;
  const storeDir = () => join(dir.path, 'nats');

  beforeAll(async () => {
    dir = tempDir('jobline-executor-outage-');
    bus = await startNatsServer({ storeDir: storeDir() });
    // Reconnects forever, as every service's connection does.
    busNc = await connectNats({ servers: bus.url, name: 'executor-outage-test', overrides: { reconnectTimeWait: 100, reconnectJitter: 50 } });
    await ensureStreams(await jetstreamManager(busNc));
    busPeer = new OrchestratorPeer({ nc: busNc }).start();
  });

  // A test that fails mid-outage must not leave the next one without a bus.
  afterEach(async () => {
    if (bus.process.exitCode !== null || bus.process.signalCode !== null) await restartBus();
  });

  afterAll(async () => {
    busPeer?.stop();
    await busNc?.close();
    await bus?.stop();
    dir?.remove();
  });

  const restartBus = async () => {
    bus = await startNatsServer({ storeDir: storeDir(), port: bus.port });
  };

  function outboxedExecutor(executorId: string, overrides: Partial<ExecutorOptions> = {}) {
    const outbox = new FileReportOutbox(outboxDir(join(dir.path, 'work'), executorId));
    const executor = new Executor({
      nc: busNc,
      executorId,
      runner: new NodeProcessRunner({ workRoot: join(dir.path, 'work', executorId) }),
      outbox,
      runtime: 'node test',
      logger: quietLogger,
      heartbeatMs: 200,
      graceMs: 1000,
      retryMinMs: 50,
      retryMaxMs: 500,
      requestTimeoutMs: 500,
      ...overrides,
    });
    return { executor, outbox };
  }

  async function run(executorId: string, spec: JobSpecInput): Promise<string> {
    const jobId = crypto.randomUUID();
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId,
      owner: 'alice',
      attempt: 1,
      spec: { priority: 'normal', ...spec } as RunAttemptMessage['spec'],
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
      startBy: new Date(Date.now() + 30_000).toISOString(),
    };
    await jetstream(busNc).publish(subjects.work(executorId), JSON.stringify(msg));
    return jobId;
  }

  it('an attempt that prints and ends during the outage (kill -9): its log waits for the bus, then its report; both whole once the bus is back', async () => {
    const { executor, outbox } = outboxedExecutor(uniqueId('outage'));
    await executor.start();
    try {
      const jobId = await run(executor.executorId, { command: 'sleep 1; echo after' });
      await busPeer.until('the claim', () => busPeer.claims.some((c) => c.jobId === jobId));
      await bus.kill();
      // Longer than the four publish timeouts (5 s each) after which the log batcher used to give
      // its chunk up: the report then went with a length the logs stream never held (a job that
      // succeeded with an empty log). Now the report waits for the log, which waits for the bus.
      await new Promise((r) => setTimeout(r, 23_000));
      expect(executor.pendingReports).toBe(0);
      expect(await outbox.list()).toEqual([]);
      await restartBus();
      const done = await busPeer.until('the finished report', () => busPeer.finished.find((r) => r.jobId === jobId), 30_000);
      expect(done).toMatchObject({ exitCode: 0, signal: null, logBytes: 6, logSha256: createHash('sha256').update('after\n').digest('hex') });
      const stored = await (await jetstreamManager(busNc)).streams.info(STREAMS.logs, { subjects_filter: subjects.logs(jobId) });
      expect(stored.state.subjects).toEqual({ [subjects.logs(jobId)]: 1 });
      // The report was acked as its outbox write was still under way (pendingReports does not count
      // it until that write is done): it is removed after both.
      await waitFor('the outbox to empty', async () => executor.pendingReports === 0 && (await outbox.list()).length === 0, 10_000);
      // The consumers and heartbeats resumed by themselves: the next attempt runs.
      const next = await run(executor.executorId, { command: 'true' });
      expect((await busPeer.until('the next report', () => busPeer.finished.find((r) => r.jobId === next), 20_000)).exitCode).toBe(0);
    } finally {
      await executor.stop();
    }
  }, 90_000);

  it('re-sends what a stopped executor left in its outbox when the next one starts', async () => {
    const executorId = uniqueId('outbox');
    const first = outboxedExecutor(executorId, { stopDeliveryMs: 200 });
    await first.executor.start();
    // No output: nothing for the log batcher to wait for.
    const jobId = await run(executorId, { command: 'sleep 0.5' });
    await busPeer.until('the claim', () => busPeer.claims.some((c) => c.jobId === jobId));
    await bus.stop();
    await waitFor('the report in the outbox', () => first.executor.pendingReports === 1, 45_000);
    await first.executor.stop();
    expect((await first.outbox.list()).map((e) => e.key)).toEqual([`${jobId}.1.finished`]);

    await restartBus();
    // A ping answered: the test's connection is back (the new executor's start needs the bus).
    await waitFor('the connection to be back', () => busNc.flush().then(() => true, () => false), 20_000);
    const second = outboxedExecutor(executorId);
    await second.executor.start();
    try {
      const done = await busPeer.until('the finished report', () => busPeer.finished.find((r) => r.jobId === jobId), 20_000);
      expect(done.exitCode).toBe(0);
      await waitFor('the outbox to empty', async () => (await second.outbox.list()).length === 0, 10_000);
    } finally {
      await second.executor.stop();
    }
  });
});
