import { JOB_STREAM_PREFIX, JoblineError, decodeJobEvent, type ExecutorHeartbeat, type JobSpec, type LeaseReply } from '../../../libs/contracts/src';
import { FairShareQueue, Lifecycle, type JobCommand, type LifecycleChange, type OpenJob, type Quotas } from '../../../libs/domain/src';
import type { EventStore, SnapshotStore, Subscription } from '../../../libs/event-store/src/event-store.port';
import { hopMarks } from '../../../libs/messaging/src/hop-marks';
import { LifecycleCheckpoint } from './lifecycle-checkpoint';
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
  /** Where the lifecycle fold is snapshotted (`lifecycle:scheduler`); absent: every start folds the store from position 0. */
  snapshots?: SnapshotStore;
  /** A snapshot every this many store positions (default 10,000). */
  snapshotEvery?: number;
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

/** The snapshot key of the scheduler's lifecycle fold. */
export const SCHEDULER_LIFECYCLE = 'lifecycle:scheduler';

const active = (job: OpenJob): boolean => job.phase === 'dispatched' || job.phase === 'running';

/**
 * Decides what runs where and when: weighted fair share between owners (each owner's own
 * queue in priority order: high, normal, low; FIFO within each), executor capacity, timeouts, retry back-offs, cancel confirmation and lost executors. What
 * it knows of jobs is the lifecycle fold of libs/domain (the decider's own rules), started
 * from its last snapshot and followed from there; of its own it keeps only timers,
 * heartbeats, executor capacity and the dispatches on their way. Every decision goes through
 * the command handler, so the store stays the only truth.
 */
