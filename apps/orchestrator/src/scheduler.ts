import {
  JOB_STREAM_PREFIX,
  JoblineError,
  decodeJobEvent,
  type ExecutorHeartbeat,
  type JobSpec,
  type LeaseReply,
  type Priority,
  type StoredJobEvent,
} from '../../../libs/contracts/src';
import { FairShareQueue, type JobCommand, type Quotas } from '../../../libs/domain/src';
import type { EventStore, Subscription } from '../../../libs/event-store/src/event-store.port';
import type { CommandMeta, JobCommandHandler } from './job-command.handler';
import type { Logger } from './logger';

export interface SchedulerOptions {
  eventStore: EventStore;
  handler: JobCommandHandler;
  logger: Logger;
  /** An executor silent for this long is gone and its attempts are lost (default 10 s). */
  leaseMs?: number;
  /** After a cancel request, how long the executor has to confirm the stop (default 30 s). */
  cancelConfirmMs?: number;
  /** How often liveness is checked (default 1 s). */
  tickMs?: number;
  /**
   * The heartbeat period assumed for executors whose heartbeats do not announce theirs
   * (default 1000 ms). An executor silent for 3 periods is suspect: it gets no new work
   * (its attempts are declared lost only at the lease).
   */
  heartbeatMs?: number;
  clock?: () => Date;
  /**
   * Whether this scheduler may act now (default: always). A standby orchestrator's scheduler
   * follows the history like the leader's (so it takes over without a replay) but decides
   * nothing: what falls due meanwhile (a timeout, a retry, a forced cancel) waits, and is
   * decided again on the history as it then stands once this one leads (see promote()).
   * Checked again right before each append, so a leader that was paused acts on nothing.
   */
  acting?: () => boolean;
  /** Per-owner maxRunning and fair-share weights (default: no limits, equal weights). */
  quotas?: Quotas;
}

/** Thrown by the append guard of a scheduler that may not act (no longer the leader). */
export class NotActingError extends Error {
  constructor() {
    super('this orchestrator is not the leader');
    this.name = 'NotActingError';
  }
}

interface TrackedJob {
  jobId: string;
  owner: string;
  spec: JobSpec;
  priority: Priority;
  phase: 'pending' | 'queued' | 'dispatched' | 'running' | 'retry_wait';
  attempt: number;
  executorId: string | null;
  dispatchedAtMs: number;
  cancelRequested: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  /** The attempt already reported lost (so liveness ticks do not repeat it). */
  lostAttempt: number;
}

interface ExecutorState {
  id: string;
  heartbeat: ExecutorHeartbeat;
  lastSeenMs: number;
  /** Jobs dispatched (or being dispatched) to it and not finished. */
  assigned: Set<string>;
  alive: boolean;
}

export interface ExecutorSummary {
  id: string;
  alive: boolean;
  capacity: number;
  assigned: number;
  lastSeenAt: string;
}

/** The scheduler decides on a job's history: its events are caused by the newest one, and correlate with the job. */
const scheduler = (jobId: string): CommandMeta => ({ actor: 'scheduler', causationId: 'last-event', correlationId: jobId, jobTrace: true });

/**
 * Decides what runs where and when, from the store's history and executor heartbeats:
 * priority order (high, normal, low; FIFO within each), executor capacity, timeouts,
 * retry back-offs, cancel confirmation and lost executors. Its state is rebuilt from
 * position 0 at start; every decision goes through the command handler, so the store
 * stays the only truth. Run one scheduler per store.
 */
export class Scheduler {
  private readonly jobs = new Map<string, TrackedJob>();
  /** Weighted fair share between owners, priorities within each owner's queue; maxRunning per owner (README "Quotas and fair share"). */
  private readonly ready: FairShareQueue;
  /** Submits admitted under a queued quota whose JobSubmitted this scheduler has not seen yet (jobId → owner). */
  private readonly reserved = new Map<string, string>();
  private readonly executors = new Map<string, ExecutorState>();
  private subscription: Subscription | null = null;
  private loop: Promise<void> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private caughtUp = false;
  private startedAtMs = 0;
  private pumpScheduled = false;
  /** This scheduler's own bus connection: while it is down it hears nobody, so nobody's silence counts. */
  private busUp = true;
  /** When the bus came back: every executor's silence counts from then at the earliest (a fresh lease). */
  private busBackAtMs = 0;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly cancelConfirmMs: number;
  private readonly clock: () => Date;
  private readonly caughtUpWaiters: (() => void)[] = [];
  private readonly acting: () => boolean;
  /** Decisions that fell due while this scheduler could not act, by job: taken again at promote(). */
  private readonly deferred = new Map<string, JobCommand[]>();
  /** Throws before an append when this scheduler may not act (the handler calls it). */
  private readonly guard = (): void => {
    if (!this.acting()) throw new NotActingError();
  };

