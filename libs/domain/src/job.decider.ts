import {
  IllegalStateError,
  NotFoundError,
  NotOwnerError,
  StaleAttemptError,
  ConflictError,
  ValidationError,
  type JobEvent,
  type JobSpec,
  type Priority,
  type ResourceUsage,
  type SandboxKind,
  type StepFinishedData,
  type StepStartedData,
} from '../../contracts/src';

/**
 * The job aggregate: commands in, events out. Pure: time and ids come in with the
 * command. The orchestrator is its only caller (load → fold → decide → append).
 */

export type JobPhase =
  | 'none'
  | 'submitted'
  | 'packaging'
  | 'queued'
  | 'dispatched'
  | 'running'
  | 'retry_wait'
  | 'succeeded'
  | 'failed'
  | 'cancelled'
  | 'timed_out';

export const TERMINAL_PHASES: ReadonlySet<JobPhase> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const ACTIVE_PHASES: ReadonlySet<JobPhase> = new Set(['dispatched', 'running']);

export interface Job {
  phase: JobPhase;
  jobId: string | null;
  owner: string | null;
  spec: JobSpec | null;
  priority: Priority;
  idempotencyKey: string | null;
  /** The current attempt: the one queued, dispatched or running; 0 before the first queue. */
  attempt: number;
  executorId: string | null;
  cancelRequested: boolean;
  /** The executor's report of the current attempt's end is recorded (JobCompleted, JobAttemptStopped, a confirmed JobCancelled). */
  attemptReported: boolean;
  bundleDigest: string | null;
  /** What JobPackaged recorded, for a re-run to refer to the same bundle. */
  bundle: PackagedBundle | null;
  purged: boolean;
  /** Staged jobs: what is recorded of the steps of `steps.attempt` (another attempt's marks do not count). */
  steps: StepMarks;
}

/** Per step number: started, or finished (which implies started). */
export interface StepMarks {
  attempt: number;
  marks: Readonly<Record<number, 'started' | 'finished'>>;
}

/** A bundle as JobPackaged names it. */
export interface PackagedBundle {
  bundleDigest: string;
  size: number;
  commit?: string;
  dataDigests?: Record<string, string>;
}

export const initialState = (): Job => ({
  phase: 'none',
  jobId: null,
  owner: null,
  spec: null,
  priority: 'normal',
  idempotencyKey: null,
  attempt: 0,
  executorId: null,
  cancelRequested: false,
  attemptReported: false,
  bundleDigest: null,
  bundle: null,
  purged: false,
  steps: { attempt: 0, marks: {} },
});

/**
 * Who gives a command that only the job's owner or an admin may give (cancel, purge, re-run):
 * an owner, an admin (any job), or a system policy acting with admin rights (retention). The
 * events it records name `id` as their actor.
 */
export interface Actor {
  id: string;
  admin: boolean;
}

export type JobCommand =
  | {
      type: 'SubmitJob';
      data: {
        jobId: string;
        owner: string;
        spec: JobSpec;
        now: string;
        idempotencyKey?: string;
        /** A re-run (see rerunCommand): the job it re-runs and, for a spec with a source, that job's bundle, recorded again instead of packaging. */
        rerunOf?: { jobId: string; bundle: PackagedBundle | null };
      };
    }
  | { type: 'RecordPackaged'; data: { bundleDigest: string; size: number; commit?: string; dataDigests?: Record<string, string>; now: string } }
  | { type: 'RecordPackagingFailed'; data: { reason: string; now: string } }
  | { type: 'DispatchJob'; data: { attempt: number; executorId: string; now: string } }
  | { type: 'RecordStarted'; data: { attempt: number; executorId: string; startedAt: string; sandbox: SandboxKind; sandboxNote?: string; pid?: number } }
  | {
      type: 'RecordFinished';
      data: {
        attempt: number;
        exitCode: number;
        signal: string | null;
        oomKilled: boolean;
        durationMs: number;
        finishedAt: string;
        usage: ResourceUsage | null;
        logBytes: number;
        logSha256?: string;
        error?: string;
        /** A staged job's steps that ran (any not recorded yet are recorded before the attempt's end). */
        steps?: StepFinishedData[];
      };
    }
  | { type: 'RecordStepStarted'; data: StepStartedData }
  | { type: 'RecordStepFinished'; data: StepFinishedData }
  | { type: 'TimeOutJob'; data: { attempt: number; now: string } }
  | { type: 'RequestCancel'; data: { actor: Actor; reason?: string; now: string } }
  /** The executor did not confirm a stop in time: close the job anyway. */
  | { type: 'ForceCancel'; data: { attempt: number; now: string } }
  | { type: 'MarkLost'; data: { attempt: number; executorId: string; reason: string; now: string } }
  | { type: 'RequeueJob'; data: { attempt: number; now: string } }
  | { type: 'PurgeJob'; data: { actor: Actor; now: string } };

