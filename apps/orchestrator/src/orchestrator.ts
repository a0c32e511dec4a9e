import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription as NatsSubscription } from '@nats-io/nats-core';
import {
  AttemptReportSchema,
  CancelJobMessageSchema,
  ExecutorHeartbeatSchema,
  OwnerSchema,
  PackagingResultSchema,
  PurgeJobMessageSchema,
  SubmitJobMessageSchema,
  ValidationError,
  parseWith,
  subjects,
  type AttemptReport,
} from '../../../libs/contracts/src';
import type { CheckpointStore, EventStore } from '../../../libs/event-store/src/event-store.port';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { purgeLogs } from '../../../libs/messaging/src/logs';
import { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
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
}

/**
 * The orchestrator's core, host-neutral: the Nest microservice (commands.controller.ts)
 * and `jobline dev` both drive it. Incoming messages are validated here, once.
 */
export class Orchestrator {
  readonly handler: JobCommandHandler;
  readonly relay: Relay;
  readonly scheduler: Scheduler;
  private heartbeats: NatsSubscription | null = null;
  private artifacts: Promise<ArtifactStore> | null = null;

  constructor(private readonly o: OrchestratorOptions) {
    this.handler = new JobCommandHandler({ eventStore: o.eventStore, clock: o.clock, onRecorded: o.onRecorded });
    this.relay = new Relay({
      eventStore: o.eventStore,
      checkpoints: o.checkpoints,
      publisher: new JetStreamPublisher(jetstream(o.nc)),
      jobs: this.handler,
      logger: o.logger,
      packager: o.packager ?? false,
    });
    this.scheduler = new Scheduler({
      eventStore: o.eventStore,
      handler: this.handler,
      logger: o.logger,
      leaseMs: o.leaseMs,
      cancelConfirmMs: o.cancelConfirmMs,
      clock: o.clock,
    });
  }

  async start(): Promise<void> {
    await this.relay.start();
    this.heartbeats = this.o.nc.subscribe(subjects.heartbeatsAll, {
      callback: (err, msg) => {
        if (err) return;
        const hb = parseWith(ExecutorHeartbeatSchema, safeJson(msg.data));
        if (hb.ok) this.scheduler.onHeartbeat(hb.value);
        else this.o.logger.warn(`orchestrator: ignored a malformed heartbeat on ${msg.subject}`);
      },
    });
    await this.scheduler.start();
    this.o.logger.log('orchestrator: relay and scheduler running');
  }

  async stop(): Promise<void> {
    this.heartbeats?.unsubscribe();
    await this.scheduler.stop();
    await this.relay.stop();
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
  report(payload: unknown, causationId: string | null = null): Promise<HandledCommand> {
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
  packaged(payload: unknown, causationId: string | null = null): Promise<HandledCommand> {
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
