import {
  JOB_STREAM_PREFIX,
  decodeJobEvent,
  subjects,
  toEventMessage,
  type PackageJobMessage,
  type RunAttemptMessage,
  type StopAttemptMessage,
  type StoredJobEvent,
} from '../../../libs/contracts/src';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core';
import type { CheckpointStore, EventStore, RecordedEvent, SnapshotStore, Subscription } from '../../../libs/event-store/src/event-store.port';
import { encodePayload, type JetStreamPublisher, type PublishItem } from '../../../libs/messaging/src/publisher';
import { hopMarks } from '../../../libs/messaging/src/hop-marks';
import { Lifecycle, needsBundle, type OpenJob } from '../../../libs/domain/src';
import { LifecycleCheckpoint } from './lifecycle-checkpoint';
import { SpanKind, TRACERS, contextFromRecord, endSpan, injectHeaders, startSpan, tracingActive, withSpanContext, type Context, type Span } from '../../../libs/messaging/src/trace-context';
import type { JobCommandHandler } from './job-command.handler';
import type { Logger } from './logger';

export interface RelayOptions {
  eventStore: EventStore;
  checkpoints: CheckpointStore;
  publisher: JetStreamPublisher;
  /**
   * Core NATS, for the owners' copies of the events (`jobline.owner.<owner>.evt.<jobId>.<type>`):
   * published once the stored copies are acknowledged, before the checkpoint, so a copy is sent
   * at least once while the connection holds (a replay after a crash may send it again, with
   * the same Nats-Msg-Id header).
   */
  core: Pick<NatsConnection, 'publish'>;
  /**
   * Reads a job's stream, for one rare case only: the owner of an event of a job that is neither
   * open nor among the recently finished ones remembered (a late report, a purge of an old job).
   */
  jobs: Pick<JobCommandHandler, 'load'>;
  /** Where the relay's lifecycle fold is snapshotted (`lifecycle:<name>`); absent: a start folds from position 0 up to the checkpoint. */
  snapshots?: SnapshotStore;
  /** A snapshot every this many store positions (default 10,000). */
  snapshotEvery?: number;
  logger: Logger;
  /** A packager runs: derive package orders from JobSubmitted with a source or data (default false). */
  packager?: boolean;
  /** Checkpoint name (default 'relay'). */
  name?: string;
  /** Most events per publish batch (default 512). */
  batchSize?: number;
  /** Pause after a failed publish before trying again (default 500 ms). */
  retryDelayMs?: number;
  /** The scheduler's lease: a run order's start deadline (`startBy`) is its dispatch time plus this (default 10 s). */
  leaseMs?: number;
  /** Owners of this many recently finished jobs are remembered; an older job's owner is read from its stream (default 65,536). */
  ownerCacheSize?: number;
}

/**
 * Events this process may follow with an append of its own in the same turn of the event loop:
 * the scheduler dispatches a queued job at once when a slot is free. The relay waits for that
 * turn to end and for the next (`nextTurn`), so the dispatch and its run order leave in the same batch as the
 * submit. After any other event it waits only until the store has nothing more at hand: a
 * turn's remaining work (other subscribers, other sockets' callbacks) was 0.4-0.7 ms (medians) on the
 * path of every JobStarted and of the dispatch (README "Benchmarks", 3 Dec, latency).
 */
const FOLLOWED_AT_ONCE: ReadonlySet<string> = new Set(['JobQueued']);

/**
 * Microtasks given to the store's subscription to hand over the next event it already holds (an
 * async generator yielding from its read batch: one is enough in relay.spec.ts, which holds an
 * append's events together), with a margin. Every tick also lets the other subscribers woken by
 * the same append run a step, which the batch then waits for: no more than needed.
 */
const DRAIN_TICKS = 4;

function drained(): Promise<'idle'> {
  let p: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < DRAIN_TICKS; i++) p = p.then();
  return p.then(() => 'idle' as const);
}

/**
 * Two turns: an append decided on these events in this turn (the scheduler's dispatch of a job
 * just queued) is committed in the next one by a store that commits by the turn (SQLite's group
 * commit), and still makes this batch.
 */
function nextTurn(): Promise<'idle'> {
  return new Promise((r) => setImmediate(() => setImmediate(() => r('idle'))));
}