export class Scheduler {
  private fold = new Lifecycle();
  private readonly checkpoint: LifecycleCheckpoint;
  /** Weighted fair share between owners, priorities within each owner's queue; maxRunning per owner (README "Quotas and fair share"). */
  private readonly ready: FairShareQueue;
  /** Submits admitted under a queued quota whose JobSubmitted this scheduler has not seen yet (jobId → owner). */
  private readonly reserved = new Map<string, string>();
  private readonly executors = new Map<string, ExecutorState>();
  /** One timer per open job: its timeout, its retry, or the deadline of its cancel confirmation. */
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  /** The attempt already reported lost, by job (so liveness ticks do not repeat it). */
  private readonly lostAttempt = new Map<string, number>();
  /** Dispatches decided and not yet in the fold: jobId → where and which attempt. */
  private readonly inFlight = new Map<string, { executorId: string; attempt: number }>();
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
    this.checkpoint = new LifecycleCheckpoint({ snapshots: o.snapshots, name: SCHEDULER_LIFECYCLE, every: o.snapshotEvery, logger: o.logger });
  }

  /** The open jobs as this scheduler has folded them (read only). */
  get lifecycle(): Lifecycle {
    return this.fold;
  }

  /** Loads the last snapshot of the fold, follows the store from its position, and resolves once it has caught up with the head. */
  async start(): Promise<void> {
    this.startedAtMs = this.now();
    this.fold = await this.checkpoint.load();
    for (const job of this.fold.values()) this.react({ jobId: job.jobId, before: undefined, after: job });
    const head = await this.o.eventStore.headPosition();
    if (head <= this.fold.position) this.markCaughtUp();
    this.subscription = this.o.eventStore.subscribeToAll({ after: this.fold.position });
    this.loop = this.consume(this.subscription, head);
    this.ticker = setInterval(() => this.tick(), this.o.tickMs ?? 1000);
    this.ticker.unref?.();
    await new Promise<void>((resolve) => (this.caughtUp ? resolve() : this.caughtUpWaiters.push(resolve)));
  }

  /** Stops timers and the subscription, and snapshots the fold (the next start folds only what comes after). */
  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await this.subscription?.close();
    await this.loop;
    await this.checkpoint.save(this.fold);
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
    for (const j of this.fold.values()) if (j.owner === owner && !active(j)) n++;
    for (const o of this.reserved.values()) if (o === owner) n++;
    return n;
  }

  /** Counts an admitted submit as waiting until its JobSubmitted is in the fold (so concurrent submits cannot pass a quota together). */
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
        const owner = this.fold.get(jobId)?.owner;
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
          const event = decodeJobEvent(rec);
          this.react(this.fold.apply(event.metadata.jobId, event, rec.position));
        } catch (err) {
          this.o.logger.error(`scheduler: cannot apply event at ${rec.position}: ${(err as Error).message}`);
        }
      }
      if (rec.position > this.fold.position) this.fold.position = rec.position;
      this.checkpoint.maybeSave(this.fold);
      if (!this.caughtUp && rec.position >= head) this.markCaughtUp();
    }
  }

  private markCaughtUp(): void {
    this.caughtUp = true;
    for (const w of this.caughtUpWaiters.splice(0)) w();
    // Timers are armed now that the whole history is known (their deadlines are in the fold).
    for (const job of this.fold.values()) this.arm(job);
    this.schedulePump();
  }

  /** What one change of the fold means here: the ready queue, the executors' slots, the job's timer. */
  private react({ jobId, before, after }: LifecycleChange): void {
    if (after && !before) this.reserved.delete(jobId);
    if (after?.phase === 'dispatched' || !after) this.inFlight.delete(jobId);
    if (before?.executorId && before.executorId !== after?.executorId) {
      if (this.inFlight.get(jobId)?.executorId !== before.executorId) this.executors.get(before.executorId)?.assigned.delete(jobId);
      this.schedulePump();
    }
    if (after?.executorId && after.executorId !== before?.executorId) this.executor(after.executorId).assigned.add(jobId);
    if (after && after.phase === 'queued' && !after.cancelRequested) {
      // A new JobQueued (or a job loaded from the snapshot): into the queue, in the order of its JobQueued.
      if (before?.phase !== 'queued' || before.queuedSeq !== after.queuedSeq) this.enqueue(after);
    } else if (before?.phase === 'queued') this.ready.remove(jobId);
    if (!after) {
      this.clearTimer(jobId);
      this.deferred.delete(jobId);
      this.lostAttempt.delete(jobId);
      return;
    }
    if (this.caughtUp) this.arm(after);
  }

  private enqueue(job: OpenJob): void {
    this.ready.push({ jobId: job.jobId, owner: job.owner, attempt: job.attempt, priority: job.priority, seq: job.queuedSeq ?? -1 });
    this.schedulePump();
  }

  /** The job's one timer, from the deadlines in the fold: cancel confirmation, else timeout, else retry. */
  private arm(job: OpenJob): void {
    this.clearTimer(job.jobId);
    const { jobId, attempt } = job;
    let at: number;
    let command: () => JobCommand;
    if (job.cancelRequested && active(job)) {
      at = Date.parse(job.cancelRequestedAt ?? this.iso()) + this.cancelConfirmMs;
      command = () => ({ type: 'ForceCancel', data: { attempt, now: this.iso() } });
    } else if (job.phase === 'running' && job.timeoutAt) {
      at = Date.parse(job.timeoutAt);
      command = () => ({ type: 'TimeOutJob', data: { attempt, now: this.iso() } });
    } else if (job.phase === 'retry_wait' && job.retryAt) {
      at = Date.parse(job.retryAt);
      command = () => ({ type: 'RequeueJob', data: { attempt, now: this.iso() } });
    } else return;
    const timer = setTimeout(() => {
      this.timers.delete(jobId);
      void this.command(jobId, command());
    }, Math.max(0, at - this.now()));
    this.timers.set(jobId, timer);
  }

  private clearTimer(jobId: string): void {
    const t = this.timers.get(jobId);
    if (t) clearTimeout(t);
    this.timers.delete(jobId);
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
    /** pop() counted the entry's owner one more running: not so when it is not dispatched. */
    const uncount = (owner: string): void => void running.set(owner, (running.get(owner) ?? 1) - 1);
    while (this.ready.size > 0) {
      const candidates = [...this.executors.values()].filter((e) => e.alive && e.assigned.size < e.heartbeat.capacity && !this.suspect(e, now));
      if (candidates.length === 0) break;
      const entry = this.ready.pop(running);
      if (!entry) break; // every owner waiting is at its maxRunning
      const job = this.fold.get(entry.jobId);
      if (!job || job.phase !== 'queued' || job.attempt !== entry.attempt || job.cancelRequested || this.inFlight.has(entry.jobId)) {
        uncount(entry.owner);
        continue;
      }
      const target = pickExecutor(candidates, job.spec);
      if (!target) {
        uncount(entry.owner);
        skipped.push(entry);
        continue;
      }
      const { jobId, attempt } = entry;
      target.assigned.add(jobId);
      this.inFlight.set(jobId, { executorId: target.id, attempt });
      const dispatched = this.o.handler.execute(jobId, { type: 'DispatchJob', data: { attempt, executorId: target.id, now: this.iso() } }, scheduler(jobId), { guard: this.guard });
      if (hopMarks.record) dispatched.then(() => hopMarks.record?.(jobId, 'scheduler.dispatchAppended'), () => undefined);
      void dispatched
        .catch((err) => {
          const mine = this.inFlight.get(jobId);
          if (mine?.executorId !== target.id || mine.attempt !== attempt) return;
          this.inFlight.delete(jobId);
          target.assigned.delete(jobId);
          const now = this.fold.get(jobId);
          if (now && now.phase === 'queued' && now.attempt === attempt && !now.cancelRequested) {
            // Not the leader any more: the job waits in the queue for whoever leads (this one again, after promote()).
            if (err instanceof NotActingError) this.ready.push(entry);
            else if (!(err instanceof JoblineError)) {
              this.o.logger.warn(`scheduler: dispatch of ${jobId} failed, will retry: ${(err as Error).message}`);
              setTimeout(() => {
                const still = this.fold.get(jobId);
                if (still && still.phase === 'queued' && still.attempt === attempt) this.ready.push(entry);
                this.schedulePump();
              }, 200);
            }
          }
          this.schedulePump();
        });
    }
    for (const e of skipped) this.ready.push(e);
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

  /** Every attempt this scheduler holds as current on the executor (dispatched, running or being dispatched; not being declared lost). */
  private leaseReply(e: ExecutorState, instanceId: string): LeaseReply {
    const current: LeaseReply['current'] = [];
    for (const jobId of e.assigned) {
      const flight = this.inFlight.get(jobId);
      if (flight?.executorId === e.id) {
        current.push({ jobId, attempt: flight.attempt });
        continue;
      }
      const job = this.fold.get(jobId);
      if (!job || job.executorId !== e.id || !active(job) || this.lostAttempt.get(jobId) === job.attempt) continue;
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
    for (const job of this.fold.values()) {
      if (job.executorId !== e.id || !active(job)) continue;
      if (Date.parse(job.dispatchedAt ?? '') < instanceStart && !running.has(`${job.jobId}:${job.attempt}`)) {
        lost.push(this.markLost(job.jobId, e.id, 'executor restarted'));
      } else {
        e.assigned.add(job.jobId);
      }
    }
    return lost;
  }

  private markLost(jobId: string, executorId: string, reason: string): Promise<void> {
    const job = this.fold.get(jobId);
    if (!job || job.executorId !== executorId || !active(job) || this.lostAttempt.get(jobId) === job.attempt) return Promise.resolve();
    this.lostAttempt.set(jobId, job.attempt);
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
    if (!this.fold.get(jobId)) return;
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
