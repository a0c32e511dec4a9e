import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { decodeJobEvent, jobStreamName, subjects, type JobEvent, type JobSpecInput } from '../../libs/contracts/src';
import { evolve, initialState, TERMINAL_PHASES } from '../../libs/domain/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../libs/event-store/src';
import { connectNats } from '../../libs/messaging/src/connection';
import { JetStreamPublisher } from '../../libs/messaging/src/publisher';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import type { Orchestrator } from '../../apps/orchestrator/src/orchestrator';
import { createOrchestratorApp } from '../../apps/orchestrator/src/orchestrator.module';
import type { ExecutorProcessConfig } from '../../apps/executor/src/testing/executor-process';
import { sshdUnavailable, startTestSshd, type TestSshd } from '../../apps/executor/src/ssh/testing/sshd';

/**
 * Executors under faults, as an operator would cause them: real executor processes
 * (apps/executor/src/testing/executor-process.ts, started like a service: reconnect forever),
 * a real nats-server stopped and started again on the same port and store, the orchestrator
 * in this process on a SQLite store. Marker files written by the commands prove what ran.
 */

const ROOT = resolve(__dirname, '../..');
const EXECUTOR = join(ROOT, 'dist/apps/executor/src/testing/executor-process.js');
const quiet = { log: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };
const TERMINAL = new Set(['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut']);

interface ExecutorProcess {
  child: ChildProcess;
  pid: number;
  /** Lines it logged so far (verbose: every info, warning and error). */
  lines: () => string[];
  exited: Promise<number | null>;
}