/**
 * Store first, bus second: publishes every stored job event to
 * `jobline.evt.<jobId>.<type>` in store order, with the event id as Nats-Msg-Id, so a
 * re-publish after a crash is dropped by JetStream's dedupe; then a copy of each on its
 * owner's subject `jobline.owner.<owner>.evt.<jobId>.<type>` (core NATS, for integration
 * users limited to their own owner prefix). It also derives the executor-facing messages
 * (package on JobSubmitted, run on JobDispatched, stop on cancel/timeout/lost) from the stored
 * events, so nobody acts on a state change before it is recorded: an outbox. What it needs to
 * know of a job for them comes from its own lifecycle fold (libs/domain/src/lifecycle.ts, the
 * scheduler's too), checkpointed beside its position, never from re-reading job streams.
 */
export class Relay {
  private subscription: Subscription | null = null;
  private loop: Promise<void> | null = null;
  private position = -1;
  private stopped = false;
  private readonly name: string;
  private readonly batchSize: number;
  private readonly retryDelayMs: number;
  private readonly leaseMs: number;
  private readonly waiters: { position: number; resolve: () => void }[] = [];
  /** jobId → owner, insertion-ordered so the least recently used is forgotten first. */
  private readonly owners = new Map<string, string>();
  private readonly ownerCacheSize: number;
  private fold = new Lifecycle();
  private readonly checkpoint: LifecycleCheckpoint;

  constructor(private readonly o: RelayOptions) {
    this.name = o.name ?? 'relay';
    this.checkpoint = new LifecycleCheckpoint({ snapshots: o.snapshots, name: `lifecycle:${this.name}`, every: o.snapshotEvery, logger: o.logger });
    this.batchSize = o.batchSize ?? 512;
    this.retryDelayMs = o.retryDelayMs ?? 500;
    this.leaseMs = o.leaseMs ?? 10_000;
    this.ownerCacheSize = Math.max(1, o.ownerCacheSize ?? 65_536);
  }

  /** The last position published and checkpointed. */
  get publishedPosition(): number {
    return this.position;
  }

  /** The relay's lifecycle fold of open jobs (read only), as of the last published position. */
  get lifecycle(): Lifecycle {
    return this.fold;
  }

  /**
   * Publishes from the checkpoint on; may be started again after stop() (a leader again). Its
   * fold starts from the last snapshot and is brought to the checkpoint first (the events in
   * between were published already). A snapshot past the checkpoint (this instance's
   * checkpoint is older: another relay published further) is not used: the checkpoint says
   * what this one published, and the fold starts from position 0 instead.
   */
  async start(): Promise<void> {
    this.stopped = false;
    this.position = await this.o.checkpoints.load(this.name);
    let fold = await this.checkpoint.load();
    if (fold.position > this.position) fold = new Lifecycle();
    await this.foldUpTo(fold, this.position);
    this.fold = fold;
    this.subscription = this.o.eventStore.subscribeToAll({ after: this.position });
    this.loop = this.run(this.subscription);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.close();
    await this.loop;
    // Only a fold of exactly what was published (a batch that failed to publish is folded already).
    if (this.fold.position === this.position) await this.checkpoint.save(this.fold);
  }

  /** Folds the stored events after the fold's position up to `position`, publishing nothing. */
  private async foldUpTo(fold: Lifecycle, position: number): Promise<void> {
    while (fold.position < position) {
      const page = await this.o.eventStore.readAll({ after: fold.position, maxCount: Math.min(10_000, position - fold.position) });
      if (page.length === 0) break;
      for (const rec of page) {
        if (rec.position > position) return;
        this.applyRecord(fold, rec);
      }
    }
  }

  /** One stored event into the fold; its change (null for an event not of a job stream, or one that cannot be decoded). */
  private applyRecord(fold: Lifecycle, rec: RecordedEvent): { event: StoredJobEvent; before: OpenJob | undefined } | null {
    let result: { event: StoredJobEvent; before: OpenJob | undefined } | null = null;
    if (rec.streamId.startsWith(JOB_STREAM_PREFIX)) {
      try {
        const event = decodeJobEvent(rec);
        const { before, after } = fold.apply(event.metadata.jobId, event, rec.position);
        const owner = before?.owner ?? after?.owner;
        if (owner && !after) this.remember(event.metadata.jobId, owner);
        result = { event, before };
      } catch (err) {
        this.o.logger.error(`relay: cannot read the event at ${rec.position}: ${(err as Error).message}`);
      }
    }
    if (rec.position > fold.position) fold.position = rec.position;
    return result;
  }

