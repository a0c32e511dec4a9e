import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstreamManager,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import {
  isJobId,
  STREAMS,
  subjects,
  type AttemptReport,
  type ExecutorHeartbeat,
  type LogStream,
  type RunAttemptMessage,
  type StopAttemptMessage,
} from '../../../../libs/contracts/src';
import { outputGlobProblem, type ArtifactCollector } from './artifacts';
import { bundleCommand, materializeBundle, type Bundles } from './bundle';
import { buildCommand } from './command';
import { jetStreamLogSink, LogBatcher, type LogBatcherOptions } from './log-batcher';
import { LaunchError, type ExitStatus, type ProcessRunner, type RunningProcess } from './process-runner.port';

/** pino-compatible: a logger instance can be passed as is. */
export interface ExecutorLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface ExecutorOptions {
  nc: NatsConnection;
  /** A subject token: [A-Za-z0-9_-]{1,64}. */
  executorId: string;
  runner: ProcessRunner;
  /** Attempts run at the same time (default 4); no more work is pulled while all slots are busy. */
  capacity?: number;
  /** Heartbeat period (default 1000 ms); one is also sent at start and whenever a slot frees. */
  heartbeatMs?: number;
  /** Time between SIGTERM and SIGKILL when an attempt is stopped (default 5000 ms). */
  graceMs?: number;
  labels?: Record<string, string>;
  /** The runtime, for heartbeats, e.g. 'node 20.20' or 'deno 2.9'. */
  runtime: string;
  logger: ExecutorLogger;
  clock?: () => Date;
  /** Batching of log output (defaults in LOG_BATCHER_DEFAULTS). */
  logs?: Omit<LogBatcherOptions, 'sink'>;
  /** How many jobId+attempt pairs are remembered to ignore a re-delivered run (default 10,000). */
  dedupeSize?: number;
  /** Where bundles are fetched from and kept; without it, a job with a bundle cannot start here. */
  bundles?: Bundles;
  /** Collects a job's `outputs` after its run, before the finished report; without it, outputs are ignored (with a note in the job's log). */
  artifacts?: ArtifactCollector;
  /**
   * While this returns false (e.g. an SSH host is unreachable) no heartbeat is sent and no
   * work is pulled, so the scheduler's lease expires and it marks this executor's attempts lost.
   */
  available?: () => boolean;
}

export const EXECUTOR_DEFAULTS = { capacity: 4, heartbeatMs: 1000, graceMs: 5000, dedupeSize: 10_000 } as const;

/** The durable consumers an executor pulls from; stable names so a restarted executor resumes its queue. */
export const executorConsumers = (executorId: string) => ({
  work: `executor-${executorId}`,
  control: `executor-${executorId}-ctl`,
});

interface Active {
  jobId: string;
  attempt: number;
  proc?: RunningProcess;
  /** A stop arrived while the process was still being launched. */
  stopRequested: boolean;
  shutdown?: Promise<void>;
  done?: Promise<void>;
}

const RETRY_MS = 1000;

/**
 * Runs attempts handed to this executor over JetStream and reports what happened.
 * Runtime-neutral: everything platform-specific sits behind the ProcessRunner and the
 * NatsConnection passed in.
 */
export class Executor {
  private readonly o: Required<Omit<ExecutorOptions, 'labels' | 'logs' | 'available' | 'bundles' | 'artifacts'>> &
    Pick<ExecutorOptions, 'labels' | 'logs' | 'available' | 'bundles' | 'artifacts'>;
  private readonly js: JetStreamClient;
  private readonly active = new Map<string, Active>();
  /** Insertion-ordered so the oldest entries are forgotten first. */
  private readonly seen = new Set<string>();
  private readonly disposing = new Set<Promise<void>>();
  private state: 'idle' | 'running' | 'stopping' = 'idle';
  private instanceId = '';
  private startedAt = '';
  private loops: Promise<void>[] = [];
  private fetchBatch: ConsumerMessages | undefined;
  private ctlMessages: ConsumerMessages | undefined;
  private wake: (() => void) | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private heartbeatQueued = false;
  private stopping = new AbortController();

  constructor(options: ExecutorOptions) {
    this.o = { ...EXECUTOR_DEFAULTS, clock: () => new Date(), ...options };
    if (!Number.isInteger(this.o.capacity) || this.o.capacity < 1) throw new Error('capacity must be a positive integer');
    this.js = jetstream(options.nc);
  }

  get executorId(): string {
    return this.o.executorId;
  }

  /** The attempts this executor is running now. */
  get running(): { jobId: string; attempt: number }[] {
    return [...this.active.values()].map((a) => ({ jobId: a.jobId, attempt: a.attempt }));
  }

