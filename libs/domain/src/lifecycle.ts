import type { JobEvent, JobSpec, Priority } from '../../contracts/src';
import { TERMINAL_PHASES, attemptAfter, phaseAfter, retryAllowed, type JobPhase } from './job.decider';

/**
 * The lifecycle of open jobs: what scheduling and the relay need to know of every job that has
 * not finished, folded from the stored events with the decider's own rules (phaseAfter,
 * attemptAfter, retryAllowed). A finished job leaves it, so its size follows the open jobs,
 * not the history; it is plain JSON, so it can be checkpointed (see `toSnapshot`).
 */

/** The phases of a job that has not finished. */
export type OpenPhase = Exclude<JobPhase, 'none' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out'>;

export interface OpenJob {
  jobId: string;
  owner: string;
  priority: Priority;
  /** The whole spec: a run order carries it, and dispatch reads its target, timeout and retry policy. */
  spec: JobSpec;
  /**
   * `retry_wait` also right after a failed or lost attempt that the retry policy allows another
   * one (its JobRetryScheduled follows in the same append): then `retryAt` is still null.
   */
  phase: OpenPhase;
  /** The current attempt (0 before the first queue). */
  attempt: number;
  /** Where the current attempt was dispatched; null while queued or waiting for a retry. */
  executorId: string | null;
  /** Store position of the JobQueued of the current attempt: FIFO order within a priority. */
  queuedSeq: number | null;
  dispatchedAt: string | null;
  startedAt: string | null;
  /** When the running attempt times out (startedAt + timeoutSeconds); null without a timeout. */
  timeoutAt: string | null;
  /** When the scheduled retry is due. */
  retryAt: string | null;
  cancelRequested: boolean;
  cancelRequestedAt: string | null;
  bundleDigest: string | null;
}

/**
 * The open job after `event` at store `position`, or undefined once it has finished (or for an
 * event of a job this fold does not hold: one that finished before).
 */
export function evolveOpenJob(job: OpenJob | undefined, event: JobEvent, position: number): OpenJob | undefined {
  if (event.type === 'JobSubmitted') {
    const d = event.data;
    return {
      jobId: d.jobId,
      owner: d.owner,
      priority: d.priority,
      spec: d.spec,
      phase: phaseAfter('none', event) as OpenPhase,
      attempt: 0,
      executorId: null,
      queuedSeq: null,
      dispatchedAt: null,
      startedAt: null,
      timeoutAt: null,
      retryAt: null,
      cancelRequested: false,
      cancelRequestedAt: null,
      bundleDigest: null,
    };
  }
  if (!job) return undefined;
  const phase = phaseAfter(job.phase, event);
  if (TERMINAL_PHASES.has(phase)) {
    // The decider's retry rule: a failed or lost attempt is followed by JobRetryScheduled in the same append.
    const failed = (event.type === 'JobCompleted' && event.data.exitCode !== 0) || (event.type === 'JobLost' && !job.cancelRequested);
    if (!failed || !retryAllowed(job.spec.retry, job.attempt)) return undefined;
    return { ...job, phase: 'retry_wait', executorId: null, timeoutAt: null, retryAt: null };
  }
  const next: OpenJob = { ...job, phase: phase as OpenPhase, attempt: attemptAfter(job.attempt, event) };
  switch (event.type) {
    case 'JobPackaged':
      return { ...next, bundleDigest: event.data.bundleDigest };
    case 'JobQueued':
      return { ...next, priority: event.data.priority, queuedSeq: position, executorId: null, dispatchedAt: null, startedAt: null, timeoutAt: null, retryAt: null };
    case 'JobDispatched':
      return { ...next, executorId: event.data.executorId, dispatchedAt: event.data.dispatchedAt };
    case 'JobStarted': {
      const t = job.spec.timeoutSeconds;
      const startedAt = event.data.startedAt;
      return { ...next, startedAt, timeoutAt: t ? new Date(Date.parse(startedAt) + t * 1000).toISOString() : null };
    }
    case 'JobCancelRequested':
      return { ...next, cancelRequested: true, cancelRequestedAt: event.data.requestedAt };
    case 'JobRetryScheduled':
      return { ...next, executorId: null, timeoutAt: null, retryAt: event.data.retryAt };
    default:
      return next;
  }
}

/** A change the fold made: the job before and after one event (either undefined: not open). */
export interface LifecycleChange {
  jobId: string;
  before: OpenJob | undefined;
  after: OpenJob | undefined;
}

/** Bumped whenever OpenJob's shape or meaning changes: a snapshot of another version is never read. */
export const LIFECYCLE_VERSION = 1;

export interface LifecycleSnapshot {
  version: number;
  jobs: OpenJob[];
}

/**
 * The open jobs by id, as of `position`: `evolveOpenJob` applied event by event (one map,
 * updated in place, so an event costs O(1) whatever the number of open jobs).
 */
export class Lifecycle {
  private readonly jobs = new Map<string, OpenJob>();
  /** The store position of the last event applied (-1: none). */
  position = -1;

  get size(): number {
    return this.jobs.size;
  }

  get(jobId: string): OpenJob | undefined {
    return this.jobs.get(jobId);
  }

  values(): IterableIterator<OpenJob> {
    return this.jobs.values();
  }

  /** Folds the event of job `jobId` stored at `position`. */
  apply(jobId: string, event: JobEvent, position: number): LifecycleChange {
    const before = this.jobs.get(jobId);
    const after = evolveOpenJob(before, event, position);
    if (after) this.jobs.set(jobId, after);
    else if (before) this.jobs.delete(jobId);
    if (position > this.position) this.position = position;
    return { jobId, before, after };
  }

  /** Plain JSON: every open job, with the version of this shape (the position is saved beside it). */
  toSnapshot(): LifecycleSnapshot {
    return { version: LIFECYCLE_VERSION, jobs: [...this.jobs.values()] };
  }

  /**
   * The fold a snapshot holds, as of `position`; null for a snapshot of another version or a
   * shape this code does not know (the caller folds from position 0 instead: never misread).
   */
  static fromSnapshot(state: unknown, position: number): Lifecycle | null {
    if (!isSnapshot(state) || !Number.isSafeInteger(position) || position < -1) return null;
    const fold = new Lifecycle();
    for (const job of state.jobs) fold.jobs.set(job.jobId, job);
    fold.position = position;
    return fold;
  }
}

const OPEN_PHASES: ReadonlySet<string> = new Set<OpenPhase>(['submitted', 'packaging', 'queued', 'dispatched', 'running', 'retry_wait']);

function isSnapshot(state: unknown): state is LifecycleSnapshot {
  if (typeof state !== 'object' || state === null) return false;
  const s = state as Partial<LifecycleSnapshot>;
  if (s.version !== LIFECYCLE_VERSION || !Array.isArray(s.jobs)) return false;
  return s.jobs.every(
    (j: Partial<OpenJob> | null) =>
      typeof j === 'object' &&
      j !== null &&
      typeof j.jobId === 'string' &&
      typeof j.owner === 'string' &&
      typeof j.phase === 'string' &&
      OPEN_PHASES.has(j.phase) &&
      Number.isSafeInteger(j.attempt) &&
      typeof j.spec === 'object' &&
      j.spec !== null &&
      typeof j.cancelRequested === 'boolean',
  );
}