  constructor(private readonly o: SchedulerOptions) {
    this.leaseMs = o.leaseMs ?? 10_000;
    this.cancelConfirmMs = o.cancelConfirmMs ?? 30_000;
    this.heartbeatMs = o.heartbeatMs ?? 1000;
    this.clock = o.clock ?? (() => new Date());
    this.acting = o.acting ?? (() => true);
    this.ready = new FairShareQueue(o.quotas);
  }

  async start(): Promise<void> {
    this.startedAtMs = this.now();
    const head = await this.o.eventStore.headPosition();
    if (head < 0) this.markCaughtUp();
    this.subscription = this.o.eventStore.subscribeToAll({ after: -1 });
    this.loop = this.consume(this.subscription, head);
    this.ticker = setInterval(() => this.tick(), this.o.tickMs ?? 1000);
    this.ticker.unref?.();
    await new Promise<void>((resolve) => (this.caughtUp ? resolve() : this.caughtUpWaiters.push(resolve)));
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    for (const j of this.jobs.values()) if (j.timer) clearTimeout(j.timer);
    await this.subscription?.close();
    await this.loop;
  }

  /**
   * This scheduler now leads: executors' silence counts from now (it heard none of them while
   * standing by), and every decision that fell due meanwhile is taken on the history as it
   * stands (the decider refuses what the previous leader already did).
   */
  promote(): void {
    this.startedAtMs = this.now();
    for (const e of this.executors.values()) {
      e.lastSeenMs = 0;
      e.alive = true;
    }
    const due = [...this.deferred.entries()];
    this.deferred.clear();
    for (const [jobId, commands] of due) for (const c of commands) void this.command(jobId, c);
    this.schedulePump();
  }

  /**
   * Takes a heartbeat; resolves with the lease reply to send back (null before the history is
   * caught up: an answer then could omit attempts that are current). For a new instance the
   * reply waits until its predecessor's attempts are recorded lost, so a claim the new
   * instance sends after this reply finds them no longer current.
   */
  async onHeartbeat(hb: ExecutorHeartbeat): Promise<LeaseReply | null> {
    const known = this.executors.get(hb.executorId);
    const state: ExecutorState = known ?? { id: hb.executorId, heartbeat: hb, lastSeenMs: 0, assigned: new Set(), alive: true };
    const restarted = !known || known.heartbeat.instanceId !== hb.instanceId;
    state.heartbeat = hb;
    state.lastSeenMs = this.now();
    state.alive = true;
    this.executors.set(hb.executorId, state);
    const reclaimed = restarted ? this.reclaimFromRestartedExecutor(state) : [];
    this.schedulePump();
    if (!this.caughtUp) return null;
    await Promise.all(reclaimed);
    return this.leaseReply(state, hb.instanceId);
  }

  /** The bus connection dropped: stop counting executors' silence and dispatching (nothing could reach them). */
  busDown(): void {
    if (!this.busUp) return;
    this.busUp = false;
    this.o.logger.warn('scheduler: bus connection lost; executors\' silence is not counted until it is back');
  }

  /** The bus is back: every executor gets a fresh lease from now. */
  busBack(): void {
    if (this.busUp) return;
    this.busUp = true;
    this.busBackAtMs = this.now();
    this.o.logger.log('scheduler: bus connection back; every executor has a fresh lease');
    this.schedulePump();
  }

  executorSummaries(): ExecutorSummary[] {
    return [...this.executors.values()].map((e) => ({
      id: e.id,
      alive: e.alive,
      capacity: e.heartbeat.capacity,
      assigned: e.assigned.size,
      lastSeenAt: new Date(e.lastSeenMs).toISOString(),
    }));
  }

  get queuedCount(): number {
    return this.ready.size;
  }

