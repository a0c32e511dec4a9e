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
import type { CheckpointStore, EventStore, RecordedEvent, Subscription } from '../../../libs/event-store/src/event-store.port';
import { encodePayload, type JetStreamPublisher, type PublishItem } from '../../../libs/messaging/src/publisher';
import { needsBundle } from '../../../libs/domain/src';
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
  /** Reads a job's current state for the messages derived from an event. */
  jobs: Pick<JobCommandHandler, 'load'>;
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
  /** Owners of this many recent jobs are remembered; an older job's owner is read from its stream (default 65,536). */
  ownerCacheSize?: number;
}

/**
 * Store first, bus second: publishes every stored job event to
 * `jobline.evt.<jobId>.<type>` in store order, with the event id as Nats-Msg-Id, so a
 * re-publish after a crash is dropped by JetStream's dedupe; then a copy of each on its
 * owner's subject `jobline.owner.<owner>.evt.<jobId>.<type>` (core NATS, for integration
 * users limited to their own owner prefix). It also derives the
 * executor-facing messages (run on JobDispatched, stop on cancel/timeout/lost) from the
 * stored events, so nobody acts on a state change before it is recorded.
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

  constructor(private readonly o: RelayOptions) {
    this.name = o.name ?? 'relay';
    this.batchSize = o.batchSize ?? 512;
    this.retryDelayMs = o.retryDelayMs ?? 500;
    this.leaseMs = o.leaseMs ?? 10_000;
    this.ownerCacheSize = Math.max(1, o.ownerCacheSize ?? 65_536);
  }

  /** The last position published and checkpointed. */
  get publishedPosition(): number {
    return this.position;
  }

  /** Publishes from the checkpoint on; may be started again after stop() (a leader again). */
  async start(): Promise<void> {
    this.stopped = false;
    this.position = await this.o.checkpoints.load(this.name);
    this.subscription = this.o.eventStore.subscribeToAll({ after: this.position });
    this.loop = this.run(this.subscription);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.subscription?.close();
    await this.loop;
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
      // Take what is there; publish as soon as nothing more arrives at once.
      const next: Promise<IteratorResult<RecordedEvent>> = pendingNext ?? iterator.next();
      pendingNext = null;
      let result: IteratorResult<RecordedEvent> | 'idle';
      if (buffer.length === 0) result = await next;
      else {
        result = await Promise.race([next, new Promise<'idle'>((r) => setImmediate(() => r('idle')))]);
        if (result === 'idle') pendingNext = next;
      }
      if (result !== 'idle' && !result.done) buffer.push(result.value);
      const ended = result !== 'idle' && result.done;
      if (buffer.length && (result === 'idle' || ended || buffer.length >= this.batchSize)) {
        const batch = buffer.splice(0, buffer.length);
        await this.publishBatch(batch);
      }
      if (ended) return;
    }
  }

  private async publishBatch(batch: RecordedEvent[]): Promise<void> {
    for (;;) {
      const spans: Span[] = [];
      try {
        const items: PublishItem[] = [];
        const copies: PublishItem[] = [];
        for (const rec of batch) {
          if (!rec.streamId.startsWith(JOB_STREAM_PREFIX)) continue;
          const event = decodeJobEvent(rec);
          const payload = toEventMessage(event);
          // Published later than recorded, from the store: the trace goes on from the context stored with the event.
          const parent = tracingActive() ? contextFromRecord(event.metadata as unknown as Record<string, unknown>) : null;
          const span = parent ? this.publishSpan(event, parent) : null;
          const traceContext = span && parent ? withSpanContext(parent, span) : undefined;
          if (span) spans.push(span);
          items.push({ subject: subjects.event(event.metadata.jobId, event.type), payload, msgId: event.id, traceContext });
          const owner = await this.ownerOf(event);
          if (owner) copies.push({ subject: subjects.ownerEvent(owner, event.metadata.jobId, event.type), payload, msgId: event.id, traceContext });
          else this.o.logger.warn(`relay: no owner known for job ${event.metadata.jobId}: its ${event.type} has no owner copy`);
          const derived = await this.derive(event);
          if (derived) {
            derived.traceContext = traceContext;
            items.push(derived);
          }
        }
        await this.o.publisher.publishMany(items);
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

  /** The job's owner: from JobSubmitted, else remembered, else read from the job's stream. */
  private async ownerOf(event: StoredJobEvent): Promise<string | null> {
    const jobId = event.metadata.jobId;
    let owner: string | null | undefined = event.type === 'JobSubmitted' ? event.data.owner : this.owners.get(jobId);
    if (owner === undefined) owner = (await this.o.jobs.load(jobId)).job.owner ?? null;
    if (!owner) return null;
    this.owners.delete(jobId);
    this.owners.set(jobId, owner);
    if (this.owners.size > this.ownerCacheSize) this.owners.delete(this.owners.keys().next().value!);
    return owner;
  }

  /** The executor message an event implies, if the job is still in the state that implies it. */
  private async derive(event: StoredJobEvent): Promise<PublishItem | null> {
    switch (event.type) {
      case 'JobSubmitted': {
        if (!this.o.packager || !needsBundle(event.data.spec)) return null;
        const { job } = await this.o.jobs.load(event.metadata.jobId);
        // Failed at once (no packager) or already packaged: no order to send.
        if (job.phase !== 'packaging') return null;
        const msg: PackageJobMessage = { kind: 'package', jobId: event.metadata.jobId, owner: job.owner!, spec: job.spec! };
        return { subject: subjects.packageWork(event.metadata.jobId), payload: msg, msgId: `${event.id}:package` };
      }
      case 'JobDispatched': {
        const { job } = await this.o.jobs.load(event.metadata.jobId);
        // After a long outage the dispatch may be history: never send a stale run order.
        if (job.attempt !== event.data.attempt || (job.phase !== 'dispatched' && job.phase !== 'running')) return null;
        if (job.cancelRequested) return null;
        const msg: RunAttemptMessage = {
          kind: 'run',
          jobId: event.metadata.jobId,
          owner: job.owner!,
          attempt: event.data.attempt,
          spec: job.spec!,
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
        const { events } = await this.o.jobs.load(event.metadata.jobId);
        const dispatch = lastDispatchBefore(events, event.streamRevision);
        if (!dispatch) return null;
        const msg: StopAttemptMessage = {
          kind: 'stop',
          jobId: event.metadata.jobId,
          attempt: dispatch.data.attempt,
          // A lost attempt's executor may only be silent (paused, cut off): told, it stops the attempt when it hears.
          reason: event.type === 'JobTimedOut' ? 'timeout' : event.type === 'JobLost' ? 'lost' : 'cancel',
        };
        return { subject: subjects.control(dispatch.data.executorId), payload: msg, msgId: `${event.id}:stop` };
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

/** The dispatch of the attempt that was current when the event at `revision` was recorded. */
function lastDispatchBefore(events: StoredJobEvent[], revision: number) {
  let dispatch: Extract<StoredJobEvent, { type: 'JobDispatched' }> | null = null;
  for (const e of events) {
    if (e.streamRevision >= revision) break;
    if (e.type === 'JobDispatched') dispatch = e as Extract<StoredJobEvent, { type: 'JobDispatched' }>;
    if (e.type === 'JobRetryScheduled' || e.type === 'JobQueued') dispatch = null;
  }
  return dispatch;
}