/**
 * Whether a job is packaged before it is queued: it has a source, or data to fetch. A data-only
 * job goes through the packager too, so its URLs meet every guard (allowlist, private addresses,
 * size cap, digest) and its data is in the bundle its workspace is unpacked from.
 */
export const needsBundle = (spec: Pick<JobSpec, 'source' | 'data'>): boolean => spec.source !== undefined || (spec.data?.length ?? 0) > 0;

/**
 * The one phase machine: the phase a job is in after `event`. The decider's evolve, the job
 * view's status and the lifecycle fold of open jobs (lifecycle.ts) all take it from here.
 */
export const phaseAfter = (phase: JobPhase, event: JobEvent): JobPhase => {
  switch (event.type) {
    case 'JobSubmitted':
      return needsBundle(event.data.spec) ? 'packaging' : 'submitted';
    case 'JobPackagingFailed':
      return 'failed';
    case 'JobQueued':
      return 'queued';
    case 'JobDispatched':
      return 'dispatched';
    case 'JobStarted':
      return 'running';
    case 'JobCompleted':
      return event.data.exitCode === 0 ? 'succeeded' : 'failed';
    case 'JobTimedOut':
      return 'timed_out';
    case 'JobCancelled':
      return 'cancelled';
    // Recorded with what follows it in the same append (a retry, a cancel, a failure); alone (older histories) it ends the job.
    case 'JobLost':
      return 'failed';
    case 'JobRetryScheduled':
      return 'retry_wait';
    case 'JobFailed':
      return 'failed';
    case 'JobPackaged':
    case 'JobCancelRequested':
    case 'JobAttemptStopped':
    case 'JobPurged':
    case 'JobStepStarted':
    case 'JobStepFinished':
      return phase;
    default:
      return assertNever(event);
  }
};

/** The current attempt after `event`: set by a queue, a dispatch and a scheduled retry, else unchanged. */
export const attemptAfter = (attempt: number, event: JobEvent): number => {
  switch (event.type) {
    case 'JobQueued':
    case 'JobDispatched':
      return event.data.attempt;
    case 'JobRetryScheduled':
      return event.data.nextAttempt;
    default:
      return attempt;
  }
};

/** The one retry rule: whether a failed or lost `attempt` is followed by another under the spec's retry policy. */
export const retryAllowed = (retry: JobSpec['retry'] | undefined, attempt: number): boolean => !!retry && attempt < retry.maxAttempts;

/** When the retry after a failed `attempt` is due: exponential back-off from `now`. */
export const retryDueAt = (retry: NonNullable<JobSpec['retry']>, attempt: number, now: string): string =>
  new Date(Date.parse(now) + Math.round((retry.backoffSeconds ?? 0) * 1000 * 2 ** (attempt - 1))).toISOString();

