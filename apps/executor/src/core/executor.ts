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
import { headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/nats-core';
import {
  ClaimReplySchema,
  isJobId,
  LeaseReplySchema,
  STREAMS,
  subjects,
  type AttemptReport,
  type ClaimRequest,
  type ExecutorHeartbeat,
  type LogStream,
  type RunAttemptMessage,
  type StopAttemptMessage,
} from '../../../../libs/contracts/src';
import { outputGlobProblem, type ArtifactCollector } from './artifacts';
import { bundleCommand, materializeBundle, type Bundles } from './bundle';
import { buildCommand, type Command } from './command';
import { resolveExecutorTimings, type ExecutorTimings } from './executor-options';
import { LeaseKeeper } from './lease-keeper';
import { jetStreamLogSink, LogBatcher, type LogBatcherOptions } from './log-batcher';
import { portableLogHasher, type LogHasherFactory } from './log-hasher';
import { LaunchError, type ExitStatus, type ProcessRunner, type RunningProcess } from './process-runner.port';
import { reportKey, type ReportOutbox } from './report-outbox.port';
import { ReportSender } from './report-sender';
import { StepTracker, stepToken } from './step-tracker';
import { STEP_GATE_VAR, STEP_TOKEN_VAR, stepGateFile } from '../../../../libs/contracts/src/shell-script';
import { SpanKind, TRACERS, contextFromHeaders, endSpan, startSpan, traceFields, withSpanContext, type Span } from '../../../../libs/messaging/src/trace-context';
import { hopMarks } from '../../../../libs/messaging/src/hop-marks';

export { EXECUTOR_DEFAULTS, type ExecutorTimings } from './executor-options';

/** pino-compatible: a logger instance can be passed as is. */
export interface ExecutorLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface ExecutorOptions extends Partial<ExecutorTimings> {
  /** Made by the caller with reconnects forever (connectNats); the executor never closes it. */
  nc: NatsConnection;
  /** A subject token: [A-Za-z0-9_-]{1,64}. */
  executorId: string;
  runner: ProcessRunner;
  /** Finished reports wait here until the bus has acknowledged them (see ReportOutbox). */
  outbox: ReportOutbox;
  labels?: Record<string, string>;
  /** The runtime, for heartbeats, e.g. 'node 20.20' or 'deno 2.9'. */
  runtime: string;
  logger: ExecutorLogger;
  /** Wall clock, for report timestamps and start deadlines (default: new Date()). */
  clock?: () => Date;
  /** Monotonic clock in ms, for intervals and pauses (default: performance.now()). */
  monotonic?: () => number;
  /** Batching of log output (defaults in LOG_BATCHER_DEFAULTS). */
  logs?: Omit<LogBatcherOptions, 'sink' | 'hasher'>;
  /** The sha256 of each attempt's log, reported as logSha256 (default: portableLogHasher, pure JavaScript; the Node entry passes node:crypto's). */
  logHasher?: LogHasherFactory;
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

/** The durable consumers an executor pulls from; stable names so a restarted executor resumes its queue. */
export const executorConsumers = (executorId: string) => ({
  work: `executor-${executorId}`,
  control: `executor-${executorId}-ctl`,
});

/** Exit code of a finished report for an attempt whose command never ran (refused deadline, stop before start...). */
export const NOT_STARTED_EXIT_CODE = 125;

type Phase = 'preparing' | 'claiming' | 'granted' | 'running' | 'finishing';

interface Active {
  jobId: string;
  attempt: number;
  phase: Phase;
  /** Monotonic time the last claim request was sent, and the time its grant arrived. */
  claimSentAt?: number;
  grantedAt?: number;
  proc?: RunningProcess;
  /** Why it is to be stopped, when that was asked before its process was there. */
  stopRequested: string | null;
  /** A lease reply no longer listed it: it is not current, and any report of it would be fenced. */
  notCurrent?: boolean;
  shutdown?: Promise<void>;
  done?: Promise<void>;
  /** The attempt's span (tracing on), a child of the relay's run order, and its W3C headers for what the attempt sends. */
  span: Span | null;
  trace: Readonly<Record<string, string>> | null;
}

type ClaimOutcome = 'granted' | 'refused' | 'expired' | 'stopped';

/**
 * Runs attempts handed to this executor over JetStream and reports what happened.
 * Runtime-neutral: everything platform-specific sits behind the ProcessRunner, the
 * ReportOutbox and the NatsConnection passed in.
 *
 * Fencing (README "How attempts are fenced"): an attempt's command runs only after the
 * orchestrator granted its claim (JobStarted stored), before its start deadline, and never
 * right after a pause the orchestrator may not have survived; a lease reply that no longer
 * lists a running attempt stops it. Finished reports go through the outbox.
 */
export class Executor {
  private readonly o: ExecutorOptions & ExecutorTimings & { clock: () => Date; monotonic: () => number };
  private readonly js: JetStreamClient;
  private readonly active = new Map<string, Active>();
  /** Insertion-ordered so the oldest entries are forgotten first. */
  private readonly seen = new Set<string>();
  private readonly disposing = new Set<Promise<void>>();
  /** Finished reports being written to the outbox (the slot is free already). */
  private readonly storing = new Set<Promise<void>>();
  private readonly reports: ReportSender;
  private lease: LeaseKeeper;
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
  private leaseRepliesMissing = 0;
  private closedLogged = false;

  constructor(options: ExecutorOptions) {
    const timings = resolveExecutorTimings(options);
    this.o = { clock: () => new Date(), monotonic: () => performance.now(), ...definedOnly(options), ...timings };
    this.js = jetstream(options.nc);
    this.lease = new LeaseKeeper(this.o.leaseMs, this.o.heartbeatMs, this.o.monotonic());
    this.reports = new ReportSender({
      js: this.js,
      outbox: options.outbox,
      logger: options.logger,
      ackTimeoutMs: this.o.requestTimeoutMs,
      retryMinMs: this.o.retryMinMs,
      retryMaxMs: this.o.retryMaxMs,
      isClosed: () => this.o.nc.isClosed(),
    });
  }

  get executorId(): string {
    return this.o.executorId;
  }

  /** The resolved numbers this executor works with. */
  get timings(): ExecutorTimings {
    const { capacity, heartbeatMs, leaseMs, graceMs, requestTimeoutMs, retryMinMs, retryMaxMs, stopDeliveryMs, dedupeSize } = this.o;
    return { capacity, heartbeatMs, leaseMs, graceMs, requestTimeoutMs, retryMinMs, retryMaxMs, stopDeliveryMs, dedupeSize };
  }

  /** The attempts this executor holds now: being prepared, claimed, run or reported. */
  get running(): { jobId: string; attempt: number }[] {
    return [...this.active.values()].map((a) => ({ jobId: a.jobId, attempt: a.attempt }));
  }

  /** Finished reports not yet acknowledged by the bus (they are in the outbox). */
  get pendingReports(): number {
    return this.reports.pending;
  }

  /**
   * Ensures its consumers (the streams must exist), re-sends what a previous run left in the
   * outbox, then takes work and heartbeats until stop().
   */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error('executor already started');
    const work = await this.consumer('work');
    const control = await this.consumer('control');

    this.state = 'running';
    this.stopping = new AbortController();
    this.instanceId = crypto.randomUUID();
    this.startedAt = this.o.clock().toISOString();
    // A new instance knows nothing of what the orchestrator decided while it was not there.
    this.lease = new LeaseKeeper(this.o.leaseMs, this.o.heartbeatMs, this.o.monotonic());
    await this.reports.resume();
    this.heartbeat(true);
    this.heartbeatTimer = setInterval(() => this.heartbeat(true), this.o.heartbeatMs);
    this.loops = [this.workLoop(work), this.controlLoop(control)];
    void this.o.nc.closed().then((err) => this.onConnectionClosed(err));
    this.o.logger.info(
      { executorId: this.o.executorId, capacity: this.o.capacity, sandbox: this.o.runner.kind, heartbeatMs: this.o.heartbeatMs, leaseMs: this.o.leaseMs },
      'executor started',
    );
  }

  /**
   * Stops taking work. By default running attempts are shut down (SIGTERM, graceMs,
   * SIGKILL) and their finished reports sent; with killRunning false they are left to
   * finish. Reports the bus has not acknowledged within stopDeliveryMs stay in the outbox.
   */
  async stop(options: { killRunning?: boolean } = {}): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.stopping.abort();
    this.wake?.();
    await this.fetchBatch?.close().catch(() => undefined);
    if (options.killRunning ?? true) for (const a of this.active.values()) this.stopAttempt(a, 'executor stopping');
    while (this.active.size > 0) await Promise.allSettled([...this.active.values()].map((a) => a.done));
    await Promise.allSettled([...this.disposing, ...this.storing]);
    await this.reports.stop(this.o.stopDeliveryMs);
    await this.ctlMessages?.close().catch(() => undefined);
    await Promise.allSettled(this.loops);
    clearInterval(this.heartbeatTimer);
    this.state = 'idle';
    this.o.logger.info({ executorId: this.o.executorId }, 'executor stopped');
  }

  // ---- taking work -------------------------------------------------------------------

  /** Creates (or brings up to date) one of its durable consumers and returns it. */
  private async consumer(which: 'work' | 'control'): Promise<Consumer> {
    const names = executorConsumers(this.o.executorId);
    const jsm = await jetstreamManager(this.o.nc);
    if (which === 'work') {
      await ensureConsumer(jsm, STREAMS.work, names.work, subjects.work(this.o.executorId));
      return this.js.consumers.get(STREAMS.work, names.work);
    }
    await ensureConsumer(jsm, STREAMS.control, names.control, subjects.control(this.o.executorId));
    return this.js.consumers.get(STREAMS.control, names.control);
  }

  private async workLoop(initial: Consumer): Promise<void> {
    let consumer: Consumer | null = initial;
    let delay = this.o.retryMinMs;
    let failing = false;
    while (this.live()) {
      if (this.o.available && !this.o.available()) {
        await this.pause(this.o.heartbeatMs);
        continue;
      }
      const free = this.o.capacity - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      try {
        // After a failure the consumer is made again: it may be gone (deleted, or the bus lost its store).
        consumer ??= await this.consumer('work');
        // Ask for no more than the free slots: a message pulled is a message this executor must run.
        const batch = await consumer.fetch({ max_messages: free, expires: 30_000 });
        this.fetchBatch = batch;
        if (!this.live()) {
          await batch.close();
          break;
        }
        for await (const m of batch) this.onRun(m);
        if (failing) this.o.logger.info({ executorId: this.o.executorId }, 'pulling work again');
        failing = false;
        delay = this.o.retryMinMs;
      } catch (err) {
        if (!this.live()) break;
        // Logged once per streak: a long outage must not flood the log.
        if (!failing) this.o.logger.warn({ err, executorId: this.o.executorId }, 'pulling work failed; retrying with back-off');
        failing = true;
        consumer = null;
        await this.pause(delay);
        delay = Math.min(delay * 2, this.o.retryMaxMs);
      } finally {
        this.fetchBatch = undefined;
      }
    }
  }

  private async controlLoop(initial: Consumer): Promise<void> {
    let consumer: Consumer | null = initial;
    let delay = this.o.retryMinMs;
    while (this.live()) {
      try {
        consumer ??= await this.consumer('control');
        // consume() re-issues its pulls after a reconnect by itself; it ends when its consumer is
        // gone, and then this loop makes the consumer again.
        const messages = await consumer.consume({ max_messages: 16, abort_on_missing_resource: true });
        this.ctlMessages = messages;
        if (!this.live()) {
          await messages.close();
          break;
        }
        for await (const m of messages) {
          this.onStop(m);
          delay = this.o.retryMinMs;
        }
      } catch (err) {
        if (!this.live()) break;
        this.o.logger.warn({ err, executorId: this.o.executorId }, 'reading stop orders failed; retrying with back-off');
      }
      consumer = null;
      if (!this.live()) break;
      await this.pause(delay);
      delay = Math.min(delay * 2, this.o.retryMaxMs);
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
    hopMarks.record?.(msg.jobId, 'executor.run');
    const parent = contextFromHeaders(m.headers);
    const span = startSpan(TRACERS.executor, 'attempt', parent, {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.destination.name': m.subject,
        'jobline.job.id': msg.jobId,
        'jobline.attempt': msg.attempt,
        'jobline.owner': msg.owner,
        'jobline.executor.id': this.o.executorId,
        'jobline.sandbox': this.o.runner.kind,
      },
    });
    const trace = span ? traceFields(withSpanContext(parent, span)) : null;
    const a: Active = { jobId: msg.jobId, attempt: msg.attempt, phase: 'preparing', stopRequested: null, span, trace };
    this.active.set(key, a);
    a.done = this.runAttempt(a, msg)
      .then(
        () => endSpan(a.span),
        (err) => {
          endSpan(a.span, err);
          this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'attempt failed unexpectedly');
        },
      )
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
    this.stopAttempt(a, `stop order (${String(msg.reason)})`);
  }

  private stopAttempt(a: Active, why: string): void {
    if (a.phase === 'finishing') return;
    this.o.logger.info({ jobId: a.jobId, attempt: a.attempt, why }, 'stopping attempt');
    if (!a.proc) {
      a.stopRequested ??= why;
      return;
    }
    a.shutdown ??= a.proc
      .shutdown(this.o.graceMs)
      .catch((err) => this.o.logger.warn({ err, jobId: a.jobId, attempt: a.attempt }, 'shutting an attempt down failed'));
  }

  // ---- one attempt -------------------------------------------------------------------

  private async runAttempt(a: Active, msg: RunAttemptMessage): Promise<void> {
    const { runner } = this.o;
    const startBy = msg.startBy ? Date.parse(msg.startBy) : Date.parse(msg.dispatchedAt) + this.lease.leaseMs;
    const claimedAt = this.o.clock();

    // Prepared before the claim, so that a granted claim is followed by the launch at once.
    let prepared: { cmd: Command; bundleFile?: string } | { error: string; exitCode: number };
    try {
      const bundleFile = msg.bundleDigest ? await this.bundleOf(msg.bundleDigest) : undefined;
      const cmd = msg.bundleDigest ? bundleCommand(msg.spec) : buildCommand(msg.spec);
      prepared = { cmd, ...(bundleFile ? { bundleFile } : {}) };
    } catch (err) {
      prepared = { error: err instanceof Error ? err.message : String(err), exitCode: err instanceof LaunchError ? err.exitCode : 127 };
    }

    const outcome = await this.claim(a, msg, startBy, claimedAt);
    if (outcome === 'refused') return;
    if (outcome !== 'granted') {
      // No grant: nothing ran. Said so durably, since the claim may have been recorded with its answer lost.
      const why = outcome === 'expired' ? `not started: no answer to its claim before its start deadline ${new Date(startBy).toISOString()}` : 'not started: the executor stopped';
      return this.notStarted(a, claimedAt, why);
    }
    if ('error' in prepared) {
      this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt, error: prepared.error }, 'attempt could not start');
      return this.notStarted(a, claimedAt, prepared.error, prepared.exitCode);
    }
    // Paused between the claim and now: the orchestrator may have given up on us meanwhile.
    if (!this.lease.grantStillFresh(a.claimSentAt!, this.o.monotonic()) && !(await this.confirmCurrent(a))) {
      this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt }, 'not started: the orchestrator no longer counts on the attempt (paused past its lease)');
      return;
    }
    if (a.stopRequested) return this.notStarted(a, claimedAt, `not started: ${a.stopRequested} before its command started`);
    if (this.o.clock().getTime() > startBy) {
      return this.notStarted(a, claimedAt, `not started: its start deadline ${new Date(startBy).toISOString()} passed`);
    }

    const base = { jobId: msg.jobId, attempt: msg.attempt, executorId: this.o.executorId };
    let proc: RunningProcess;
    const launchedAt = this.o.clock();
    // Staged pipelines: a fresh boundary token per attempt, read (and unset) by the steps script.
    const token = msg.spec.steps?.length ? stepToken() : null;
    const attemptId = `${msg.jobId}-${msg.attempt}`;
    // Where the script waits after a step with outputs, when this executor collects them.
    const gate = token && msg.spec.steps!.some((s) => s.outputs?.length) && this.o.artifacts?.gateFolder && this.o.artifacts.openGate ? this.o.artifacts.gateFolder(attemptId) : null;
    try {
      proc = await runner.launch({
        attemptId,
        argv: prepared.cmd.argv,
        env: token ? { ...prepared.cmd.env, [STEP_TOKEN_VAR]: token, ...(gate ? { [STEP_GATE_VAR]: gate } : {}) } : prepared.cmd.env,
        cwd: prepared.cmd.cwd,
        resources: msg.spec.resources,
        ...(prepared.bundleFile ? { bundleFile: prepared.bundleFile } : {}),
      });
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt, error }, 'attempt could not start');
      return this.notStarted(a, launchedAt, error, err instanceof LaunchError ? err.exitCode : 127);
    }
    a.proc = proc;
    a.phase = 'running';
    hopMarks.record?.(a.jobId, 'executor.launched');
    if (a.stopRequested) this.stopAttempt(a, a.stopRequested);
    const startedAt = this.o.clock();

    const batcher = new LogBatcher({
      ...this.o.logs,
      sink: jetStreamLogSink(this.js, msg.jobId, msg.attempt, { nc: this.o.nc, owner: msg.owner }, a.trace),
      hasher: (this.o.logHasher ?? portableLogHasher)(),
      stopWaiting: this.stopping.signal,
    });
    const staged = token ? this.stepTracker(msg, token, batcher, a.trace, gate ? proc : null) : null;
    const tracker = staged?.tracker ?? null;
    const sink: Sink = tracker ?? { feed: (s, d) => batcher.write(s, d), end: () => undefined };
    const pumps = Promise.all([pump(proc.stdout, 'stdout', sink), pump(proc.stderr, 'stderr', sink)]);
    let status: ExitStatus;
    try {
      status = await proc.wait();
    } catch (err) {
      this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'waiting for an attempt failed');
      status = { exitCode: 255, signal: null, oomKilled: false, usage: null };
    }
    a.phase = 'finishing';
    await pumps;
    const steps = tracker ? await tracker.finish(status.exitCode) : [];
    if (msg.spec.outputs?.length) await this.collectOutputs(msg, batcher);
    try {
      await batcher.flush();
    } catch (err) {
      this.o.logger.error({ err, jobId: a.jobId, attempt: a.attempt }, 'some log output could not be stored');
    }
    // The step reports first, as long as the bus takes them at once (the finished report repeats them anyway).
    if (staged) await staged.reported(this.o.requestTimeoutMs);
    const finishedAt = this.o.clock();
    // Undefined when some output could not be stored: the digest would not describe the stored log.
    const logSha256 = batcher.sha256;
    // Its process is gone: the slot is free while the report is written to the outbox (before its
    // first publish); the report does not wait for the next attempt, nor the next for its fsync.
    a.span?.setAttributes({ 'jobline.exit_code': status.exitCode, ...(status.signal ? { 'jobline.signal': status.signal } : {}), 'jobline.oom_killed': status.oomKilled, 'jobline.log_bytes': batcher.bytes });
    this.track(this.reports.send({
      kind: 'finished',
      ...base,
      exitCode: status.exitCode,
      signal: status.signal,
      oomKilled: status.oomKilled,
      durationMs: Math.max(0, finishedAt.getTime() - startedAt.getTime()),
      finishedAt: finishedAt.toISOString(),
      usage: status.usage,
      logBytes: batcher.bytes,
      ...(logSha256 !== undefined ? { logSha256 } : {}),
      ...(steps.length ? { steps } : {}),
    }, a.trace));
    // The workspace is released after the slot: removing a big one must not delay the report or the next attempt.
    const disposal = proc
      .dispose()
      .catch((err) => this.o.logger.warn({ err, jobId: a.jobId, attempt: a.attempt }, 'releasing an attempt failed'))
      .finally(() => this.disposing.delete(disposal));
    this.disposing.add(disposal);
  }

  /** Staged pipelines: markers into the log, each step's start and end reported as it happens (the finished report repeats the ends). */
  private stepTracker(
    msg: RunAttemptMessage,
    token: string,
    batcher: LogBatcher,
    trace: Readonly<Record<string, string>> | null,
    /** Set when this executor collects per-step outputs (the script waits at its gate). */
    gated: RunningProcess | null,
  ): { tracker: StepTracker; reported(ms: number): Promise<void> } {
    const who = { jobId: msg.jobId, executorId: this.o.executorId };
    // One after the other, each once the previous is acknowledged, so the history has them in the order they happened.
    // Not waited for by stop(): the finished report repeats every step's end, and an unsent start is only a live detail.
    let previous: Promise<void> = Promise.resolve();
    const report = (r: Extract<AttemptReport, { kind: 'step-started' | 'step-finished' }>) => {
      previous = previous
        .then(async () => {
          await this.reports.send(r, trace);
          await this.reports.delivered(reportKey(r));
        })
        .catch((err) => this.o.logger.warn({ err, jobId: r.jobId, attempt: r.attempt, step: r.step }, 'a step report could not be sent'));
    };
    const tracker = new StepTracker({
      steps: msg.spec.steps ?? [],
      attempt: msg.attempt,
      token,
      write: (stream, data) => batcher.write(stream, data),
      cut: () => batcher.cut(),
      clock: this.o.clock,
      onStarted: (step) => report({ kind: 'step-started', ...who, ...step }),
      onEnded: async (step) => {
        const outputs = msg.spec.steps?.[step.step - 1]?.outputs ?? [];
        let result = step;
        if (outputs.length && !step.interrupted) {
          const artifacts = await this.collectStepOutputs(msg, token, step.step, outputs, batcher, gated);
          // Its notes are part of its output.
          result = { ...step, logEnd: batcher.cut(), ...(artifacts ? { artifacts } : {}) };
        }
        report({ kind: 'step-finished', ...who, ...result });
        return result;
      },
    });
    const reported = async (ms: number) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([previous, new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    };
    return { tracker, reported };
  }

  /**
   * Asks the orchestrator to record the attempt as started: a core NATS request whose body is
   * the `started` report. Waits first for a fresh lease (after a start or a pause); retries
   * with back-off while there is no answer, until the start deadline.
   */
  private async claim(a: Active, msg: RunAttemptMessage, startBy: number, startedAt: Date): Promise<ClaimOutcome> {
    a.phase = 'claiming';
    const { runner } = this.o;
    const body: ClaimRequest = {
      kind: 'started',
      jobId: msg.jobId,
      attempt: msg.attempt,
      executorId: this.o.executorId,
      startedAt: startedAt.toISOString(),
      sandbox: runner.kind,
      ...(runner.note ? { sandboxNote: runner.note } : {}),
    };
    const data = JSON.stringify(body);
    const claimHeaders = a.trace ? natsHeaders() : undefined;
    if (claimHeaders && a.trace) for (const k of Object.keys(a.trace)) claimHeaders.set(k, a.trace[k]);
    let delay = this.o.retryMinMs;
    let unanswered = 0;
    for (;;) {
      if (!this.live()) return 'stopped';
      const left = startBy - this.o.clock().getTime();
      if (left <= 0) {
        this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt, unanswered }, 'giving up the attempt: no answer to its claim before its start deadline');
        return 'expired';
      }
      if (!this.lease.fresh) {
        // After a start or a pause: the orchestrator must have heard from this instance first.
        this.heartbeatSoon();
        await this.lease.answeredAfter(this.lease.lastPauseAt, Math.min(left, this.o.retryMaxMs), this.stopping.signal);
        continue;
      }
      a.claimSentAt = this.o.monotonic();
      hopMarks.record?.(a.jobId, 'executor.claimSent');
      try {
        const reply = ClaimReplySchema.safeParse(safeJson(await this.o.nc.request(subjects.claim(msg.jobId), data, { timeout: Math.min(this.o.requestTimeoutMs, left), ...(claimHeaders ? { headers: claimHeaders } : {}) })));
        if (reply.success) {
          if (reply.data.granted) {
            a.grantedAt = this.o.monotonic();
            a.phase = 'granted';
            hopMarks.record?.(a.jobId, 'executor.granted');
            return 'granted';
          }
          this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt, code: reply.data.code, message: reply.data.message }, 'claim refused: the attempt does not run');
          return 'refused';
        }
        this.o.logger.warn({ jobId: a.jobId, attempt: a.attempt }, 'claim answered with something that is not a claim reply; retrying');
      } catch (err) {
        if (unanswered === 0) this.o.logger.warn({ err, jobId: a.jobId, attempt: a.attempt }, 'claim not answered; retrying until its start deadline');
      }
      unanswered++;
      await this.pause(Math.min(delay, Math.max(0, startBy - this.o.clock().getTime())));
      delay = Math.min(delay * 2, this.o.retryMaxMs);
    }
  }

  /** After a pause between grant and launch: whether a lease reply to a heartbeat sent now still lists the attempt. */
  private async confirmCurrent(a: Active): Promise<boolean> {
    const since = this.o.monotonic();
    this.heartbeat(false);
    // Until answered, or until something else (a stop order, stop()) decides for the attempt.
    while (this.live() && !a.stopRequested) {
      if (await this.lease.answeredAfter(since, this.o.requestTimeoutMs, this.stopping.signal)) break;
      this.heartbeat(false);
    }
    return !a.notCurrent;
  }

  private track(p: Promise<void>): void {
    const tracked = p.finally(() => this.storing.delete(tracked));
    this.storing.add(tracked);
  }

  private async notStarted(a: Active, at: Date, error: string, exitCode = NOT_STARTED_EXIT_CODE): Promise<void> {
    a.phase = 'finishing';
    const finishedAt = this.o.clock();
    await this.reports.send({
      kind: 'finished',
      jobId: a.jobId,
      attempt: a.attempt,
      executorId: this.o.executorId,
      exitCode,
      signal: null,
      oomKilled: false,
      durationMs: Math.max(0, finishedAt.getTime() - at.getTime()),
      finishedAt: finishedAt.toISOString(),
      usage: null,
      logBytes: 0,
      error,
    }, a.trace);
    a.span?.setAttribute('jobline.not_started', error);
  }

  private async bundleOf(digest: string): Promise<string> {
    if (!this.o.bundles) throw new LaunchError(`this executor cannot fetch bundles (job bundle ${digest})`);
    return materializeBundle(digest, this.o.bundles);
  }

  /**
   * A step's own outputs, while its script waits at the gate: every process of the attempt is
   * stopped (SIGSTOP) so nothing can swap a checked path for a link, the files are collected as
   * `<jobId>/<attempt>/<step>`, then the gate opens and the processes go on (SIGCONT). Problems are
   * notes in the job's stderr log, never a failure. Without a gate (this executor does not collect
   * artifacts) a note says so and the script did not wait.
   */
  private async collectStepOutputs(msg: RunAttemptMessage, token: string, step: number, outputs: string[], batcher: LogBatcher, proc: RunningProcess | null): Promise<{ files: number; bytes: number } | null> {
    const notes: string[] = [];
    let artifacts: { files: number; bytes: number } | null = null;
    const attemptId = `${msg.jobId}-${msg.attempt}`;
    const collector = this.o.artifacts;
    const problem = outputs.map(outputGlobProblem).find((p) => p !== null);
    if (!proc || !collector?.openGate) notes.push(`outputs of step ${step} not collected: this executor does not collect artifacts`);
    else {
      proc.signal('SIGSTOP');
      try {
        if (problem) notes.push(`outputs of step ${step} not collected: ${problem}`);
        else {
          const r = await collector.collect({ jobId: msg.jobId, attempt: msg.attempt, attemptId, outputs, step });
          notes.push(...r.notes.map((n) => `step ${step}: ${n}`));
          if (r.files.length) artifacts = { files: r.files.length, bytes: r.bytes };
          this.o.logger.info({ jobId: msg.jobId, attempt: msg.attempt, step, files: r.files.length, bytes: r.bytes }, 'step artifacts collected');
        }
      } catch (err) {
        this.o.logger.warn({ err, jobId: msg.jobId, attempt: msg.attempt, step }, 'collecting step artifacts failed');
        notes.push(`outputs of step ${step} not collected: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await collector.openGate(attemptId, stepGateFile(token, step)).catch((err) => this.o.logger.error({ err, jobId: msg.jobId, step }, 'opening a step gate failed; the script goes on after its wait'));
        proc.signal('SIGCONT');
      }
    }
    for (const note of notes) {
      const held = batcher.write('stderr', new TextEncoder().encode(`jobline: ${note}\n`));
      if (held) await held;
    }
    return artifacts;
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

  // ---- heartbeats and leases ---------------------------------------------------------

  /** Sends a heartbeat as a request; the answer is a lease reply. `tick`: from the periodic timer (measures pauses). */
  private heartbeat(tick: boolean): void {
    if (!this.live()) return;
    const now = this.o.monotonic();
    if (tick) {
      const late = this.lease.tick(now);
      if (late > 0) {
        this.o.logger.warn(
          { executorId: this.o.executorId, lateMs: Math.round(late), running: this.active.size },
          'this executor was paused; no attempt starts before the orchestrator confirms its lease, and those it no longer counts on are stopped',
        );
      }
    }
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
      heartbeatMs: this.o.heartbeatMs,
      ...this.o.runner.hostState?.(),
    };
    let reply: Promise<Msg>;
    try {
      reply = this.o.nc.request(subjects.heartbeat(this.o.executorId), JSON.stringify(hb), { timeout: this.o.requestTimeoutMs });
    } catch (err) {
      reply = Promise.reject(err);
    }
    reply.then(
      (m) => this.onLeaseReply(now, m),
      (err) => this.onNoLeaseReply(err),
    );
  }

  private onLeaseReply(sentAt: number, m: Msg): void {
    const parsed = LeaseReplySchema.safeParse(safeJson(m));
    if (!parsed.success || parsed.data.executorId !== this.o.executorId || parsed.data.instanceId !== this.instanceId) {
      this.o.logger.warn({ executorId: this.o.executorId }, 'ignored an answer to a heartbeat that is not this instance\'s lease reply');
      return;
    }
    if (this.leaseRepliesMissing > 0) this.o.logger.info({ executorId: this.o.executorId, missed: this.leaseRepliesMissing }, 'lease replies again');
    this.leaseRepliesMissing = 0;
    const reply = parsed.data;
    const current = new Set(reply.current.map((c) => `${c.jobId}/${c.attempt}`));
    // A positive statement: the orchestrator no longer counts on these (lost, timed out, superseded).
    for (const [key, a] of this.active) {
      if (a.grantedAt === undefined || a.grantedAt >= sentAt || current.has(key)) continue;
      a.notCurrent = true;
      this.stopAttempt(a, 'no longer current (the lease reply does not list it)');
    }
    this.lease.answered(sentAt, reply.leaseMs);
  }

  private onNoLeaseReply(err: unknown): void {
    if (!this.live()) return;
    // Logged once per streak. No attempt is stopped for this: a bus outage must not kill running jobs.
    if (this.leaseRepliesMissing++ === 0) this.o.logger.warn({ err, executorId: this.o.executorId }, 'no lease reply to a heartbeat; running attempts go on');
  }

  /** Coalesces the heartbeats of attempts that end together into one. */
  private heartbeatSoon(): void {
    if (this.heartbeatQueued) return;
    this.heartbeatQueued = true;
    setTimeout(() => {
      this.heartbeatQueued = false;
      this.heartbeat(false);
    }, 0);
  }

  private onConnectionClosed(err: void | Error): void {
    if (this.state !== 'running' || this.closedLogged) return;
    this.closedLogged = true;
    clearInterval(this.heartbeatTimer);
    this.stopping.abort();
    this.wake?.();
    // The caller made the connection; with reconnects forever it closes only for good. Its main exits.
    this.o.logger.error({ err, executorId: this.o.executorId }, 'the NATS connection closed for good: no more heartbeats or work');
  }

  /** Running and connected: loops and heartbeats go on. */
  private live(): boolean {
    return this.state === 'running' && !this.o.nc.isClosed();
  }

  private remember(key: string): void {
    this.seen.add(key);
    if (this.seen.size > this.o.dedupeSize) this.seen.delete(this.seen.values().next().value as string);
  }

  /** A sleep that stop() cuts short. */
  private pause(ms: number): Promise<void> {
    const signal = this.stopping.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
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

/** Where a pump hands what it reads: the log batcher, or a staged job's StepTracker in front of it. */
interface Sink {
  feed(stream: LogStream, data: Uint8Array): Promise<void> | void;
  end(stream: LogStream): Promise<void> | void;
}

async function pump(source: AsyncIterable<Uint8Array>, stream: LogStream, sink: Sink): Promise<void> {
  try {
    for await (const data of source) {
      const held = sink.feed(stream, data);
      if (held) await held;
    }
  } catch {
    // A pipe torn down after the process exited ends its output; what was read is kept.
  }
  await sink.end(stream);
}

function safeJson(m: Msg): unknown {
  try {
    return m.json();
  } catch {
    return undefined;
  }
}

/** The options without the keys given as undefined, so that none overrides a default. */
function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
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
  if (typeof v.dispatchedAt !== 'string' || Number.isNaN(Date.parse(v.dispatchedAt))) return 'dispatchedAt is not a time';
  if (v.startBy !== undefined && (typeof v.startBy !== 'string' || Number.isNaN(Date.parse(v.startBy)))) return 'startBy is not a time';
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