async function startExecutorProcess(config: ExecutorProcessConfig): Promise<ExecutorProcess> {
  const child = spawn(process.execPath, [EXECUTOR, JSON.stringify(config)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await eventually(() => {
    if (child.exitCode !== null) throw new Error(`executor process exited with ${child.exitCode}: ${err}`);
    return /READY \d+/.test(out);
  }, 30_000, 'the executor process to be ready');
  return { child, pid: child.pid!, lines: () => err.split('\n').filter(Boolean), exited };
}

async function stopProcess(p: ExecutorProcess | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGCONT');
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(timer);
}

/** Live processes whose command line (NULs read as spaces) starts with the text, or with `contains` holds it anywhere; zombies excluded. */
function processesWith(needle: string, contains = false): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ');
      if (contains ? cmdline.includes(needle) : cmdline.startsWith(needle)) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** One system: a nats-server on a port it keeps across restarts, the orchestrator, a SQLite store. */
class Stack {
  dir!: TempDir;
  server!: RunningNatsServer;
  nc!: NatsConnection;
  store!: SqliteEventStore;
  checkpoints!: SqliteCheckpointStore;
  app!: INestMicroservice;
  orchestrator!: Orchestrator;
  publisher!: JetStreamPublisher;

  constructor(private readonly leaseMs: number) {}

  async start(): Promise<void> {
    if (!existsSync(EXECUTOR)) {
      // `npm test` builds first; a direct `npx jest` run may not have.
      const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) throw new Error('build failed');
    }
    this.dir = tempDir('jobline-faults-');
    this.server = await startNatsServer({ storeDir: join(this.dir.path, 'nats') });
    this.nc = await connectNats({ servers: this.server.url, name: 'faults-test', overrides: { reconnectTimeWait: 200, reconnectJitter: 100 } });
    this.publisher = new JetStreamPublisher(jetstream(this.nc));
    this.store = new SqliteEventStore({ path: join(this.dir.path, 'events.db') });
    this.checkpoints = new SqliteCheckpointStore({ path: join(this.dir.path, 'checkpoints.db') });
    ({ app: this.app, orchestrator: this.orchestrator } = await createOrchestratorApp({
      eventStore: this.store,
      checkpoints: this.checkpoints,
      nc: this.nc,
      logger: quiet,
      leaseMs: this.leaseMs,
      cancelConfirmMs: 5000,
    }));
  }

  async stop(): Promise<void> {
    await this.app?.close();
    await this.orchestrator?.stop();
    await this.nc?.close();
    await this.store?.close();
    await this.checkpoints?.close();
    await this.server?.stop();
    this.dir?.remove();
  }

  async stopBus(): Promise<void> {
    await this.server.stop();
  }

  async startBus(): Promise<void> {
    this.server = await startNatsServer({ storeDir: join(this.dir.path, 'nats'), port: this.server.port });
  }

  path(name: string): string {
    return join(this.dir.path, name);
  }

  async submit(spec: JobSpecInput): Promise<string> {
    const jobId = randomUUID();
    await this.publisher.publish(subjects.submit('ops'), { jobId, spec }, { msgId: jobId });
    return jobId;
  }

  async history(jobId: string): Promise<JobEvent[]> {
    return (await this.store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  }

  async finished(jobIds: string[], timeoutMs: number): Promise<Map<string, JobEvent[]>> {
    const done = new Map<string, JobEvent[]>();
    await eventually(async () => {
      for (const id of jobIds) {
        if (done.has(id)) continue;
        const h = await this.history(id);
        if (TERMINAL.has(h.at(-1)?.type ?? '')) done.set(id, h);
      }
      return done.size === jobIds.length;
    }, timeoutMs, `${jobIds.length} jobs to finish`);
    return done;
  }

  /** A history is whole: contiguous revisions, it folds through the decider's evolve, it ends terminal. */
  async expectWhole(jobId: string): Promise<void> {
    const recs = await this.store.readStream(jobStreamName(jobId));
    expect(recs.map((r) => r.revision)).toEqual(recs.map((_r, i) => i));
    let job = initialState();
    for (const e of recs.map((r) => decodeJobEvent(r))) job = evolve(job, e);
    expect(TERMINAL_PHASES.has(job.phase)).toBe(true);
  }
}

const attemptOf = (e: JobEvent) => (e.data as { attempt?: number }).attempt;

/**
 * What the outage journeys check of every job: it ended once, succeeded, each started attempt ended
 * with its own report (none lost, none dropped), and a command ran only as an attempt the
 * history records as started (its marker file `ran-<jobId>-<attempt>`).
 */
async function expectOutageSurvived(stack: Stack, jobs: string[], histories: Map<string, JobEvent[]>): Promise<void> {
  const markers = new Set(readdirSync(stack.path('marks')));
  for (const jobId of jobs) {
    const h = histories.get(jobId)!;
    await stack.expectWhole(jobId);
    expect(h.map((e) => e.type)).not.toContain('JobLost');
    expect(h.filter((e) => TERMINAL.has(e.type) && !(e.type === 'JobCompleted' && (e.data as { exitCode: number }).exitCode !== 0))).toHaveLength(1);
    expect(h.at(-1)).toMatchObject({ type: 'JobCompleted', data: { exitCode: 0 } });
    const started = h.filter((e) => e.type === 'JobStarted').map(attemptOf);
    const completed = h.filter((e) => e.type === 'JobCompleted').map(attemptOf);
    for (const a of started) expect(completed).toContain(a);
    // An attempt given up before it started (its claim unanswered before the deadline) says so.
    for (const e of h.filter((x) => x.type === 'JobCompleted' && (x.data as { exitCode: number }).exitCode === 125)) {
      expect((e.data as { error?: string }).error).toMatch(/not started/);
    }
    for (const m of markers) {
      if (!m.startsWith(`ran-${jobId}-`)) continue;
      expect(started).toContain(Number(m.slice(`ran-${jobId}-`.length)));
    }
  }
}

/** A few dozen jobs: instant, sleeping, printing. Each leaves its marker; retries cover attempts given up before they started. */
function outageJobs(stack: Stack, n: number): JobSpecInput[] {
  const mark = `touch ${stack.path('marks')}/ran-$JOBLINE_ATTEMPT`;
  const kinds = [`${mark}`, `${mark}; sleep 3`, `${mark}; seq 1 20000`];
  return Array.from({ length: n }, (_v, i) => ({ command: kinds[i % 3], retry: { maxAttempts: 3, backoffSeconds: 0 } }));
}

describe('executors under faults, as separate processes', () => {
  describe('a nats-server outage of 30 s under 30 jobs', () => {
    const stack = new Stack(5000);
    const executors: ExecutorProcess[] = [];
    beforeAll(() => stack.start(), 120_000);
    afterAll(async () => {
      await Promise.all(executors.map(stopProcess));
      await stack.stop();
    });

    it('ends every job without a restart: none lost, none completed twice, no report dropped, every history whole', async () => {
      spawnSync('mkdir', ['-p', stack.path('marks')]);
      for (const id of ['faults-a', 'faults-b']) {
        executors.push(await startExecutorProcess({ natsUrl: stack.server.url, workRoot: stack.path('work'), executorId: id, capacity: 3, heartbeatMs: 500, leaseMs: 5000, verbose: true }));
      }
      const jobs: string[] = [];
      for (const spec of outageJobs(stack, 30)) jobs.push(await stack.submit(spec));
      await eventually(async () => (await stack.history(jobs[1])).some((e) => e.type === 'JobStarted'), 20_000, 'a sleeping job to run');

      const linesBefore = executors.map((e) => e.lines().length);
      await stack.stopBus();
      await new Promise((r) => setTimeout(r, 30_000));
      // Never spinning: a handful of lines over the whole outage, not ~900 a second.
      const logged = executors.map((e, i) => e.lines().length - linesBefore[i]);
      for (const n of logged) expect(n).toBeLessThan(60);
      await stack.startBus();

      const histories = await stack.finished(jobs, 120_000);
      // The same processes did it all: nothing was restarted.
      for (const e of executors) expect(e.child.exitCode).toBeNull();
      await expectOutageSurvived(stack, jobs, histories);
    }, 300_000);
  });

  describe('a nats-server outage of 3 minutes', () => {
    const stack = new Stack(5000);
    let executor: ExecutorProcess | undefined;
    beforeAll(() => stack.start(), 120_000);
    afterAll(async () => {
      await stopProcess(executor);
      await stack.stop();
    });

    it('ends every job afterwards without a restart, none lost or completed twice', async () => {
      spawnSync('mkdir', ['-p', stack.path('marks')]);
      executor = await startExecutorProcess({ natsUrl: stack.server.url, workRoot: stack.path('work'), executorId: 'long-outage', capacity: 3, heartbeatMs: 1000, leaseMs: 10_000 });
      const jobs: string[] = [];
      for (const spec of outageJobs(stack, 12)) jobs.push(await stack.submit(spec));
      await eventually(async () => (await stack.history(jobs[1])).some((e) => e.type === 'JobStarted'), 20_000, 'a sleeping job to run');
      await stack.stopBus();
      await new Promise((r) => setTimeout(r, 180_000));
      await stack.startBus();
      const histories = await stack.finished(jobs, 120_000);
      expect(executor.child.exitCode).toBeNull();
      await expectOutageSurvived(stack, jobs, histories);
    }, 420_000);
  });

  describe('an executor paused (SIGSTOP) past its lease, with free slots, then resumed (SIGCONT)', () => {
    const LEASE = 4000;
    const stack = new Stack(LEASE);
    let paused: ExecutorProcess | undefined;
    let other: ExecutorProcess | undefined;
    beforeAll(() => stack.start(), 120_000);
    afterAll(async () => {
      await stopProcess(paused);
      await stopProcess(other);
      await stack.stop();
    });

    it('runs no lost attempt (the markers prove it) and stops the attempts declared lost while it slept', async () => {
      spawnSync('mkdir', ['-p', stack.path('marks')]);
      const marks = stack.path('marks');
      const config = { natsUrl: stack.server.url, workRoot: stack.path('work'), capacity: 4, heartbeatMs: 400, leaseMs: LEASE, graceMs: 1000 };
      paused = await startExecutorProcess({ ...config, executorId: 'sleeper' });
      const tag = `${60 + Math.floor(Math.random() * 1000)}.${process.pid}`;
      const retry = { maxAttempts: 2, backoffSeconds: 0 };
      // Running when the executor is paused: its process goes on meanwhile (it is not the executor).
      const running = await stack.submit({ command: `touch ${marks}/ran-$JOBLINE_ATTEMPT; sleep ${tag}; touch ${marks}/end-$JOBLINE_ATTEMPT`, retry });
      await eventually(() => existsSync(join(marks, `ran-${running}-1`)), 20_000, 'the first job to run');
      await eventually(() => processesWith(`sleep ${tag}`).length === 1, 10_000, 'its sleep');

      paused.child.kill('SIGSTOP');
      // Dispatched to the paused executor before it turns suspect: the run order waits in its socket.
      const queued = await stack.submit({ command: `touch ${marks}/ran-$JOBLINE_ATTEMPT`, retry });
      const dispatched = await eventually(async () => (await stack.history(queued)).find((e) => e.type === 'JobDispatched'), 10_000, 'the dispatch');
      expect(dispatched.data).toMatchObject({ executorId: 'sleeper', attempt: 1 });

      // Both attempts are declared lost at the lease; their retries run on another executor.
      await eventually(async () => {
        const [a, b] = await Promise.all([stack.history(running), stack.history(queued)]);
        return a.some((e) => e.type === 'JobLost') && b.some((e) => e.type === 'JobLost');
      }, LEASE + 10_000, 'both attempts to be lost');
      other = await startExecutorProcess({ ...config, executorId: 'other' });
      await eventually(() => existsSync(join(marks, `ran-${queued}-2`)) && existsSync(join(marks, `ran-${running}-2`)), 20_000, 'the retries to run elsewhere');

      paused.child.kill('SIGCONT');
      // Told by its lease reply and by the stop order: the lost attempt's process is stopped.
      await eventually(() => processesWith(`sleep ${tag}`).length === 1, 15_000, 'only the retry\'s sleep to be left');
      const lostPid = processesWith(`sleep ${tag}`);
      // The pulled run order of the lost attempt goes through the claim and is refused: it never runs.
      await new Promise((r) => setTimeout(r, 3000));
      expect(existsSync(join(marks, `ran-${queued}-1`))).toBe(false);
      expect(existsSync(join(marks, `end-${running}-1`))).toBe(false);
      expect(paused.child.exitCode).toBeNull();

      const queuedHistory = await stack.history(queued);
      expect(queuedHistory.filter((e) => e.type === 'JobStarted').map(attemptOf)).toEqual([2]);
      expect(queuedHistory.find((e) => e.type === 'JobStarted')?.data).toMatchObject({ executorId: 'other' });
      const runningHistory = await stack.history(running);
      expect(runningHistory.filter((e) => e.type === 'JobStarted').map((e) => (e.data as { executorId: string }).executorId)).toEqual(['sleeper', 'other']);
      // The retry on the other executor is the one left, and it is the current attempt.
      expect(lostPid).toHaveLength(1);
      spawnSync('kill', ['-TERM', String(lostPid[0])]);
      await stack.finished([running, queued], 30_000);
      for (const id of [running, queued]) await stack.expectWhole(id);
    }, 120_000);
  });

  const noSshd = sshdUnavailable();
  (noSshd ? describe.skip : describe)(`kill -9 of an SSH executor process${noSshd ? ` (skipped: ${noSshd})` : ''}`, () => {
    const LEASE = 3000;
    const stack = new Stack(LEASE);
    let sshd: TestSshd;
    let executor: ExecutorProcess | undefined;
    beforeAll(async () => {
      await stack.start();
      sshd = await startTestSshd(stack.dir.path);
    }, 120_000);
    afterAll(async () => {
      await stopProcess(executor);
      await sshd?.stop();
      await stack.stop();
    });

    it('takes its remote attempts\' processes with it, well within the lease', async () => {
      const inventory = {
        hosts: [
          {
            name: 'crashy',
            address: '127.0.0.1',
            port: sshd.port,
            user: sshd.user,
            privateKeyFile: sshd.userKeyFile,
            hostKey: sshd.hostKey,
            capacity: 2,
            remoteRoot: stack.path('remote'),
          },
        ],
        connectTimeoutMs: 5000,
        keepaliveIntervalMs: 1000,
      };
      executor = await startExecutorProcess({ natsUrl: stack.server.url, workRoot: stack.path('work'), sshInventory: inventory, heartbeatMs: 300, leaseMs: LEASE });
      const tag = `${300 + Math.floor(Math.random() * 1000)}.${process.pid}`;
      const jobs = [
        await stack.submit({ command: `sh -c 'sleep ${tag} & sleep ${tag}'`, target: { executor: 'ssh', host: 'crashy' } }),
        await stack.submit({ command: ['sleep', tag], target: { executor: 'ssh', host: 'crashy' } }),
      ];
      await eventually(() => processesWith(`sleep ${tag}`).length === 3, 30_000, 'the remote sleeps to run');

      executor.child.kill('SIGKILL');
      const killedAt = Date.now();
      // Nothing of the attempts: no sleep, no shell, no watchdog (all carry the tag on their command line).
      await eventually(() => processesWith(tag, true).length === 0, LEASE, 'no remote process left');
      expect(Date.now() - killedAt).toBeLessThan(LEASE);
      // And the orchestrator, hearing nothing more, declares them lost at the lease.
      const histories = await stack.finished(jobs, LEASE + 15_000);
      for (const h of histories.values()) expect(h.map((e) => e.type)).toContain('JobLost');
    }, 120_000);
  });
});