export const evolve = (job: Job, event: JobEvent): Job => {
  const next: Job = { ...job, phase: phaseAfter(job.phase, event), attempt: attemptAfter(job.attempt, event) };
  switch (event.type) {
    case 'JobSubmitted': {
      const d = event.data;
      return { ...next, jobId: d.jobId, owner: d.owner, spec: d.spec, priority: d.priority, idempotencyKey: d.idempotencyKey ?? null };
    }
    case 'JobPackaged': {
      const { bundleDigest, size, commit, dataDigests } = event.data;
      return { ...next, bundleDigest, bundle: { bundleDigest, size, ...(commit !== undefined ? { commit } : {}), ...(dataDigests !== undefined ? { dataDigests } : {}) } };
    }
    case 'JobQueued':
      return { ...next, priority: event.data.priority, executorId: null };
    case 'JobDispatched':
      return { ...next, executorId: event.data.executorId, attemptReported: false };
    case 'JobCompleted':
    case 'JobAttemptStopped':
      return { ...next, attemptReported: true };
    case 'JobCancelRequested':
      return { ...next, cancelRequested: true };
    case 'JobCancelled':
      return { ...next, attemptReported: job.attemptReported || event.data.exitCode !== undefined };
    case 'JobRetryScheduled':
      return { ...next, executorId: null };
    case 'JobPurged':
      return { ...next, purged: true };
    // ---- staged pipelines ----
    case 'JobStepStarted':
    case 'JobStepFinished':
      return { ...next, steps: markStep(job.steps, event.data.attempt, event.data.step, event.type === 'JobStepStarted' ? 'started' : 'finished') };
    default:
      return next;
  }
};

export const fold = (events: Iterable<JobEvent>, from: Job = initialState()): Job => {
  let job = from;
  for (const e of events) job = evolve(job, e);
  return job;
};

