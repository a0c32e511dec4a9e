import { randomUUID } from 'node:crypto';
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
  IllegalStateError,
  QuotaExceededError,
  NotFoundError,
  RerunJobMessageSchema,
  StaleAttemptError,
  SubmitJobMessageSchema,
  ValidationError,
  parseWith,
  subjects,
  type AttemptReport,
  type ClaimReply,
} from '../../../libs/contracts/src';
import type { CheckpointStore, EventStore, SnapshotStore } from '../../../libs/event-store/src/event-store.port';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { BundleStore } from '../../../libs/messaging/src/bundle-store';
import { purgeLogs } from '../../../libs/messaging/src/logs';
import { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { SpanKind, TRACERS, contextFromHeaders, inSpan, tracingActive } from '../../../libs/messaging/src/trace-context';
import { hopMarks } from '../../../libs/messaging/src/hop-marks';
import { Quotas, queuedQuotaRefusal, rerunCommand, type Actor, type Job, type JobCommand } from '../../../libs/domain/src';
import { JobCommandHandler, type AppendGuard, type CommandMeta, type HandledCommand } from './job-command.handler';
import { KeyedMutex } from './keyed-mutex';
import type { Logger } from './logger';
import { Relay } from './relay';
import { Retention, type RetentionPolicy } from './retention';
import { Scheduler } from './scheduler';
import { LeaderLease, type LeaseHolder } from '../../../libs/messaging/src/leader-lease';

export interface OrchestratorOptions {
  eventStore: EventStore;
  checkpoints: CheckpointStore;
  /**
   * Snapshots of the scheduler's and the relay's lifecycle folds (`lifecycle:scheduler`,
   * `lifecycle:relay`), in the event store's own database: a start folds only what came after
   * the last one. Absent: every start folds the store from position 0.
   */
  snapshots?: SnapshotStore;
  /** A lifecycle snapshot every this many store positions (default 10,000). */
  snapshotEvery?: number;
  nc: NatsConnection;
  logger: Logger;
  /** An executor silent this long has lost its attempts (default 10 s). */
  leaseMs?: number;
  /** Time an executor has to confirm a cancel before the job is closed anyway (default 30 s). */
  cancelConfirmMs?: number;
  clock?: () => Date;
  /** A packager builds bundles for jobs with a source or data (default false: such jobs fail packaging at once). */
  packager?: boolean;
  /** Told about every command that appended events (metrics); must not throw. */
  onRecorded?: (handled: HandledCommand) => void;
  /** The heartbeat period assumed for executors that do not announce theirs (default 1000 ms): 3 missed, and an executor gets no new work. */
  heartbeatMs?: number;
  /**
   * One of several orchestrators (JOBLINE_LEADERSHIP=lease): only the holder of the leader
   * lease schedules, answers heartbeats, relays and signs checkpoints; every one handles
   * commands, reports and claims (each append is checked against the stream's revision).
   * Absent: this is the only orchestrator, always acting.
   */
  leadership?: { id: string; leaseMs: number; replicas?: number };
  /** The retention policy (default none: finished jobs are kept until purged by hand). */
  retention?: RetentionPolicy & { clock?: () => Date };
  /** Per-owner quotas and fair-share weights (JOBLINE_QUOTAS_FILE; default: no limits, equal weights). */
  quotas?: Quotas;
}

/** Where a command came from, as the edge that received it tells. */
export interface CommandSource {
  /**
   * The id of the command message (Jobline-Request-Id, else Nats-Msg-Id, else
   * `JOBLINE_CMD:<seq>`: see commandCauseOf): its events' causationId. Absent (a direct call),
   * an id of this call is made up.
   */
  causationId?: string;
  /** Sent on `jobline.adm.<admin>.<verb>`: the sender is an admin, who may act on any owner's job. */
  admin?: boolean;
}

/** What an orchestrator is doing: `single` always acts; with a lease, `leader` or `standby`. */
export type OrchestratorRole = 'single' | 'leader' | 'standby';

/** Without a lease, orchestrators answer claims in this queue group: one of them records each (see subscribeClaims). */
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
  private lease: LeaderLease | null = null;
  /** Leadership changes, applied one after the other. */
  private transitions: Promise<void> = Promise.resolve();
  private leading = false;
  private stopping = false;
  private readonly leadershipListeners: ((leader: boolean) => void | Promise<void>)[] = [];
  private bundles: Promise<BundleStore> | null = null;
  /** Held per bundle digest by retention while it removes one, and here while one is recorded. */
  private readonly bundleGate = new KeyedMutex();
  /** The retention policy's sweeper, when some age is configured. */
  readonly retention: Retention | null;
  readonly quotas: Quotas;

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
      snapshots: o.snapshots,
      snapshotEvery: o.snapshotEvery,
    });
    this.scheduler = new Scheduler({
      eventStore: o.eventStore,
      handler: this.handler,
      logger: o.logger,
      leaseMs: o.leaseMs,
      cancelConfirmMs: o.cancelConfirmMs,
      heartbeatMs: o.heartbeatMs,
      clock: o.clock,
      acting: () => this.acting(),
      snapshots: o.snapshots,
      snapshotEvery: o.snapshotEvery,
      quotas: o.quotas,
    });
    this.quotas = o.quotas ?? new Quotas();
    this.retention = Retention.enabled(o.retention)
      ? new Retention({
          eventStore: o.eventStore,
          checkpoints: o.checkpoints,
          handler: this.handler,
          logger: o.logger,
          policy: o.retention!,
          deleteJobData: async (jobId, attempts) => void (await this.deleteJobData(jobId, attempts)),
          bundles: { list: async () => (await this.bundleStore()).list(), delete: async (d) => (await this.bundleStore()).delete(d) },
          bundleGate: this.bundleGate,
          clock: o.retention!.clock ?? o.clock,
          acting: () => this.acting(),
        })
      : null;
  }

  /** Whether this orchestrator may schedule now: always when it is the only one, else while its lease is valid. */
  acting(): boolean {
    return this.lease ? this.lease.isLeader() : true;
  }

  get role(): OrchestratorRole {
    if (!this.o.leadership) return 'single';
    return this.acting() ? 'leader' : 'standby';
  }

  /** Who holds the leader lease as this orchestrator last saw it (null: single, or nobody). */
  get leader(): LeaseHolder | null {
    return this.lease?.holder ?? null;
  }

  /** Told (in order) when this orchestrator starts or stops leading; a single one is told true at start. */
  onLeadership(listener: (leader: boolean) => void | Promise<void>): void {
    this.leadershipListeners.push(listener);
    if (this.leading) this.transitions = this.transitions.then(() => listener(true));
  }

  async start(): Promise<void> {
    this.busStatus = this.o.nc.status();
    void this.watchBus(this.busStatus);
    this.subscribeClaims();
    if (!this.o.leadership) {
      await this.lead();
      await this.scheduler.start();
      await this.retention?.start();
      this.o.logger.log(`orchestrator: relay and scheduler running${this.retention ? ', retention policy on' : ''}`);
      return;
    }
    // A standby follows the history too, so that it takes over without reading it again.
    await this.scheduler.start();
    const { id, leaseMs, replicas } = this.o.leadership;
    this.lease = new LeaderLease({
      nc: this.o.nc,
      id,
      leaseMs,
      replicas,
      onChange: (leader) => {
        this.transitions = this.transitions.then(() => (leader ? this.lead() : this.standBy()));
      },
      onError: (err) => this.o.logger.warn(`orchestrator: leader lease: ${err.message}`),
    });
    await this.retention?.start();
    await this.lease.start();
    await this.transitions;
    this.o.logger.log(`orchestrator ${id}: ${this.acting() ? 'leading' : `standing by (leader: ${this.lease.holder?.id ?? 'unknown'})`}`);
  }

  /** Takes up what only the leader does: heartbeats, scheduling, the relay, the listeners' parts. */
  private async lead(): Promise<void> {
    if (this.leading || this.stopping) return;
    this.leading = true;
    // The last leader appended to the streams of the jobs it scheduled: read them, rather than find out by conflicts.
    this.handler.forgetKept();
    if (this.lease) {
      this.o.logger.log(`orchestrator ${this.o.leadership!.id}: leading (lease revision ${this.lease.term})`);
      this.scheduler.promote();
    }
    await this.relay.start();
    this.subscribeHeartbeats();
    for (const l of this.leadershipListeners) await l(true);
  }

  /**
   * Claims are judged on the job's history alone (is this attempt current?), so any
   * orchestrator may answer them. The only one answers in the queue group (several single ones
   * on one store share them). With a lease every orchestrator answers every claim, outside any
   * queue group: a leader frozen past its lease still receives claims (the server cannot tell
   * it is frozen), and a failover must not leave an attempt dispatched just before it without
   * an answer until its start deadline. The executor takes the first answer; the others find
   * the attempt started already (a repeated claim of a started attempt is granted again).
   */
  private subscribeClaims(): void {
    const queue = this.o.leadership ? {} : { queue: CLAIMS_QUEUE };
    this.claims = this.o.nc.subscribe(subjects.claimsAll, { ...queue, callback: (err, msg) => void (err ? undefined : this.answerClaim(msg)) });
  }

  /** Lost the lease (or stopping): stops at once what only the leader does. */
  private async standBy(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.handler.forgetKept();
    if (!this.stopping) this.o.logger.warn(`orchestrator ${this.o.leadership?.id ?? ''}: no longer the leader; standing by`);
    this.heartbeats?.unsubscribe();
    this.heartbeats = null;
    for (const l of this.leadershipListeners) await l(false);
    await this.relay.stop();
  }

  private subscribeHeartbeats(): void {
    // Heartbeats are requests: the answer is the executor's lease (the attempts still current there).
    this.heartbeats = this.o.nc.subscribe(subjects.heartbeatsAll, {
      callback: (err, msg) => {
        if (err) return;
        const hb = parseWith(ExecutorHeartbeatSchema, safeJson(msg.data));
        if (!hb.ok) {
          this.o.logger.warn(`orchestrator: ignored a malformed heartbeat on ${msg.subject}`);
          return;
        }
        // A leader whose lease ran out (paused, cut off) answers nobody: the next leader does.
        if (!this.acting()) return;
        this.scheduler.onHeartbeat(hb.value).then(
          (lease) => {
            if (lease && msg.reply && this.acting()) msg.respond(JSON.stringify(lease));
          },
          (e) => this.o.logger.error(`orchestrator: heartbeat of ${hb.value.executorId} not answered: ${(e as Error).message}`),
        );
      },
    });
  }

  async stop(): Promise<void> {
    this.claims?.unsubscribe();
    this.busStatus?.stop?.();
    // Stop leading first, then release the lease: a standby takes over at its next look.
    this.stopping = true;
    this.transitions = this.transitions.then(() => this.standBy());
    await this.transitions;
    await this.lease?.stop();
    await this.transitions;
    await this.retention?.stop();
    await this.scheduler.stop();
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
    // Judged on the stream as the command reads it (one read, under the job's lock): the job exists and the attempt is this executor's.
    const claimable = (before: Job): void => {
      if (before.phase === 'none') throw new NotFoundError(`no job ${r.jobId}`);
      if (before.attempt === r.attempt && before.executorId !== r.executorId) throw new StaleAttemptError(`attempt ${r.attempt} was dispatched to ${before.executorId}, not ${r.executorId}`);
    };
    const { attempt, executorId, startedAt, sandbox, sandboxNote, pid } = r;
    try {
      const { job } = await this.handler.execute(
        r.jobId,
        { type: 'RecordStarted', data: { attempt, executorId, startedAt, sandbox, sandboxNote, pid } },
        { actor: `executor:${executorId}`, causationId: 'dispatched' },
        { precondition: claimable },
      );
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
    const mark = hopMarks.record ? msg.subject.slice(msg.subject.lastIndexOf('.') + 1) : null;
    if (mark) hopMarks.record?.(mark, 'orchestrator.claim');
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
    if (mark) hopMarks.record?.(mark, 'orchestrator.claimAnswered');
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
  async submit(owner: string, payload: unknown, from: CommandSource = {}): Promise<HandledCommand> {
    const who = this.validOwner(owner);
    const msg = parseWith(SubmitJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid submit command', msg.issues);
    const { jobId, spec, idempotencyKey, correlationId } = msg.value;
    const meta: CommandMeta = { actor: who, causationId: causeOf(from), correlationId: correlationId ?? jobId };
    const handled = await this.admitted(who, jobId, (guard) =>
      this.handler.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: who, spec, now: this.now(), ...(idempotencyKey ? { idempotencyKey } : {}) } }, meta, { guard }),
    );
    if (handled.job.phase === 'packaging' && !this.o.packager) {
      // Without a packager the job would wait for its bundle forever; it fails, saying why.
      const failed = await this.handler.execute(
        jobId,
        { type: 'RecordPackagingFailed', data: { reason: 'this deployment has no packager: jobs with a source or data cannot be bundled', now: this.now() } },
        { actor: 'orchestrator', causationId: 'last-event' },
      );
      return { job: failed.job, events: [...handled.events, ...failed.events] };
    }
    return handled;
  }

  /**
   * `jobline.cmd.<owner>.cancel` (an owner, its own jobs) and `jobline.adm.<admin>.cancel` (an
   * admin, any job). Who may is the decider's rule (RequestCancel's actor); the one who asked
   * is the recorded actor.
   */
  async cancel(who: string, payload: unknown, from: CommandSource = {}): Promise<HandledCommand> {
    const actor = this.actorOf(who, from);
    const msg = parseWith(CancelJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid cancel command', msg.issues);
    const { jobId, reason, correlationId } = msg.value;
    return this.handler.execute(
      jobId,
      { type: 'RequestCancel', data: { actor, now: this.now(), ...(reason ? { reason } : {}) } },
      { actor: actor.id, causationId: causeOf(from), ...(correlationId ? { correlationId } : {}) },
    );
  }

  /**
   * `jobline.cmd.<owner>.purge`: records JobPurged, then deletes the finished job's logs and
   * artifacts (the history first, invariant 1; the edges serve nothing of a purged job from
   * the moment they see JobPurged). A crash between the two steps is repaired by the
   * redelivery (a second JobPurged is never written; deleting again is harmless). Bundles are
   * stored once per digest and shared by every job with the same source, so they are left in
   * place (the retention policy removes those no job references).
   */
  async purge(who: string, payload: unknown, from: CommandSource = {}): Promise<HandledCommand> {
    const actor = this.actorOf(who, from);
    const msg = parseWith(PurgeJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid purge command', msg.issues);
    const { jobId, correlationId } = msg.value;
    // Owner or admin: the decider's rule (PurgeJob's actor), checked before anything is deleted.
    const command: JobCommand = { type: 'PurgeJob', data: { actor, now: this.now() } };
    // Recorded first (the decider refuses while the job is not finished: nothing of a running job
    // is deleted), then deleted: JobPurged is never missing while its data is gone. A purge of a
    // purged job records nothing and deletes again, finishing a deletion a crash cut short.
    const handled = await this.handler.execute(jobId, command, { actor: actor.id, causationId: causeOf(from), ...(correlationId ? { correlationId } : {}) });
    const purgedChunks = await this.deleteJobData(jobId, handled.job.attempt);
    this.o.logger.log(`orchestrator: purged job ${jobId} (${purgedChunks} log chunks, artifacts of ${handled.job.attempt} attempt(s))`);
    return handled;
  }

  /**
   * `jobline.cmd.<owner>.rerun` (an owner's finished job) and `jobline.adm.<admin>.rerun` (any
   * owner's): the job runs again as the new job, the original owner's, with its spec and its
   * bundle by digest (checked to be still stored; nothing is packaged). The new job's events
   * name the command as their cause and its data names the original (rerunOf). Sent again
   * (same new jobId), it changes nothing.
   */
  async rerun(who: string, payload: unknown, from: CommandSource = {}): Promise<HandledCommand> {
    const actor = this.actorOf(who, from);
    const msg = parseWith(RerunJobMessageSchema, payload);
    if (!msg.ok) throw new ValidationError('invalid rerun command', msg.issues);
    const { jobId, rerunOf, idempotencyKey, correlationId } = msg.value;
    if (jobId === rerunOf) throw new ValidationError('a re-run is a new job: jobId must differ from rerunOf', [{ path: 'jobId', message: 'equals rerunOf' }]);
    const original = await this.handler.load(rerunOf);
    const command = rerunCommand(original.job, { actor, jobId, now: this.now(), ...(idempotencyKey ? { idempotencyKey } : {}) });
    const bundle = command.data.rerunOf?.bundle;
    if (bundle) {
      this.bundles ??= BundleStore.open(this.o.nc);
      if (!(await (await this.bundles).has(bundle.bundleDigest))) {
        throw new IllegalStateError(`the bundle ${bundle.bundleDigest} of job ${rerunOf} is no longer stored, so it cannot run again with the same bundle: submit it anew`);
      }
    }
    // The new job is the original owner's: its queued quota counts.
    return this.admitted(command.data.owner, jobId, (guard) =>
      this.handler.execute(jobId, command, { actor: actor.id, causationId: causeOf(from), correlationId: correlationId ?? jobId }, { guard }),
    );
  }

  /**
   * A new job of the owner, within its queued quota: refused (QuotaExceededError, nothing
   * recorded) when the owner already has maxQueued jobs waiting. The check runs as the
   * handler's append guard, so only a submit that records a new job is counted (a repeated
   * submit decides nothing and is not), on the stream read the command needs anyway; check and
   * reservation happen together, so concurrent submits cannot pass the quota together.
   */
  private async admitted(owner: string, jobId: string, record: (guard?: AppendGuard) => Promise<HandledCommand>): Promise<HandledCommand> {
    const quota = this.quotas.of(owner);
    if (quota.maxQueued === Infinity) return record();
    let reserved = false;
    const withinQuota: AppendGuard = () => {
      if (reserved) return; // a retry after a conflicting append: counted already
      const refusal = queuedQuotaRefusal(owner, quota, this.scheduler.waitingOf(owner));
      if (refusal) throw new QuotaExceededError(refusal, this.quotas.retryAfterSeconds);
      this.scheduler.reserve(owner, jobId);
      reserved = true;
    };
    let handled: HandledCommand | undefined;
    try {
      handled = await record(withinQuota);
      return handled;
    } finally {
      if (reserved && !handled?.events.length) this.scheduler.unreserve(jobId);
    }
  }

  /**
   * `jobline.report.<jobId>`: an executor's account of an attempt. `causationId` is the
   * report's message id; a start (claimed or reported) names the JobDispatched it answers.
   */
  report(payload: unknown, causationId: string | 'last-event' = 'last-event'): Promise<HandledCommand> {
    const parsed = parseWith(AttemptReportSchema, payload);
    if (!parsed.ok) throw new ValidationError('invalid attempt report', parsed.issues);
    const r: AttemptReport = parsed.value;
    const meta: CommandMeta = { actor: `executor:${r.executorId}`, causationId };
    if (r.kind === 'started') {
      const { attempt, executorId, startedAt, sandbox, sandboxNote, pid } = r;
      return this.handler.execute(r.jobId, { type: 'RecordStarted', data: { attempt, executorId, startedAt, sandbox, sandboxNote, pid } }, { ...meta, causationId: 'dispatched' });
    }
    // Staged pipelines (README "Staged pipelines").
    if (r.kind === 'step-started') {
      const { attempt, step, name, startedAt, logOffset } = r;
      return this.handler.execute(r.jobId, { type: 'RecordStepStarted', data: { attempt, step, name, startedAt, logOffset } }, meta);
    }
    if (r.kind === 'step-finished') {
      const { attempt, step, name, exitCode, startedAt, finishedAt, durationMs, logOffset, logEnd, continueOnFailure, interrupted, artifacts } = r;
      const data = { attempt, step, name, exitCode, startedAt, finishedAt, durationMs, logOffset, logEnd, continueOnFailure, ...(interrupted ? { interrupted } : {}), ...(artifacts ? { artifacts } : {}) };
      return this.handler.execute(r.jobId, { type: 'RecordStepFinished', data }, meta);
    }
    const { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes, logSha256, error, steps } = r;
    return this.handler.execute(
      r.jobId,
      {
        type: 'RecordFinished',
        data: { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes, ...(logSha256 ? { logSha256 } : {}), ...(error ? { error } : {}), ...(steps?.length ? { steps } : {}) },
      },
      meta,
    );
  }

  /** `jobline.pkg.done.<jobId>`: a packager's result, recorded as JobPackaged (+ JobQueued) or JobPackagingFailed. */
  packaged(payload: unknown, causationId: string | 'last-event' = 'last-event'): Promise<HandledCommand> {
    const parsed = parseWith(PackagingResultSchema, payload);
    if (!parsed.ok) throw new ValidationError('invalid packaging result', parsed.issues);
    const r = parsed.value;
    const meta: CommandMeta = { actor: 'packager', causationId };
    if (r.kind === 'failed') return this.handler.execute(r.jobId, { type: 'RecordPackagingFailed', data: { reason: r.reason, now: this.now() } }, meta);
    const { bundleDigest, size, commit, dataDigests } = r;
    const record = () =>
      this.handler.execute(
        r.jobId,
        { type: 'RecordPackaged', data: { bundleDigest, size, ...(commit ? { commit } : {}), ...(dataDigests ? { dataDigests } : {}), now: this.now() } },
        meta,
      );
    if (!this.retention) return record();
    // Retention removes unreferenced bundles under the same gate: one it removed while this job was packaged is not recorded as there.
    return this.bundleGate.run(bundleDigest, async () => {
      const { job } = await this.handler.load(r.jobId);
      if (job.phase === 'packaging' && !(await (await this.bundleStore()).has(bundleDigest))) {
        const reason = `bundle ${bundleDigest} is no longer in the bundle store (removed by the retention policy while the job was packaged); submit the job again`;
        return this.handler.execute(r.jobId, { type: 'RecordPackagingFailed', data: { reason, now: this.now() } }, { ...meta, actor: 'orchestrator' });
      }
      return record();
    });
  }

  /** Deletes what a purge removes: the job's log chunks and its attempts' artifacts (deleting what is gone already is no error). */
  private async deleteJobData(jobId: string, attempts: number): Promise<number> {
    const purgedChunks = await purgeLogs(await jetstreamManager(this.o.nc), jobId);
    this.artifacts ??= ArtifactStore.open(this.o.nc);
    // A staged job's steps with outputs stored their own archives too.
    const spec = (await this.handler.load(jobId)).job.spec;
    const steps = (spec?.steps ?? []).flatMap((s, i) => (s.outputs?.length ? [i + 1] : []));
    await (await this.artifacts).deleteJob(jobId, attempts, steps);
    return purgedChunks;
  }

  private bundleStore(): Promise<BundleStore> {
    this.bundles ??= BundleStore.open(this.o.nc);
    return this.bundles;
  }

  /** The actor of a cancel, purge or re-run: the subject's owner, or (jobline.adm.<admin>.*) the admin. */
  private actorOf(who: string, from: CommandSource): Actor {
    return { id: this.validOwner(who), admin: from.admin === true };
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

function causeOf(from: CommandSource): string {
  return from.causationId ?? `call:${randomUUID()}`;
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
