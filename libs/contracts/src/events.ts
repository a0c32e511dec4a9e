import type { JobSpec, Priority } from './job-spec.schema';

/**
 * Job-stream events. Past tense, never renamed, never reshaped once published:
 * a new shape is a new version with an upcaster (see upcasters.ts).
 * Times are ISO-8601 strings; they come in with the command, never from a clock here.
 */

/** How an attempt was isolated on its executor. */
export type SandboxKind = 'none' | 'cgroup-v1' | 'cgroup-v2' | 'ssh' | 'ssh-systemd';

export interface ResourceUsage {
  cpuMs: number;
  maxRssBytes: number;
}

export interface JobSubmitted {
  type: 'JobSubmitted';
  data: {
    jobId: string;
    owner: string;
    spec: JobSpec;
    priority: Priority;
    submittedAt: string;
    idempotencyKey?: string;
    /** v2: the finished job this one re-runs (same spec, same bundle by digest; see README "Re-runs"). */
    rerunOf?: string;
  };
}
// v3 of JobSubmitted: a spec's steps may carry continueOnFailure and outputs (a v2 spec is a valid v3 one).
export interface JobPackaged {
  type: 'JobPackaged';
  data: { bundleDigest: string; size: number; commit?: string; dataDigests?: Record<string, string>; packagedAt: string };
}
export interface JobPackagingFailed {
  type: 'JobPackagingFailed';
  data: { reason: string; failedAt: string };
}
export interface JobQueued {
  type: 'JobQueued';
  /** attempt: the number the next dispatch will carry (1 for the first). */
  data: { attempt: number; priority: Priority; queuedAt: string };
}
export interface JobDispatched {
  type: 'JobDispatched';
  data: { attempt: number; executorId: string; dispatchedAt: string };
}
export interface JobStarted {
  type: 'JobStarted';
  data: { attempt: number; executorId: string; startedAt: string; sandbox: SandboxKind; sandboxNote?: string; pid?: number };
}
export interface JobCompleted {
  type: 'JobCompleted';
  data: {
    attempt: number;
    exitCode: number;
    signal: string | null;
    oomKilled: boolean;
    durationMs: number;
    finishedAt: string;
    usage: ResourceUsage | null;
    logBytes: number;
    /** v2: sha256 (hex) of the attempt's log, stdout and stderr in log order (the bytes of GET /v1/jobs/{id}/logs); absent when the executor did not compute it. */
    logSha256?: string;
    error?: string;
  };
}
export interface JobTimedOut {
  type: 'JobTimedOut';
  data: { attempt: number; timeoutSeconds: number; finishedAt: string };
}
export interface JobCancelRequested {
  type: 'JobCancelRequested';
  data: { requestedBy: string; reason?: string; requestedAt: string };
}
export interface JobCancelled {
  type: 'JobCancelled';
  /** attempt is null when the job was cancelled before any attempt ran. */
  data: {
    attempt: number | null;
    finishedAt: string;
    exitCode?: number;
    signal?: string | null;
    usage?: ResourceUsage | null;
    logBytes?: number;
    forced?: boolean;
  };
}
/**
 * The executor's account of an attempt it stopped after the job had already ended (timed
 * out, or cancelled without waiting for its confirmation): what JobCompleted would have
 * said. Changes no status; the view shows its usage and log bytes.
 */
export interface JobAttemptStopped {
  type: 'JobAttemptStopped';
  data: {
    attempt: number;
    exitCode: number;
    signal: string | null;
    oomKilled: boolean;
    durationMs: number;
    finishedAt: string;
    usage: ResourceUsage | null;
    logBytes: number;
  };
}
export interface JobLost {
  type: 'JobLost';
  data: { attempt: number; executorId: string; reason: string; lostAt: string };
}
export interface JobRetryScheduled {
  type: 'JobRetryScheduled';
  data: { nextAttempt: number; retryAt: string; reason: string };
}
export interface JobFailed {
  type: 'JobFailed';
  data: { attempt: number | null; reason: string; finishedAt: string };
}
export interface JobPurged {
  type: 'JobPurged';
  data: { purgedAt: string; by: string };
}

