import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription as NatsSubscription } from '@nats-io/nats-core';
import {
  AttemptReportSchema,
  CancelJobMessageSchema,
  ClaimRequestSchema,
  ExecutorHeartbeatSchema,
  OwnerSchema,
  PackagingResultSchema,
  PurgeJobMessageSchema,
  NotFoundError,
  StaleAttemptError,
  SubmitJobMessageSchema,
  ValidationError,
  parseWith,
  subjects,
  type AttemptReport,
  type ClaimReply,
} from '../../../libs/contracts/src';
import type { CheckpointStore, EventStore } from '../../../libs/event-store/src/event-store.port';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { purgeLogs } from '../../../libs/messaging/src/logs';
import { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { SpanKind, TRACERS, contextFromHeaders, inSpan, tracingActive } from '../../../libs/messaging/src/trace-context';
import { decide, type JobCommand } from '../../../libs/domain/src';
import { JobCommandHandler, type HandledCommand } from './job-command.handler';
import type { Logger } from './logger';
import { Relay } from './relay';
import { Scheduler } from './scheduler';

export interface OrchestratorOptions {
  eventStore: EventStore;
  checkpoints: CheckpointStore;
  nc: NatsConnection;
  logger: Logger;
  /** An executor silent this long has lost its attempts (default 10 s). */
  leaseMs?: number;
  /** Time an executor has to confirm a cancel before the job is closed anyway (default 30 s). */
  cancelConfirmMs?: number;
  clock?: () => Date;
  /** A packager builds bundles for jobs with a source (default false: such jobs fail packaging at once). */
  packager?: boolean;
  /** Told about every command that appended events (metrics); must not throw. */
  onRecorded?: (handled: HandledCommand) => void;
  /** The heartbeat period assumed for executors that do not announce theirs (default 1000 ms): 3 missed, and an executor gets no new work. */
  heartbeatMs?: number;
}

/** Every orchestrator answers claims in this queue group: one of them records each. */
export const CLAIMS_QUEUE = 'orchestrators';

/**
 * The orchestrator's core, host-neutral: the Nest microservice (commands.controller.ts)
 * and `jobline dev` both drive it. Incoming messages are validated here, once.
 */
export class Orchestrator {
  readonly handler: JobCommandHandler;
  readonly relay: Relay;
  readonly scheduler: Scheduler;
  private heartbeats: NatsSubscription | null = null;
  private claims: NatsSubscription | null = null;
  private busStatus: (AsyncIterable<{ type: string }> & { stop?: () => void }) | null = null;
  private artifacts: Promise<ArtifactStore> | null = null;

  constructor(private readonly o: OrchestratorOptions) {
    this.handler = new JobCommandHandler({ eventStore: o.eventStore, clock: o.clock, onRecorded: o.onRecorded });
    this.relay = new Relay({
      eventStore: o.eventStore,
      checkpoints: o.checkpoints,
      publisher: new JetStreamPublisher(jetstream(o.nc)),
      core: o.nc,
      jobs: this.handler,
      logger: o.logger,
      packager: o.packager ?? false,
      leaseMs: o.leaseMs,
    });
    this.scheduler = new Scheduler({
      eventStore: o.eventStore,
      handler: this.handler,
      logger: o.logger,
      leaseMs: o.leaseMs,
      cancelConfirmMs: o.cancelConfirmMs,
      heartbeatMs: o.heartbeatMs,
      clock: o.clock,
    });
  }

  async start(): Promise<void> {
    await this.relay.start();
    this.busStatus = this.o.nc.status();
    void this.watchBus(this.busStatus);
    // Heartbeats are requests: the answer is the executor's lease (the attempts still current there).
    this.heartbeats = this.o.nc.subscribe(subjects.heartbeatsAll, {
      callback: (err, msg) => {
        if (err) return;
        const hb = parseWith(ExecutorHeartbeatSchema, safeJson(msg.data));
        if (!hb.ok) {
          this.o.logger.warn(`orchestrator: ignored a malformed heartbeat on ${msg.subject}`);
          return;
        }
        this.scheduler.onHeartbeat(hb.value).then(
          (lease) => {
            if (lease && msg.reply) msg.respond(JSON.stringify(lease));
          },
          (e) => this.o.logger.error(`orchestrator: heartbeat of ${hb.value.executorId} not answered: ${(e as Error).message}`),
        );
      },
    });
    this.claims = this.o.nc.subscribe(subjects.claimsAll, { queue: CLAIMS_QUEUE, callback: (err, msg) => void (err ? undefined : this.answerClaim(msg)) });
    await this.scheduler.start();
    this.o.logger.log('orchestrator: relay and scheduler running');
  }

  async stop(): Promise<void> {
    this.claims?.unsubscribe();
    this.heartbeats?.unsubscribe();
    this.busStatus?.stop?.();
    await this.scheduler.stop();
    await this.relay.stop();
  }

  /**
   * `jobline.claim.<jobId>`: an executor asks to start an attempt. Granted once JobStarted is
   * stored (or was already, for this attempt on this executor); refused when the attempt is
   * not current. Throws on a transient failure (the store is down...): then no answer is
   * given and the executor asks again.
   */
  async claim(payload: unknown, subject?: string): Promise<ClaimReply> {
    const parsed = parseWith(ClaimRequestSchema, payload);
    if (!parsed.ok) return { granted: false, code: 'invalid_argument', message: `invalid claim: ${parsed.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` };
    const r = parsed.value;
    if (subject !== undefined && subject !== subjects.claim(r.jobId)) return { granted: false, code: 'invalid_argument', message: `a claim of job ${r.jobId} sent on ${subject}` };
    const stale = (message: string): ClaimReply => ({ granted: false, code: 'stale', message });
    const before = (await this.handler.load(r.jobId)).job;
    if (before.phase === 'none') return { granted: false, code: 'not_found', message: `no job ${r.jobId}` };
    if (before.attempt === r.attempt && before.executorId !== r.executorId) return stale(`attempt ${r.attempt} was dispatched to ${before.executorId}, not ${r.executorId}`);
    try {
      const { job } = await this.report(r, 'last-event');
      // A claim of an attempt that already finished changes nothing: it must not run again.
      if (job.attempt !== r.attempt || job.phase !== 'running') return stale(`attempt ${r.attempt} is not running (job is ${job.phase} at attempt ${job.attempt})`);
      return { granted: true };
    } catch (err) {
      if (err instanceof StaleAttemptError) return stale(err.message);
      if (err instanceof NotFoundError) return { granted: false, code: 'not_found', message: err.message };
      throw err;
    }
  }

  private async answerClaim(msg: Msg): Promise<void> {
    let reply: ClaimReply;
    try {
      const claim = () => this.claim(safeJson(msg.data), msg.subject);
      reply = !tracingActive()
        ? await claim()
        : await inSpan(TRACERS.orchestrator, 'process jobline.claim.*', contextFromHeaders(msg.headers), {
            kind: SpanKind.CONSUMER,
            attributes: { 'messaging.system': 'nats', 'messaging.operation.type': 'process', 'messaging.destination.name': msg.subject },
          }, async (span) => {
            const r = await claim();
            span?.setAttribute('jobline.claim.granted', r.granted);
            return r;
          });
    } catch (err) {
      this.o.logger.warn(`orchestrator: claim on ${msg.subject} not answered (the executor asks again): ${(err as Error).message}`);
      return;
    }
    if (!reply.granted) this.o.logger.log(`orchestrator: claim on ${msg.subject} refused (${reply.code}): ${reply.message}`);
    if (msg.reply) msg.respond(JSON.stringify(reply));
  }

  /** While its own connection is down the scheduler hears no executor, so it must not count their silence. */
  private async watchBus(status: AsyncIterable<{ type: string }>): Promise<void> {
    for await (const s of status) {
      if (s.type === 'disconnect') this.scheduler.busDown();
      else if (s.type === 'reconnect') this.scheduler.busBack();
    }
  }

  /** `jobline.cmd.<owner>.submit` */
  async submit(owner: string, payload: unknown): Promise<HandledCommand> {
    const who = this.validOwner(owner);
    const msg = parseWith(SubmitJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid submit command', msg.issues);
    const { jobId, spec, idempotencyKey, correlationId } = msg.value;
    const meta = { actor: who, causationId: null, correlationId: correlationId ?? jobId };
    const handled = await this.handler.execute(
      jobId,
      { type: 'SubmitJob', data: { jobId, owner: who, spec, now: this.now(), ...(idempotencyKey ? { idempotencyKey } : {}) } },
      meta,
    );
    if (handled.job.phase === 'packaging' && !this.o.packager) {
      // Without a packager the job would wait for its bundle forever; it fails, saying why.
      const failed = await this.handler.execute(
        jobId,
        { type: 'RecordPackagingFailed', data: { reason: 'this deployment has no packager: jobs with a source cannot be bundled yet', now: this.now() } },
        { ...meta, actor: 'orchestrator' },
      );
      return { job: failed.job, events: [...handled.events, ...failed.events] };
    }
    return handled;
  }

  /** `jobline.cmd.<owner>.cancel`: an owner can only cancel its own jobs. */
  async cancel(owner: string, payload: unknown, opts: { admin?: boolean } = {}): Promise<HandledCommand> {
    const who = this.validOwner(owner);
    const msg = parseWith(CancelJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid cancel command', msg.issues);
    const { jobId, reason, correlationId } = msg.value;
    const { job } = await this.handler.load(jobId);
    if (job.phase === 'none' || (!opts.admin && job.owner !== who)) {
      throw new ValidationError(`no job ${jobId} for owner ${who}`);
    }
    return this.handler.execute(
      jobId,
      { type: 'RequestCancel', data: { by: who, now: this.now(), ...(reason ? { reason } : {}) } },
      { actor: who, causationId: null, correlationId: correlationId ?? jobId },
    );
  }

  /**
   * `jobline.cmd.<owner>.purge`: deletes a finished job's logs and artifacts, then records
   * JobPurged, so whoever sees JobPurged finds the data gone. A crash between the two steps
   * is repaired by the redelivery (deleting again is harmless; a second JobPurged is never
   * written). Bundles are stored once per digest and shared by every job with the same
   * source, so they are left in place.
   */
  async purge(owner: string, payload: unknown, opts: { admin?: boolean } = {}): Promise<HandledCommand> {
    const who = this.validOwner(owner);
    const msg = parseWith(PurgeJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid purge command', msg.issues);
    const { jobId, correlationId } = msg.value;
    const { job } = await this.handler.load(jobId);
    if (job.phase === 'none' || (!opts.admin && job.owner !== who)) {
      throw new ValidationError(`no job ${jobId} for owner ${who}`);
    }
    const command: JobCommand = { type: 'PurgeJob', data: { by: who, now: this.now() } };
    // The decider's rules first (throws while the job is not finished): nothing is deleted from a running job.
    decide(command, job);
    // A finished job never becomes unfinished again, so the check above still holds after the deletion.
    const purgedChunks = await purgeLogs(await jetstreamManager(this.o.nc), jobId);
    this.artifacts ??= ArtifactStore.open(this.o.nc);
    await (await this.artifacts).deleteJob(jobId, job.attempt);
    this.o.logger.log(`orchestrator: purged job ${jobId} (${purgedChunks} log chunks, artifacts of ${job.attempt} attempt(s))`);
    return this.handler.execute(jobId, command, { actor: who, causationId: null, correlationId: correlationId ?? jobId });
  }

  /** `jobline.report.<jobId>`: an executor's account of an attempt. */
  report(payload: unknown, causationId: string | null | 'last-event' = 'last-event'): Promise<HandledCommand> {
    const parsed = parseWith(AttemptReportSchema, payload);
    if (!parsed.ok) throw new ValidationError('invalid attempt report', parsed.issues);
    const r: AttemptReport = parsed.value;
    const meta = { actor: `executor:${r.executorId}`, causationId, correlationId: r.jobId };
    if (r.kind === 'started') {
      const { attempt, executorId, startedAt, sandbox, sandboxNote, pid } = r;
      return this.handler.execute(r.jobId, { type: 'RecordStarted', data: { attempt, executorId, startedAt, sandbox, sandboxNote, pid } }, meta);
    }
    const { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes, error } = r;
    return this.handler.execute(
      r.jobId,
      { type: 'RecordFinished', data: { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes, ...(error ? { error } : {}) } },
      meta,
    );
  }

  /** `jobline.pkg.done.<jobId>`: a packager's result, recorded as JobPackaged (+ JobQueued) or JobPackagingFailed. */
  packaged(payload: unknown, causationId: string | null | 'last-event' = 'last-event'): Promise<HandledCommand> {
    const parsed = parseWith(PackagingResultSchema, payload);
    if (!parsed.ok) throw new ValidationError('invalid packaging result', parsed.issues);
    const r = parsed.value;
    const meta = { actor: 'packager', causationId, correlationId: r.jobId };
    if (r.kind === 'failed') return this.handler.execute(r.jobId, { type: 'RecordPackagingFailed', data: { reason: r.reason, now: this.now() } }, meta);
    const { bundleDigest, size, commit, dataDigests } = r;
    return this.handler.execute(
      r.jobId,
      { type: 'RecordPackaged', data: { bundleDigest, size, ...(commit ? { commit } : {}), ...(dataDigests ? { dataDigests } : {}), now: this.now() } },
      meta,
    );
  }

  private validOwner(owner: string): string {
    const ok = OwnerSchema.safeParse(owner);
    if (!ok.success) throw new ValidationError(`invalid owner ${JSON.stringify(owner)}`);
    return ok.data;
  }

  private now(): string {
    return (this.o.clock?.() ?? new Date()).toISOString();
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