  /** Ensures its consumers (the streams must exist), then takes work and heartbeats until stop(). */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error('executor already started');
    const names = executorConsumers(this.o.executorId);
    const jsm = await jetstreamManager(this.o.nc);
    await ensureConsumer(jsm, STREAMS.work, names.work, subjects.work(this.o.executorId));
    await ensureConsumer(jsm, STREAMS.control, names.control, subjects.control(this.o.executorId));
    const work = await this.js.consumers.get(STREAMS.work, names.work);
    const control = await this.js.consumers.get(STREAMS.control, names.control);

    this.state = 'running';
    this.stopping = new AbortController();
    this.instanceId = crypto.randomUUID();
    this.startedAt = this.o.clock().toISOString();
    this.heartbeat();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.o.heartbeatMs);
    this.loops = [this.workLoop(work), this.controlLoop(control)];
    this.o.logger.info({ executorId: this.o.executorId, capacity: this.o.capacity, sandbox: this.o.runner.kind }, 'executor started');
  }

  /**
   * Stops taking work. By default running attempts are shut down (SIGTERM, graceMs,
   * SIGKILL) and their finished reports published; with killRunning false they are
   * left to finish. Heartbeats stop last.
   */
  async stop(options: { killRunning?: boolean } = {}): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.stopping.abort();
    this.wake?.();
    await this.fetchBatch?.close();
    if (options.killRunning ?? true) for (const a of this.active.values()) this.shutdownAttempt(a);
    while (this.active.size > 0) await Promise.allSettled([...this.active.values()].map((a) => a.done));
    await Promise.allSettled([...this.disposing]);
    await this.ctlMessages?.close();
    await Promise.allSettled(this.loops);
    clearInterval(this.heartbeatTimer);
    this.state = 'idle';
    this.o.logger.info({ executorId: this.o.executorId }, 'executor stopped');
  }

  private async workLoop(consumer: Consumer): Promise<void> {
    while (this.state === 'running') {
      if (this.o.available && !this.o.available()) {
        await this.pause(RETRY_MS);
        continue;
      }
      const free = this.o.capacity - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      try {
        // Ask for no more than the free slots: a message pulled is a message this executor must run.
        const batch = await consumer.fetch({ max_messages: free, expires: 30_000 });
        this.fetchBatch = batch;
        if (this.state !== 'running') {
          await batch.close();
          break;
        }
        for await (const m of batch) this.onRun(m);
      } catch (err) {
        if (this.state !== 'running') break;
        this.o.logger.warn({ err, executorId: this.o.executorId }, 'pulling work failed; retrying');
        await this.pause(RETRY_MS);
      } finally {
        this.fetchBatch = undefined;
      }
    }
  }

  private async controlLoop(consumer: Consumer): Promise<void> {
    while (this.state === 'running') {
      try {
        const messages = await consumer.consume({ max_messages: 16 });
        this.ctlMessages = messages;
        if (this.state !== 'running') {
          await messages.close();
          break;
        }
        for await (const m of messages) this.onStop(m);
      } catch (err) {
        if (this.state !== 'running') break;
        this.o.logger.warn({ err, executorId: this.o.executorId }, 'reading stop orders failed; retrying');
        await this.pause(RETRY_MS);
      }
    }
  }

  private onRun(m: JsMsg): void {
    if (this.state !== 'running') {
      // Pulled while stopping: hand it back for the next instance rather than drop it.
      m.nak();
      return;
    }
    m.ack();
    const msg = parseRun(m);
    if (typeof msg === 'string') {
      this.o.logger.warn({ executorId: this.o.executorId, seq: m.seq, problem: msg }, 'invalid run message dropped');
      return;
    }
    const key = `${msg.jobId}/${msg.attempt}`;
    if (this.seen.has(key)) {
      this.o.logger.info({ jobId: msg.jobId, attempt: msg.attempt }, 'duplicate run message ignored');
      return;
    }
    this.remember(key);
    const a: Active = { jobId: msg.jobId, attempt: msg.attempt, stopRequested: false };
    this.active.set(key, a);
    a.done = this.runAttempt(a, msg)
      .catch((err) => this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'attempt failed unexpectedly'))
      .finally(() => {
        this.active.delete(key);
        this.wake?.();
        this.heartbeatSoon();
      });
  }

  private onStop(m: JsMsg): void {
    m.ack();
    let msg: Partial<StopAttemptMessage>;
    try {
      msg = m.json<Partial<StopAttemptMessage>>();
    } catch {
      this.o.logger.warn({ executorId: this.o.executorId, seq: m.seq }, 'invalid stop message dropped');
      return;
    }
    const a = this.active.get(`${msg.jobId}/${msg.attempt}`);
    if (!a) return; // finished already, or never ran here: nothing to stop.
    this.o.logger.info({ jobId: a.jobId, attempt: a.attempt, reason: msg.reason }, 'stopping attempt');
    this.shutdownAttempt(a);
  }

  private shutdownAttempt(a: Active): void {
    if (!a.proc) {
      a.stopRequested = true;
      return;
    }
    a.shutdown ??= a.proc
      .shutdown(this.o.graceMs)
      .catch((err) => this.o.logger.warn({ err, jobId: a.jobId, attempt: a.attempt }, 'shutting an attempt down failed'));
  }

  private async runAttempt(a: Active, msg: RunAttemptMessage): Promise<void> {
    const { runner } = this.o;
    const base = { jobId: msg.jobId, attempt: msg.attempt, executorId: this.o.executorId };
    const sandbox = { sandbox: runner.kind, ...(runner.note ? { sandboxNote: runner.note } : {}) };
    let proc: RunningProcess;
    const launchedAt = this.o.clock();
    try {
      let bundleFile: string | undefined;
      if (msg.bundleDigest) {
        if (!this.o.bundles) throw new LaunchError(`this executor cannot fetch bundles (job bundle ${msg.bundleDigest})`);
        bundleFile = await materializeBundle(msg.bundleDigest, this.o.bundles);
      }
      const cmd = msg.bundleDigest ? bundleCommand(msg.spec) : buildCommand(msg.spec);
      proc = await runner.launch({
        attemptId: `${msg.jobId}-${msg.attempt}`,
        argv: cmd.argv,
        env: cmd.env,
        cwd: cmd.cwd,
        resources: msg.spec.resources,
        ...(bundleFile ? { bundleFile } : {}),
      });
    } catch (err) {
      const finishedAt = this.o.clock();
      const error = err instanceof Error ? err.message : String(err);
      this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt, error }, 'attempt could not start');
      await this.report({ kind: 'started', ...base, startedAt: launchedAt.toISOString(), ...sandbox });
      await this.report({
        kind: 'finished',
        ...base,
        exitCode: err instanceof LaunchError ? err.exitCode : 127,
        signal: null,
        oomKilled: false,
        durationMs: Math.max(0, finishedAt.getTime() - launchedAt.getTime()),
        finishedAt: finishedAt.toISOString(),
        usage: null,
        logBytes: 0,
        error,
      });
      return;
    }
    a.proc = proc;
    if (a.stopRequested) this.shutdownAttempt(a);
    const startedAt = this.o.clock();
    const started = this.report({ kind: 'started', ...base, startedAt: startedAt.toISOString(), ...sandbox, pid: proc.pid });

    const batcher = new LogBatcher({ ...this.o.logs, sink: jetStreamLogSink(this.js, msg.jobId, msg.attempt) });
    const pumps = Promise.all([pump(proc.stdout, 'stdout', batcher), pump(proc.stderr, 'stderr', batcher)]);
    let status: ExitStatus;
    try {
      status = await proc.wait();
    } catch (err) {
      this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'waiting for an attempt failed');
      status = { exitCode: 255, signal: null, oomKilled: false, usage: null };
    }
    await pumps;
    if (msg.spec.outputs?.length) await this.collectOutputs(msg, batcher);
    try {
      await batcher.flush();
    } catch (err) {
      this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'some log output could not be stored');
    }
    const finishedAt = this.o.clock();
    await started;
    await this.report({
      kind: 'finished',
      ...base,
      exitCode: status.exitCode,
      signal: status.signal,
      oomKilled: status.oomKilled,
      durationMs: Math.max(0, finishedAt.getTime() - startedAt.getTime()),
      finishedAt: finishedAt.toISOString(),
      usage: status.usage,
      logBytes: batcher.bytes,
    });
    // The workspace is released after the slot: removing a big one must not delay the report or the next attempt.
    const disposal = proc
      .dispose()
      .catch((err) => this.o.logger.warn({ err, jobId: a.jobId, attempt: a.attempt }, 'releasing an attempt failed'))
      .finally(() => this.disposing.delete(disposal));
    this.disposing.add(disposal);
  }

  /** Gathers the attempt's outputs (its processes are gone); any problem becomes a note in the job's stderr log, never a failure. */
  private async collectOutputs(msg: RunAttemptMessage, batcher: LogBatcher): Promise<void> {
    const outputs = msg.spec.outputs ?? [];
    const notes: string[] = [];
    const problem = outputs.map(outputGlobProblem).find((p) => p !== null);
    if (problem) notes.push(`outputs not collected: ${problem}`);
    else if (!this.o.artifacts) notes.push('outputs not collected: this executor does not collect artifacts');
    else {
      try {
        const r = await this.o.artifacts.collect({ jobId: msg.jobId, attempt: msg.attempt, attemptId: `${msg.jobId}-${msg.attempt}`, outputs });
        notes.push(...r.notes);
        this.o.logger.info({ jobId: msg.jobId, attempt: msg.attempt, files: r.files.length, bytes: r.bytes }, 'artifacts collected');
      } catch (err) {
        this.o.logger.warn({ err, jobId: msg.jobId, attempt: msg.attempt }, 'collecting artifacts failed');
        notes.push(`outputs not collected: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    for (const note of notes) {
      this.o.logger.warn({ jobId: msg.jobId, attempt: msg.attempt, note }, 'artifacts');
      const held = batcher.write('stderr', new TextEncoder().encode(`jobline: ${note}\n`));
      if (held) await held;
    }
  }

  /** Publishes a report and waits for JetStream to store it, retrying with backoff; the message id makes a retry harmless. */
  private async report(r: AttemptReport): Promise<void> {
    const data = JSON.stringify(r);
    const msgID = `${r.jobId}.${r.attempt}.${r.kind}`;
    for (let tries = 0; ; tries++) {
      try {
        await this.js.publish(subjects.report(r.jobId), data, { msgID });
        return;
      } catch (err) {
        if (tries >= 5) {
          this.o.logger.error({ err, jobId: r.jobId, attempt: r.attempt, kind: r.kind }, 'report could not be published');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** tries));
      }
    }
  }

  private heartbeat(): void {
    if (this.state === 'idle') return;
    if (this.o.available && !this.o.available()) return;
    const hb: ExecutorHeartbeat = {
      executorId: this.o.executorId,
      instanceId: this.instanceId,
      kind: this.o.runner.kind === 'ssh' || this.o.runner.kind === 'ssh-systemd' ? 'ssh' : 'local',
      capacity: this.o.capacity,
      running: this.running,
      labels: this.o.labels ?? {},
      sandbox: this.o.runner.kind,
      runtime: this.o.runtime,
      startedAt: this.startedAt,
      sentAt: this.o.clock().toISOString(),
      ...this.o.runner.hostState?.(),
    };
    try {
      this.o.nc.publish(subjects.heartbeat(this.o.executorId), JSON.stringify(hb));
    } catch (err) {
      this.o.logger.warn({ err, executorId: this.o.executorId }, 'heartbeat not sent');
    }
  }

  /** Coalesces the heartbeats of attempts that end together into one. */
  private heartbeatSoon(): void {
    if (this.heartbeatQueued) return;
    this.heartbeatQueued = true;
    setTimeout(() => {
      this.heartbeatQueued = false;
      this.heartbeat();
    }, 0);
  }

  private remember(key: string): void {
    this.seen.add(key);
    if (this.seen.size > this.o.dedupeSize) this.seen.delete(this.seen.values().next().value as string);
  }

  /** A sleep that stop() cuts short. */
  private pause(ms: number): Promise<void> {
    const signal = this.stopping.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
    });
  }
}

async function pump(source: AsyncIterable<Uint8Array>, stream: LogStream, batcher: LogBatcher): Promise<void> {
  try {
    for await (const data of source) {
      const held = batcher.write(stream, data);
      if (held) await held;
    }
  } catch {
    // A pipe torn down after the process exited ends its output; what was read is kept.
  }
}

function parseRun(m: JsMsg): RunAttemptMessage | string {
  let v: Partial<RunAttemptMessage>;
  try {
    v = m.json<Partial<RunAttemptMessage>>();
  } catch {
    return 'not JSON';
  }
  if (v?.kind !== 'run') return 'kind is not run';
  if (!isJobId(v.jobId)) return 'jobId is not a job id';
  if (!Number.isInteger(v.attempt) || (v.attempt as number) < 1) return 'attempt is not a positive integer';
  if (typeof v.spec !== 'object' || v.spec === null) return 'spec is missing';
  return v as RunAttemptMessage;
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, name: string, filter: string): Promise<void> {
  const config: Partial<ConsumerConfig> = {
    durable_name: name,
    filter_subject: filter,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  };
  try {
    const info = await jsm.consumers.info(stream, name);
    if (info.config.filter_subject !== filter) await jsm.consumers.update(stream, name, { filter_subject: filter });
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, config);
  }
}

function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound;
}