  /**
   * Jobs of an owner not dispatched yet (submitted, packaging, queued, waiting for a retry),
   * with the submits admitted but not seen here yet: what a queued quota counts.
   */
  waitingOf(owner: string): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.owner === owner && (j.phase === 'pending' || j.phase === 'queued' || j.phase === 'retry_wait')) n++;
    for (const o of this.reserved.values()) if (o === owner) n++;
    return n;
  }

  /** Counts an admitted submit as waiting until its JobSubmitted is applied here (so concurrent submits cannot pass a quota together). */
  reserve(owner: string, jobId: string): void {
    this.reserved.set(jobId, owner);
  }

  /** The admitted submit recorded nothing: it no longer counts. */
  unreserve(jobId: string): void {
    this.reserved.delete(jobId);
  }

  /** Attempts dispatched or running per owner, as the executors hold them (fair share and maxRunning count these). */
  private runningByOwner(): Map<string, number> {
    const running = new Map<string, number>();
    for (const e of this.executors.values()) {
      for (const jobId of e.assigned) {
        const owner = this.jobs.get(jobId)?.owner;
        if (owner !== undefined) running.set(owner, (running.get(owner) ?? 0) + 1);
      }
    }
    return running;
  }

  // ---- history ---------------------------------------------------------------------

  private async consume(sub: Subscription, head: number): Promise<void> {
    for await (const rec of sub) {
      if (rec.streamId.startsWith(JOB_STREAM_PREFIX)) {
        try {
          this.apply(decodeJobEvent(rec));
        } catch (err) {
          this.o.logger.error(`scheduler: cannot apply event at ${rec.position}: ${(err as Error).message}`);
        }
      }
      if (!this.caughtUp && rec.position >= head) this.markCaughtUp();
    }
  }

  private markCaughtUp(): void {
    this.caughtUp = true;
    for (const w of this.caughtUpWaiters.splice(0)) w();
    // Timers of jobs found running are armed now that the whole history is known.
    for (const j of this.jobs.values()) if (j.phase === 'running' && !j.timer && j.spec.timeoutSeconds) this.armTimeout(j, this.now());
    this.schedulePump();
  }

  private apply(e: StoredJobEvent): void {
    const jobId = e.metadata.jobId;
    if (e.type === 'JobSubmitted') {
      this.reserved.delete(jobId);
      this.jobs.set(jobId, {
        jobId,
        owner: e.data.owner,
        spec: e.data.spec,
        priority: e.data.priority,
        phase: 'pending',
        attempt: 0,
        executorId: null,
        dispatchedAtMs: 0,
        cancelRequested: false,
        timer: null,
        lostAttempt: 0,
      });
      return;
    }
    const job = this.jobs.get(jobId);
    if (!job) return;
    switch (e.type) {
      case 'JobQueued':
        this.clearTimer(job);
        job.phase = 'queued';
        job.attempt = e.data.attempt;
        job.priority = e.data.priority;
        if (!job.cancelRequested) this.ready.push({ jobId, owner: job.owner, attempt: e.data.attempt, priority: e.data.priority, seq: e.position });
        this.schedulePump();
        return;
      case 'JobDispatched':
        this.ready.remove(jobId);
        job.phase = 'dispatched';
        job.attempt = e.data.attempt;
        job.executorId = e.data.executorId;
        job.dispatchedAtMs = Date.parse(e.data.dispatchedAt);
        this.executor(e.data.executorId).assigned.add(jobId);
        return;
      case 'JobStarted':
        job.phase = 'running';
        if (job.spec.timeoutSeconds && this.caughtUp) this.armTimeout(job, Date.parse(e.data.startedAt));
        else if (job.spec.timeoutSeconds) job.timer = null; // armed at catch-up
        return;
      case 'JobCancelRequested':
        job.cancelRequested = true;
        this.ready.remove(jobId);
        if (job.phase === 'dispatched' || job.phase === 'running') {
          const attempt = job.attempt;
          this.clearTimer(job);
          job.timer = setTimeout(() => this.command(jobId, { type: 'ForceCancel', data: { attempt, now: this.iso() } }), this.cancelConfirmMs);
        }
        return;
      case 'JobRetryScheduled': {
        this.release(job);
        job.phase = 'retry_wait';
        job.attempt = e.data.nextAttempt;
        const attempt = e.data.nextAttempt;
        const delay = Math.max(0, Date.parse(e.data.retryAt) - this.now());
        job.timer = setTimeout(() => this.command(jobId, { type: 'RequeueJob', data: { attempt, now: this.iso() } }), delay);
        return;
      }
      case 'JobCompleted':
        this.release(job);
        this.forget(job, e.data.exitCode !== 0 && this.mayRetry(job));
        return;
      case 'JobLost':
        this.release(job);
        this.forget(job, !job.cancelRequested && this.mayRetry(job));
        return;
      case 'JobTimedOut':
      case 'JobCancelled':
      case 'JobFailed':
      case 'JobPackagingFailed':
        this.release(job);
        this.forget(job, false);
        return;
      default:
        return;
    }
  }

  /** Drops a finished job; one whose retry follows in the same append stays, waiting for it. */
  private forget(job: TrackedJob, retryFollows: boolean): void {
    this.clearTimer(job);
    if (!retryFollows) this.deferred.delete(job.jobId);
    this.ready.remove(job.jobId);
    if (retryFollows) job.phase = 'pending';
    else this.jobs.delete(job.jobId);
  }

  private mayRetry(job: TrackedJob): boolean {
    return !!job.spec.retry && job.attempt < job.spec.retry.maxAttempts;
  }

  private release(job: TrackedJob): void {
    if (job.executorId) {
      this.executors.get(job.executorId)?.assigned.delete(job.jobId);
      job.executorId = null;
      this.schedulePump();
    }
  }

  // ---- decisions -------------------------------------------------------------------

  private schedulePump(): void {
    if (this.pumpScheduled || !this.caughtUp) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Hands queued attempts to executors with free slots, best priority first; none while the bus is down, none to a suspect executor. */
  private pump(): void {
    if (!this.busUp || !this.acting()) return;
    const skipped = [];
    const now = this.now();
    const running = this.runningByOwner();
    while (this.ready.size > 0) {
      const candidates = [...this.executors.values()].filter((e) => e.alive && e.assigned.size < e.heartbeat.capacity && !this.suspect(e, now));
      if (candidates.length === 0) break;
      const entry = this.ready.pop(running);
      if (!entry) break; // every owner waiting is at its maxRunning
      const job = this.jobs.get(entry.jobId);
      if (!job || job.phase !== 'queued' || job.attempt !== entry.attempt) continue;
      const target = pickExecutor(candidates, job.spec);
      if (!target) {
        skipped.push(entry);
        continue;
      }
      target.assigned.add(job.jobId);
      job.executorId = target.id;
      job.phase = 'dispatched';
      const attempt = entry.attempt;
      void this.o.handler
        .execute(job.jobId, { type: 'DispatchJob', data: { attempt, executorId: target.id, now: this.iso() } }, scheduler(job.jobId), { guard: this.guard })
        .catch((err) => {
          target.assigned.delete(job.jobId);
          if (this.jobs.get(job.jobId) === job && job.executorId === target.id && job.phase === 'dispatched') {
            job.executorId = null;
            job.phase = 'queued';
            // Not the leader any more: the job waits in the queue for whoever leads (this one again, after promote()).
            if (err instanceof NotActingError) this.ready.push(entry);
            else if (!(err instanceof JoblineError)) {
              this.o.logger.warn(`scheduler: dispatch of ${job.jobId} failed, will retry: ${(err as Error).message}`);
              setTimeout(() => {
                this.ready.push(entry);
                this.schedulePump();
              }, 200);
            }
          }
          this.schedulePump();
        });
    }
    for (const e of skipped) this.ready.push(e);
  }

  private armTimeout(job: TrackedJob, startedAtMs: number): void {
    this.clearTimer(job);
    const attempt = job.attempt;
    const delay = Math.max(0, startedAtMs + job.spec.timeoutSeconds! * 1000 - this.now());
    job.timer = setTimeout(() => this.command(job.jobId, { type: 'TimeOutJob', data: { attempt, now: this.iso() } }), delay);
  }

  private clearTimer(job: TrackedJob): void {
    if (job.timer) clearTimeout(job.timer);
    job.timer = null;
  }

  /** How long an executor has been silent, as far as this scheduler could have heard it. */
  private silentMs(e: ExecutorState, now: number): number {
    // Never heard from since this scheduler started: silent since the start.
    return now - Math.max(e.lastSeenMs || this.startedAtMs, this.busBackAtMs);
  }

  /** Silent for ~3 heartbeat periods: no new work for it, though its attempts are lost only at the lease. */
  private suspect(e: ExecutorState, now: number): boolean {
    const period = e.heartbeat.heartbeatMs ?? this.heartbeatMs;
    return this.silentMs(e, now) > Math.min(3 * period, this.leaseMs);
  }

  /** Every attempt this scheduler holds as current on the executor (dispatched or running, not being declared lost). */
  private leaseReply(e: ExecutorState, instanceId: string): LeaseReply {
    const current: LeaseReply['current'] = [];
    for (const jobId of e.assigned) {
      const job = this.jobs.get(jobId);
      if (!job || job.executorId !== e.id || (job.phase !== 'dispatched' && job.phase !== 'running') || job.lostAttempt === job.attempt) continue;
      current.push({ jobId, attempt: job.attempt });
    }
    return { executorId: e.id, instanceId, current, leaseMs: this.leaseMs, sentAt: this.iso() };
  }

  /** Liveness: an executor that stopped sending heartbeats has lost its attempts. */
  private tick(): void {
    if (!this.caughtUp || !this.busUp || !this.acting()) return;
    const now = this.now();
    for (const e of this.executors.values()) {
      const silentMs = this.silentMs(e, now);
      if (silentMs <= this.leaseMs) continue;
      if (e.alive) this.o.logger.warn(`scheduler: executor ${e.id} missed its heartbeats for ${silentMs} ms`);
      e.alive = false;
      for (const jobId of e.assigned) void this.markLost(jobId, e.id, e.lastSeenMs ? 'executor stopped sending heartbeats' : 'executor is not running');
    }
  }

  /** A new instance of an executor does not hold the attempts its predecessor was given; resolves once they are recorded lost. */
  private reclaimFromRestartedExecutor(e: ExecutorState): Promise<void>[] {
    const instanceStart = Date.parse(e.heartbeat.startedAt);
    const running = new Set(e.heartbeat.running.map((r) => `${r.jobId}:${r.attempt}`));
    const lost: Promise<void>[] = [];
    for (const job of this.jobs.values()) {
      if (job.executorId !== e.id || (job.phase !== 'dispatched' && job.phase !== 'running')) continue;
      if (job.dispatchedAtMs < instanceStart && !running.has(`${job.jobId}:${job.attempt}`)) {
        lost.push(this.markLost(job.jobId, e.id, 'executor restarted'));
      } else {
        e.assigned.add(job.jobId);
      }
    }
    return lost;
  }

  private markLost(jobId: string, executorId: string, reason: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job || job.lostAttempt === job.attempt) return Promise.resolve();
    job.lostAttempt = job.attempt;
    return this.command(jobId, { type: 'MarkLost', data: { attempt: job.attempt, executorId, reason, now: this.iso() } });
  }

  /** Runs a command of the scheduler's own; resolves (never rejects) once it is stored or refused. */
  private command(jobId: string, command: JobCommand): Promise<void> {
    if (!this.acting()) {
      this.defer(jobId, command);
      return Promise.resolve();
    }
    return this.o.handler.execute(jobId, command, scheduler(jobId), { guard: this.guard }).then(
      () => undefined,
      (err) => {
        if (err instanceof NotActingError) this.defer(jobId, command);
        else if (err instanceof JoblineError) this.o.logger.debug?.(`scheduler: ${command.type} for ${jobId} no longer applies: ${err.message}`);
        else this.o.logger.error(`scheduler: ${command.type} for ${jobId} failed: ${(err as Error).message}`);
      },
    );
  }

  private defer(jobId: string, command: JobCommand): void {
    if (!this.jobs.has(jobId)) return;
    const list = this.deferred.get(jobId);
    if (list) list.push(command);
    else this.deferred.set(jobId, [command]);
  }

  private executor(id: string): ExecutorState {
    let e = this.executors.get(id);
    if (!e) {
      // Known from history only: not alive until it sends a heartbeat.
      const hb: ExecutorHeartbeat = { executorId: id, instanceId: '', kind: 'local', capacity: 0, running: [], labels: {}, sandbox: 'none', runtime: '', startedAt: new Date(0).toISOString(), sentAt: new Date(0).toISOString() };
      e = { id, heartbeat: hb, lastSeenMs: 0, assigned: new Set(), alive: false };
      this.executors.set(id, e);
    }
    return e;
  }

  private now(): number {
    return this.clock().getTime();
  }
  private iso(): string {
    return this.clock().toISOString();
  }
}

/** The executor with the most free slots among those the job's target allows. */
function pickExecutor(candidates: ExecutorState[], spec: JobSpec): ExecutorState | undefined {
  const t = spec.target;
  let best: ExecutorState | undefined;
  for (const e of candidates) {
    if ((t?.executor ?? 'local') !== e.heartbeat.kind) continue;
    if (t?.host && t.host !== e.id) continue;
    if (t?.labels && !Object.entries(t.labels).every(([k, v]) => e.heartbeat.labels[k] === v)) continue;
    if (!best || e.heartbeat.capacity - e.assigned.size > best.heartbeat.capacity - best.assigned.size) best = e;
  }
  return best;
}