  /** Resolves once everything up to `position` is on the bus. */
  waitFor(position: number): Promise<void> {
    if (this.position >= position) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ position, resolve }));
  }

  private async run(sub: Subscription): Promise<void> {
    const buffer: RecordedEvent[] = [];
    const iterator = sub[Symbol.asyncIterator]();
    let pendingNext: Promise<IteratorResult<RecordedEvent>> | null = null;
    for (;;) {
      // Take what is there; publish as soon as nothing more arrives at once: after the events the
      // store has at hand (one append's, or all of them after a batch), or, after an event this
      // process's scheduler may answer in the same turn, after that turn.
      const next: Promise<IteratorResult<RecordedEvent>> = pendingNext ?? iterator.next();
      pendingNext = null;
      let result: IteratorResult<RecordedEvent> | 'idle';
      if (buffer.length === 0) result = await next;
      else {
        result = await Promise.race([next, FOLLOWED_AT_ONCE.has(buffer[buffer.length - 1].type) ? nextTurn() : drained()]);
        if (result === 'idle') pendingNext = next;
      }
      if (result !== 'idle' && !result.done) {
        buffer.push(result.value);
        if (hopMarks.record && result.value.streamId.startsWith(JOB_STREAM_PREFIX)) hopMarks.record(result.value.streamId.slice(JOB_STREAM_PREFIX.length), `relay.got.${result.value.type}`);
      }
      const ended = result !== 'idle' && result.done;
      if (buffer.length && (result === 'idle' || ended || buffer.length >= this.batchSize)) {
        const batch = buffer.splice(0, buffer.length);
        await this.publishBatch(batch);
      }
      if (ended) return;
    }
  }

  private async publishBatch(batch: RecordedEvent[]): Promise<void> {
    // Folded once, before the first try: a derived message looks at the job as the whole batch leaves it.
    const changes = batch.map((rec) => this.applyRecord(this.fold, rec));
    for (;;) {
      const spans: Span[] = [];
      try {
        const items: PublishItem[] = [];
        const copies: PublishItem[] = [];
        for (const change of changes) {
          if (!change) continue;
          const { event, before } = change;
          const payload = toEventMessage(event);
          // Published later than recorded, from the store: the trace goes on from the context stored with the event.
          const parent = tracingActive() ? contextFromRecord(event.metadata as unknown as Record<string, unknown>) : null;
          const span = parent ? this.publishSpan(event, parent) : null;
          const traceContext = span && parent ? withSpanContext(parent, span) : undefined;
          if (span) spans.push(span);
          items.push({ subject: subjects.event(event.metadata.jobId, event.type), payload, msgId: event.id, traceContext });
          const owner = await this.ownerOf(event, before);
          if (owner) copies.push({ subject: subjects.ownerEvent(owner, event.metadata.jobId, event.type), payload, msgId: event.id, traceContext });
          else this.o.logger.warn(`relay: no owner known for job ${event.metadata.jobId}: its ${event.type} has no owner copy`);
          const derived = this.derive(event, before);
          if (derived) {
            derived.traceContext = traceContext;
            items.push(derived);
          }
        }
        if (hopMarks.record) this.mark(changes, 'out');
        await this.o.publisher.publishMany(items);
        if (hopMarks.record) this.mark(changes, 'acked');
        // Stored first; the owners' copies follow in the same order on this one connection.
        for (const c of copies) {
          const h = natsHeaders();
          h.set('Nats-Msg-Id', c.msgId!);
          if (c.traceContext) injectHeaders(h, c.traceContext);
          this.o.core.publish(c.subject, encodePayload(c.payload), { headers: h });
        }
        for (const s of spans.splice(0)) endSpan(s);
        this.position = batch[batch.length - 1].position;
        await this.o.checkpoints.save(this.name, this.position);
        this.checkpoint.maybeSave(this.fold);
        this.wake();
        return;
      } catch (err) {
        for (const s of spans.splice(0)) endSpan(s, err);
        if (this.stopped) return;
        this.o.logger.warn(`relay: publishing ${batch.length} events failed, retrying: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, this.retryDelayMs));
      }
    }
  }

  /** The benchmark's hop marks: `relay.out.<EventType>` when a batch leaves, `relay.acked.<EventType>` when it is stored. */
  private mark(changes: ({ event: StoredJobEvent } | null)[], what: 'out' | 'acked'): void {
    for (const c of changes) if (c) hopMarks.record?.(c.event.metadata.jobId, `relay.${what}.${c.event.type}`);
  }

  /** `publish <EventType>`: the relay's hop of the job's trace, a child of the span that recorded the event. */
  private publishSpan(event: StoredJobEvent, parent: Context): Span | null {
    return startSpan(TRACERS.orchestrator, `publish ${event.type}`, parent, {
      kind: SpanKind.PRODUCER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.operation.type': 'send',
        'messaging.destination.name': subjects.event(event.metadata.jobId, event.type),
        'messaging.message.id': event.id,
        'jobline.job.id': event.metadata.jobId,
        'jobline.event.type': event.type,
        'jobline.event.position': event.position,
      },
    });
  }

  /**
   * The job's owner: from the fold (the job before the event, or after it), else remembered
   * (a recently finished job), else, rarely, read from the job's stream.
   */
  private async ownerOf(event: StoredJobEvent, before: OpenJob | undefined): Promise<string | null> {
    const jobId = event.metadata.jobId;
    const owner = before?.owner ?? this.fold.get(jobId)?.owner ?? (event.type === 'JobSubmitted' ? event.data.owner : this.owners.get(jobId));
    if (owner !== undefined) return owner;
    const loaded = (await this.o.jobs.load(jobId)).job.owner;
    if (loaded) this.remember(jobId, loaded);
    return loaded;
  }

  /** Remembers a finished job's owner, forgetting the least recently finished beyond the cache's size. */
  private remember(jobId: string, owner: string): void {
    this.owners.delete(jobId);
    this.owners.set(jobId, owner);
    if (this.owners.size > this.ownerCacheSize) this.owners.delete(this.owners.keys().next().value!);
  }

  /**
   * The executor message an event implies, if the job is still in the state that implies it
   * (as the fold has it at the end of the event's batch); `before` is the job just before the event.
   */
  private derive(event: StoredJobEvent, before: OpenJob | undefined): PublishItem | null {
    const jobId = event.metadata.jobId;
    switch (event.type) {
      case 'JobSubmitted': {
        if (!this.o.packager || !needsBundle(event.data.spec)) return null;
        const job = this.fold.get(jobId);
        // Failed at once (no packager) or already packaged: no order to send.
        if (job?.phase !== 'packaging') return null;
        const msg: PackageJobMessage = { kind: 'package', jobId, owner: job.owner, spec: job.spec };
        return { subject: subjects.packageWork(jobId), payload: msg, msgId: `${event.id}:package` };
      }
      case 'JobDispatched': {
        const job = this.fold.get(jobId);
        // After a long outage the dispatch may be history: never send a stale run order.
        if (!job || job.attempt !== event.data.attempt || (job.phase !== 'dispatched' && job.phase !== 'running')) return null;
        if (job.cancelRequested) return null;
        const msg: RunAttemptMessage = {
          kind: 'run',
          jobId,
          owner: job.owner,
          attempt: event.data.attempt,
          spec: job.spec,
          bundleDigest: job.bundleDigest,
          dispatchedAt: event.data.dispatchedAt,
          // Fencing: by then the scheduler may have declared the attempt lost, so it must not start later.
          startBy: new Date(Date.parse(event.data.dispatchedAt) + this.leaseMs).toISOString(),
        };
        return { subject: subjects.work(event.data.executorId), payload: msg, msgId: `${event.id}:run` };
      }
      case 'JobCancelRequested':
      case 'JobTimedOut':
      case 'JobLost': {
        // The attempt that was current when the event was recorded, where it was dispatched.
        if (!before?.executorId || (before.phase !== 'dispatched' && before.phase !== 'running')) return null;
        const msg: StopAttemptMessage = {
          kind: 'stop',
          jobId,
          attempt: before.attempt,
          // A lost attempt's executor may only be silent (paused, cut off): told, it stops the attempt when it hears.
          reason: event.type === 'JobTimedOut' ? 'timeout' : event.type === 'JobLost' ? 'lost' : 'cancel',
        };
        return { subject: subjects.control(before.executorId), payload: msg, msgId: `${event.id}:stop` };
      }
      default:
        return null;
    }
  }

  private wake(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i].position <= this.position) {
        this.waiters[i].resolve();
        this.waiters.splice(i, 1);
      }
    }
  }
}