export const decide = (command: JobCommand, job: Job): JobEvent[] => {
  switch (command.type) {
    case 'SubmitJob': {
      const d = command.data;
      if (job.phase !== 'none') {
        // A re-delivered or re-sent submission of the same job is not an error; a different one is.
        if (job.owner === d.owner && sameJson(job.spec, d.spec)) return [];
        throw new ConflictError(`job ${d.jobId} already exists with another spec or owner`);
      }
      const submitted: JobEvent = {
        type: 'JobSubmitted',
        data: {
          jobId: d.jobId,
          owner: d.owner,
          spec: d.spec,
          priority: d.spec.priority,
          submittedAt: d.now,
          ...(d.idempotencyKey ? { idempotencyKey: d.idempotencyKey } : {}),
          ...(d.rerunOf ? { rerunOf: d.rerunOf.jobId } : {}),
        },
      };
      const queued: JobEvent = { type: 'JobQueued', data: { attempt: 1, priority: d.spec.priority, queuedAt: d.now } };
      if (!needsBundle(d.spec)) return [submitted, queued];
      if (!d.rerunOf) return [submitted];
      // A re-run refers to the bundle already stored by digest: nothing is fetched or packed again.
      const bundle = d.rerunOf.bundle;
      if (!bundle) throw new IllegalStateError(`job ${d.rerunOf.jobId} has no bundle to run again`);
      return [submitted, { type: 'JobPackaged', data: { ...bundle, packagedAt: d.now } }, queued];
    }
    case 'RecordPackaged': {
      requireExists(job);
      if (job.phase !== 'packaging') {
        if (job.bundleDigest === command.data.bundleDigest) return [];
        throw new IllegalStateError(`job is ${job.phase}, not packaging`);
      }
      const { now, ...rest } = command.data;
      return [
        { type: 'JobPackaged', data: { ...rest, packagedAt: now } },
        { type: 'JobQueued', data: { attempt: 1, priority: job.priority, queuedAt: now } },
      ];
    }
    case 'RecordPackagingFailed':
      requireExists(job);
      if (job.phase !== 'packaging') throw new IllegalStateError(`job is ${job.phase}, not packaging`);
      return [{ type: 'JobPackagingFailed', data: { reason: command.data.reason, failedAt: command.data.now } }];
    case 'DispatchJob': {
      requireExists(job);
      const d = command.data;
      if (job.phase !== 'queued') throw new IllegalStateError(`job is ${job.phase}, not queued`);
      if (d.attempt !== job.attempt) throw new StaleAttemptError(`attempt ${d.attempt} is not the queued attempt ${job.attempt}`);
      return [{ type: 'JobDispatched', data: { attempt: d.attempt, executorId: d.executorId, dispatchedAt: d.now } }];
    }
    case 'RecordStarted': {
      const d = command.data;
      if (isDuplicateReport(job, d.attempt, 'running')) return [];
      requireCurrentAttempt(job, d.attempt, ['dispatched']);
      const { attempt, executorId, startedAt, sandbox, sandboxNote, pid } = d;
      return [
        {
          type: 'JobStarted',
          data: { attempt, executorId, startedAt, sandbox, ...(sandboxNote ? { sandboxNote } : {}), ...(pid !== undefined ? { pid } : {}) },
        },
      ];
    }
    case 'RecordFinished': {
      const { steps: stepResults, ...d } = command.data;
      const steps = unrecordedSteps(job, d.attempt, stepResults);
      if (job.attempt === d.attempt && TERMINAL_PHASES.has(job.phase)) {
        // Stopped after the job ended (timeout, forced cancel): its usage and log bytes are still worth recording, once.
        const stoppedLate = (job.phase === 'timed_out' || job.phase === 'cancelled') && job.executorId !== null && !job.attemptReported;
        if (!stoppedLate) return [];
        const { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes } = d;
        return [...steps, { type: 'JobAttemptStopped', data: { attempt, exitCode, signal, oomKilled, durationMs, finishedAt, usage, logBytes } }];
      }
      requireCurrentAttempt(job, d.attempt, ['dispatched', 'running']);
      if (job.cancelRequested) {
        return [
          ...steps,
          {
            type: 'JobCancelled',
            data: { attempt: d.attempt, finishedAt: d.finishedAt, exitCode: d.exitCode, signal: d.signal, usage: d.usage, logBytes: d.logBytes },
          },
        ];
      }
      const completed: JobEvent = { type: 'JobCompleted', data: { ...d } };
      if (d.exitCode === 0) return [...steps, completed];
      const why = d.error ?? (d.signal ? `killed by ${d.signal}` : `exit code ${d.exitCode}`);
      return [...steps, completed, ...retryIfAllowed(job, d.finishedAt, why)];
    }
    case 'TimeOutJob': {
      const d = command.data;
      if (job.attempt === d.attempt && TERMINAL_PHASES.has(job.phase)) return [];
      requireCurrentAttempt(job, d.attempt, ['dispatched', 'running']);
      return [{ type: 'JobTimedOut', data: { attempt: d.attempt, timeoutSeconds: job.spec?.timeoutSeconds ?? 0, finishedAt: d.now } }];
    }
    case 'RequestCancel': {
      requireExists(job);
      const d = command.data;
      requireOwnerOrAdmin(job, d.actor);
      if (TERMINAL_PHASES.has(job.phase)) throw new IllegalStateError(`job already finished (${job.phase})`, { phase: job.phase });
      if (job.cancelRequested) return [];
      const requested: JobEvent = {
        type: 'JobCancelRequested',
        data: { requestedBy: d.actor.id, requestedAt: d.now, ...(d.reason ? { reason: d.reason } : {}) },
      };
      if (ACTIVE_PHASES.has(job.phase)) return [requested];
      return [requested, { type: 'JobCancelled', data: { attempt: null, finishedAt: d.now } }];
    }
    case 'ForceCancel': {
      const d = command.data;
      if (job.attempt === d.attempt && TERMINAL_PHASES.has(job.phase)) return [];
      requireCurrentAttempt(job, d.attempt, ['dispatched', 'running']);
      if (!job.cancelRequested) throw new IllegalStateError('no cancellation was requested');
      return [{ type: 'JobCancelled', data: { attempt: d.attempt, finishedAt: d.now, forced: true } }];
    }
    case 'MarkLost': {
      const d = command.data;
      requireCurrentAttempt(job, d.attempt, ['dispatched', 'running']);
      const lost: JobEvent = { type: 'JobLost', data: { attempt: d.attempt, executorId: d.executorId, reason: d.reason, lostAt: d.now } };
      if (job.cancelRequested) return [lost, { type: 'JobCancelled', data: { attempt: d.attempt, finishedAt: d.now } }];
      const retry = retryIfAllowed(job, d.now, `lost: ${d.reason}`);
      if (retry.length) return [lost, ...retry];
      return [lost, { type: 'JobFailed', data: { attempt: d.attempt, reason: `executor ${d.executorId} lost the attempt: ${d.reason}`, finishedAt: d.now } }];
    }
    case 'RequeueJob': {
      requireExists(job);
      const d = command.data;
      if (job.phase !== 'retry_wait') throw new IllegalStateError(`job is ${job.phase}, not waiting for a retry`);
      if (d.attempt !== job.attempt) throw new StaleAttemptError(`attempt ${d.attempt} is not the scheduled retry ${job.attempt}`);
      return [{ type: 'JobQueued', data: { attempt: d.attempt, priority: job.priority, queuedAt: d.now } }];
    }
    case 'PurgeJob':
      requireExists(job);
      requireOwnerOrAdmin(job, command.data.actor);
      if (!TERMINAL_PHASES.has(job.phase)) throw new IllegalStateError(`job is not finished (${job.phase})`, { phase: job.phase });
      if (job.purged) return [];
      return [{ type: 'JobPurged', data: { purgedAt: command.data.now, by: command.data.actor.id } }];
    // ---- staged pipelines ----
    case 'RecordStepStarted':
    case 'RecordStepFinished': {
      const d = command.data;
      // Reports travel apart from the attempt's end (which repeats every finished step): late ones change nothing.
      if (job.attempt === d.attempt && TERMINAL_PHASES.has(job.phase)) return [];
      requireCurrentAttempt(job, d.attempt, ['running']);
      requireStepOfSpec(job, d.step, d.name);
      const mark = stepMark(job, d.attempt, d.step);
      if (command.type === 'RecordStepStarted') return mark ? [] : [{ type: 'JobStepStarted', data: { ...command.data } }];
      return mark === 'finished' ? [] : [{ type: 'JobStepFinished', data: { ...command.data } }];
    }
    default:
      return assertNever(command);
  }
};