// ---- staged pipelines (README "Staged pipelines") ----

/** A step of a staged job began: its marker is at `logOffset` of the attempt's log. */
export interface JobStepStarted {
  type: 'JobStepStarted';
  data: StepStartedData;
}
/** A step of a staged job ended; its output is bytes [logOffset, logEnd) of the attempt's log, its marker included. */
export interface JobStepFinished {
  type: 'JobStepFinished';
  data: StepFinishedData;
}
export interface StepStartedData {
  attempt: number;
  /** 1 for the spec's first step. */
  step: number;
  name: string;
  startedAt: string;
  logOffset: number;
}
export interface StepFinishedData {
  attempt: number;
  step: number;
  name: string;
  /** 128 + signal number when the step was killed by a signal. */
  exitCode: number;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  logOffset: number;
  logEnd: number;
  /** The spec's flag: this step's failure did not stop the job. */
  continueOnFailure: boolean;
  /** The attempt ended while the step ran (stopped, timed out, or its shell died): exitCode is the attempt's. */
  interrupted?: boolean;
  /** The step's own `outputs`, collected right after it (stored as `<jobId>/<attempt>/<step>`); absent when none were stored. */
  artifacts?: { files: number; bytes: number };
}

export type JobEvent =
  | JobSubmitted
  | JobPackaged
  | JobPackagingFailed
  | JobQueued
  | JobDispatched
  | JobStarted
  | JobCompleted
  | JobTimedOut
  | JobCancelRequested
  | JobCancelled
  | JobAttemptStopped
  | JobLost
  | JobRetryScheduled
  | JobFailed
  | JobPurged
  | JobStepStarted
  | JobStepFinished;

export type JobEventType = JobEvent['type'];

/** The current version of every event type; bump with an upcaster, never reshape. */
export const EVENT_VERSIONS: Record<JobEventType, number> = {
  // 2: optional rerunOf. 3: steps may carry continueOnFailure and outputs.
  JobSubmitted: 3,
  JobPackaged: 1,
  JobPackagingFailed: 1,
  JobQueued: 1,
  JobDispatched: 1,
  JobStarted: 1,
  // 2: optional logSha256.
  JobCompleted: 2,
  JobTimedOut: 1,
  JobCancelRequested: 1,
  JobCancelled: 1,
  JobAttemptStopped: 1,
  JobLost: 1,
  JobRetryScheduled: 1,
  JobFailed: 1,
  JobPurged: 1,
  JobStepStarted: 1,
  JobStepFinished: 1,
};

export const JOB_EVENT_TYPES = Object.keys(EVENT_VERSIONS) as JobEventType[];
export const isJobEventType = (t: string): t is JobEventType => Object.prototype.hasOwnProperty.call(EVENT_VERSIONS, t);

/** Metadata every stored event carries beside its data. */
export interface EventMetadata {
  version: number;
  jobId: string;
  occurredAt: string;
  actor: string;
  causationId: string | null;
  correlationId: string;
  /**
   * W3C trace context of the work that recorded the event (only while tracing is on), so the
   * relay that publishes it later continues the same trace. Part of the hashed metadata.
   */
  traceparent?: string;
  tracestate?: string;
}

/** A job event as read back from the store, with its envelope. */
export type StoredJobEvent<E extends JobEvent = JobEvent> = E & {
  id: string;
  streamRevision: number;
  position: number;
  metadata: EventMetadata;
};

/** The wire form on `jobline.evt.<jobId>.<type>` (JSON). */
export interface JobEventMessage {
  id: string;
  type: JobEventType;
  version: number;
  jobId: string;
  position: number;
  streamRevision: number;
  occurredAt: string;
  actor: string;
  causationId: string | null;
  correlationId: string;
  data: unknown;
}
