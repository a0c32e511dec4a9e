import { decodeJobEvent, encodeJobEvent, jobStreamName, newTimeOrderedId, type JobEvent, type StoredJobEvent } from '../../../libs/contracts/src';
import { TERMINAL_PHASES, decide, evolve, initialState, type Job, type JobCommand } from '../../../libs/domain/src';
import { WrongExpectedRevisionError, type EventStore } from '../../../libs/event-store/src/event-store.port';
import { TRACERS, contextFromRecord, hasSpan, inSpan, traceFields, tracingActive } from '../../../libs/messaging/src/trace-context';
import { context } from '@opentelemetry/api';
import { KeyedMutex } from './keyed-mutex';

/** Called right before an append with the job as it stands before it; throws to stop the append. */
export type AppendGuard = (job: Job) => void;

/** Called with the job as the command finds it, before deciding (also when nothing would be appended); throws to refuse the command. */
export type CommandPrecondition = (job: Job) => void;

export interface CommandMeta {
  /** Who acted, recorded as each event's actor: an owner, an admin, 'executor:<id>', 'packager', 'scheduler', 'retention:…'. */
  actor: string;
  /**
   * What caused this command, recorded as each event's causationId: the id of the command
   * message (a request id, a Nats-Msg-Id, `<stream>:<seq>`) or of a report; `'last-event'`
   * for a decision taken on the job's history (the scheduler's, retention's): the id of the
   * newest stored event of the stream it was decided on; `'dispatched'` for a start: the id of
   * the JobDispatched it answers. So an auditor can follow every event back to its cause.
   */
  causationId: string | 'last-event' | 'dispatched';
  /**
   * The correlation of a job's first events (its submission): the submit's own, else the job
   * id. Every later event of the job carries its JobSubmitted's correlationId, whatever this
   * says: one job's life is one flow.
   */
  correlationId?: string;
  /**
   * Tracing: continue the job's own trace (the context stored with its newest event), not the
   * active one: for decisions taken on the job's history (the scheduler's), which may run
   * inside the work of another job.
   */
  jobTrace?: boolean;
}

export interface JobCommandHandlerOptions {
  eventStore: EventStore;
  /** Attempts on a concurrency conflict before giving up (default 10). */
  maxConflictRetries?: number;
  clock?: () => Date;
  /** Told about every command that appended events (metrics); must not throw. */
  onRecorded?: (handled: HandledCommand) => void;
  /**
   * Open jobs whose stream head (fold, revision, the ids a command names) is kept between
   * commands, so a command's append does not wait for a read of the stream; the least recently
   * used beyond this many are forgotten (default 4096; 0 reads the stream for every command).
   */
  keptStreams?: number;
}

export interface HandledCommand {
  /** The job after the command. */
  job: Job;
  /** What the command appended ([] when it changed nothing). */
  events: JobEvent[];
}

/** What a command needs of a job's stream: the fold, its revision and the ids its events name. */
interface StreamHead {
  job: Job;
  /** The stream's last revision, -1 when it has no events. */
  revision: number;
  /** The newest event's id ('last-event' causes). */
  lastId: string | null;
  /** The newest JobDispatched's id ('dispatched' causes). */
  lastDispatchedId: string | null;
  /** The correlationId of the stream's first event, when it has a usable one. */
  correlationId: string | undefined;
}

/**
 * The only writer of job streams: read the stream, fold, decide, append with the
 * expected revision; retry on a conflict. Commands for one job run one at a time here,
 * so conflicts only come from another orchestrator process.
 *
 * The head of an open job's stream is kept after each command and stands in for the read of
 * the next one, but only where the store's expected-revision check proves it: a command
 * appends on the kept head with its revision as the expected one, so the append commits only
 * if nobody else appended since. Any other outcome on a kept head (a conflict, a decision of
 * nothing, a refusal by the decider, a precondition or a guard) is decided again on a read of
 * the stream, as it would have been without it: what is answered without appending is always
 * answered on the stream as it stands.
 */
export class JobCommandHandler {
  private readonly mutex = new KeyedMutex();
  private readonly store: EventStore;
  private readonly maxRetries: number;
  private readonly onRecorded: ((handled: HandledCommand) => void) | undefined;
  /** jobId → its stream's head after this handler's last command on it, least recently used first. */
  private readonly kept = new Map<string, StreamHead>();
  private readonly keptStreams: number;
  readonly clock: () => Date;

  constructor(options: JobCommandHandlerOptions) {
    this.store = options.eventStore;
    this.maxRetries = options.maxConflictRetries ?? 10;
    this.clock = options.clock ?? (() => new Date());
    this.onRecorded = options.onRecorded;
    this.keptStreams = Math.max(0, Math.trunc(options.keptStreams ?? 4096));
  }

  /** Forgets every kept stream head (e.g. on a change of leadership): the next command of each job reads its stream. */
  forgetKept(): void {
    this.kept.clear();
  }

  /**
   * Runs one command. `guard` (a fence) is called right before each append, with the job as the
   * append finds it, and may throw to stop it: a scheduler that is no longer the leader appends
   * nothing, even on a conflict retry; a new job over its owner's queued quota is not recorded.
   * `precondition` is called on the same read, before deciding, whatever the decider would do:
   * a check of the caller's own (a claim's executor) needs no second read of the stream.
   */
  execute(jobId: string, command: JobCommand, meta: CommandMeta, opts: { guard?: AppendGuard; precondition?: CommandPrecondition } = {}): Promise<HandledCommand> {
    return this.mutex.run(jobId, () => this.executeNow(jobId, command, meta, opts));
  }