/**
 * The submission that runs a finished job again as `jobId`, asked by `actor` (its owner or an
 * admin): the original's owner, its spec and (when it has a source) its bundle by digest.
 * Throws NotFoundError for no job (NotOwnerError for an actor who may not see it),
 * IllegalStateError for a job not finished, purged, or with a source but no bundle (its
 * packaging failed or never ran).
 */
export function rerunCommand(original: Job, d: { actor: Actor; jobId: string; now: string; idempotencyKey?: string }): Extract<JobCommand, { type: 'SubmitJob' }> {
  requireExists(original);
  requireOwnerOrAdmin(original, d.actor);
  if (!TERMINAL_PHASES.has(original.phase)) throw new IllegalStateError(`job ${original.jobId} has not finished (${original.phase}): only a finished job can be run again`, { phase: original.phase });
  if (original.purged) throw new IllegalStateError(`job ${original.jobId} was purged: it cannot be run again`);
  if (original.spec!.source && !original.bundle) {
    throw new IllegalStateError(`job ${original.jobId} has no bundle (its packaging did not succeed), so it cannot be run again with the same bundle: submit it anew`);
  }
  return {
    type: 'SubmitJob',
    data: {
      jobId: d.jobId,
      owner: original.owner!,
      spec: original.spec!,
      now: d.now,
      ...(d.idempotencyKey ? { idempotencyKey: d.idempotencyKey } : {}),
      rerunOf: { jobId: original.jobId!, bundle: original.spec!.source ? original.bundle : null },
    },
  };
}

/** A retry when the spec allows another attempt, else nothing (the caller's event is terminal). */
function retryIfAllowed(job: Job, now: string, reason: string): JobEvent[] {
  const retry = job.spec?.retry;
  if (!retry || !retryAllowed(retry, job.attempt)) return [];
  return [{ type: 'JobRetryScheduled', data: { nextAttempt: job.attempt + 1, retryAt: retryDueAt(retry, job.attempt, now), reason } }];
}

function requireExists(job: Job): void {
  if (job.phase === 'none') throw new NotFoundError('job not found');
}

/** Only the job's owner or an admin may cancel, purge or re-run it; anyone else is told it does not exist. */
function requireOwnerOrAdmin(job: Job, actor: Actor): void {
  if (actor.admin || actor.id === job.owner) return;
  throw new NotOwnerError(`no job ${job.jobId} for owner ${actor.id}`);
}

function requireCurrentAttempt(job: Job, attempt: number, phases: JobPhase[]): void {
  requireExists(job);
  if (attempt !== job.attempt || !phases.includes(job.phase)) {
    throw new StaleAttemptError(`attempt ${attempt} is not current (job is ${job.phase} at attempt ${job.attempt})`, {
      attempt,
      currentAttempt: job.attempt,
      phase: job.phase,
    });
  }
}

/** The same report delivered again (at-least-once bus): nothing new to record. */
function isDuplicateReport(job: Job, attempt: number, phaseAfter: JobPhase): boolean {
  return job.attempt === attempt && (job.phase === phaseAfter || TERMINAL_PHASES.has(job.phase));
}

// ---- staged pipelines ----

function markStep(steps: StepMarks, attempt: number, step: number, mark: 'started' | 'finished'): StepMarks {
  const marks = steps.attempt === attempt ? steps.marks : {};
  if (marks[step] === 'finished') return steps;
  return { attempt, marks: { ...marks, [step]: mark } };
}

function stepMark(job: Job, attempt: number, step: number): 'started' | 'finished' | undefined {
  return job.steps.attempt === attempt ? job.steps.marks[step] : undefined;
}

function requireStepOfSpec(job: Job, step: number, name: string): void {
  const steps = job.spec?.steps ?? [];
  if (step < 1 || step > steps.length || steps[step - 1].name !== name) {
    throw new ValidationError(`step ${step} (${JSON.stringify(name)}) is not a step of this job`, [{ path: 'step', message: `the job has ${steps.length} steps` }]);
  }
}

/**
 * For each reported step of the current attempt not recorded as finished yet: its JobStepStarted
 * (when its own report has not come) and its JobStepFinished. A step the spec does not have is dropped.
 */
function unrecordedSteps(job: Job, attempt: number, steps: StepFinishedData[] | undefined): JobEvent[] {
  if (!steps?.length || job.attempt !== attempt) return [];
  const spec = job.spec?.steps ?? [];
  return steps
    .filter((s) => s.attempt === attempt && s.step >= 1 && s.step <= spec.length && spec[s.step - 1].name === s.name && stepMark(job, attempt, s.step) !== 'finished')
    .flatMap((s): JobEvent[] => {
      const finished: JobEvent = { type: 'JobStepFinished', data: { ...s } };
      if (stepMark(job, attempt, s.step)) return [finished];
      return [{ type: 'JobStepStarted', data: { attempt, step: s.step, name: s.name, startedAt: s.startedAt, logOffset: s.logOffset } }, finished];
    });
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function assertNever(x: never): never {
  throw new Error(`unhandled: ${JSON.stringify(x)}`);
}