  /** The job as its stream has it now. */
  async load(jobId: string): Promise<{ job: Job; revision: number; events: StoredJobEvent[] }> {
    const recs = await this.store.readStream(jobStreamName(jobId));
    const events = recs.map(decodeJobEvent);
    let job = initialState();
    for (const e of events) job = evolve(job, e);
    return { job, revision: recs.length ? recs[recs.length - 1].revision : -1, events };
  }

  private async executeNow(jobId: string, command: JobCommand, meta: CommandMeta, opts: { guard?: AppendGuard; precondition?: CommandPrecondition }): Promise<HandledCommand> {
    if (!tracingActive()) return this.decideAndAppend(jobId, command, meta, opts);
    // A command that arrived with a trace continues it; one of the scheduler's or a timer's continues the job's (its newest event's).
    const current = context.active();
    const parent = !meta.jobTrace && hasSpan(current) ? current : contextFromRecord((await this.store.readStream(jobStreamName(jobId))).at(-1)?.metadata);
    return inSpan(TRACERS.orchestrator, `job ${command.type}`, parent, { attributes: { 'jobline.job.id': jobId, 'jobline.actor': meta.actor } }, async (span) => {
      const handled = await this.decideAndAppend(jobId, command, meta, opts);
      span?.setAttributes({
        'jobline.events': handled.events.map((e) => e.type),
        ...(handled.job.owner ? { 'jobline.owner': handled.job.owner } : {}),
        ...(handled.job.attempt ? { 'jobline.attempt': handled.job.attempt } : {}),
      });
      return handled;
    });
  }

  private async decideAndAppend(jobId: string, command: JobCommand, meta: CommandMeta, { guard, precondition }: { guard?: AppendGuard; precondition?: CommandPrecondition }): Promise<HandledCommand> {
    const trace = traceFields();
    // Taken out while in use: kept again only once this command has an outcome on the stream.
    let kept = this.kept.get(jobId);
    this.kept.delete(jobId);
    for (let attempt = 0; ; ) {
      const speculative = kept !== undefined;
      const head = kept ?? (await this.readHead(jobId));
      kept = undefined;
      let decided: JobEvent[];
      try {
        precondition?.(head.job);
        decided = decide(command, head.job);
      } catch (err) {
        if (speculative) continue; // refused on the kept head: the stream may say otherwise
        throw err;
      }
      if (decided.length === 0) {
        if (speculative) continue; // nothing to append on the kept head: answered on the stream only
        this.keep(jobId, head);
        return { job: head.job, events: [] };
      }
      const occurredAt = this.clock().toISOString();
      const causationId = causationOf(meta.causationId, head);
      const correlationId = head.correlationId ?? meta.correlationId ?? jobId;
      const records = decided.map((e) => encodeJobEvent(e, { id: newTimeOrderedId(), jobId, occurredAt, actor: meta.actor, causationId, correlationId, trace }));
      try {
        guard?.(head.job);
      } catch (err) {
        if (speculative) continue;
        throw err;
      }
      let revision: number;
      try {
        revision = (await this.store.appendToStream(jobStreamName(jobId), records, head.revision < 0 ? 'no_stream' : head.revision)).nextExpectedRevision;
      } catch (err) {
        // Another writer appended since the kept head was kept: read the stream (not counted as a retry).
        if (err instanceof WrongExpectedRevisionError && speculative) continue;
        if (err instanceof WrongExpectedRevisionError && attempt++ < this.maxRetries) continue;
        throw err;
      }
      let after = head.job;
      for (const e of decided) after = evolve(after, e);
      const dispatched = records.findLast((r) => r.type === 'JobDispatched');
      this.keep(jobId, {
        job: after,
        revision,
        lastId: records[records.length - 1].id,
        lastDispatchedId: dispatched ? dispatched.id : head.lastDispatchedId,
        correlationId: head.revision < 0 ? usableCorrelation(records[0].metadata.correlationId) : head.correlationId,
      });
      const handled = { job: after, events: decided };
      this.onRecorded?.(handled);
      return handled;
    }
  }

  private async readHead(jobId: string): Promise<StreamHead> {
    const { job, revision, events } = await this.load(jobId);
    return {
      job,
      revision,
      lastId: events.at(-1)?.id ?? null,
      lastDispatchedId: events.findLast((e) => e.type === 'JobDispatched')?.id ?? null,
      correlationId: usableCorrelation(events[0]?.metadata.correlationId),
    };
  }

  /** Keeps an open job's head, as the most recently used; a finished job's is not kept (its later commands are rare). */
  private keep(jobId: string, head: StreamHead): void {
    if (this.keptStreams === 0 || TERMINAL_PHASES.has(head.job.phase)) return;
    this.kept.set(jobId, head);
    if (this.kept.size > this.keptStreams) this.kept.delete(this.kept.keys().next().value!);
  }
}

/** The id a command's events name as their cause (null only for a decision on an empty stream, which decides nothing). */
function causationOf(cause: CommandMeta['causationId'], head: StreamHead): string | null {
  if (cause === 'last-event') return head.lastId;
  if (cause === 'dispatched') return head.lastDispatchedId ?? head.lastId;
  return cause;
}

/** The job's correlation, as its first event recorded it. */
function usableCorrelation(first: unknown): string | undefined {
  return typeof first === 'string' && first !== '' ? first : undefined;
}
