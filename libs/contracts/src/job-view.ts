import type { JobSpec, Priority } from './job-spec.schema';
import type { ResourceUsage, SandboxKind } from './events';

/** Public job status (DESIGN.md): pending → queued → running → a terminal one. */
export type JobStatus = 'pending' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
export const JOB_STATUSES: JobStatus[] = ['pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'];
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
export const isTerminal = (s: JobStatus) => TERMINAL_STATUSES.has(s);

/** What REST, gRPC and the CLI show of a job. */
export interface JobView {
  id: string;
  owner: string;
  status: JobStatus;
  priority: Priority;
  spec: JobSpec;
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempt: number;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  executor: string | null;
  sandbox: SandboxKind | null;
  bundleDigest: string | null;
  usage: ResourceUsage | null;
  logBytes: number;
  /** sha256 (hex) of the current or last attempt's log, once it finished (null before, or when its executor did not report one). */
  logSha256: string | null;
  /** The finished job this one re-runs (POST /v1/jobs/{id}/rerun), else null. */
  rerunOf: string | null;
  cancelRequested: boolean;
  purged: boolean;
  /** A staged job's steps, in spec order, as the current (or last) attempt ran them; absent for a command job. */
  steps?: StepView[];
}

/**
 * pending: not reached yet · running · succeeded · failed (a continueOnFailure step's failure
 * included) · skipped: the job ended before it (an earlier step failed, or the job was stopped).
 */
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';
export const STEP_STATUSES: readonly StepStatus[] = ['pending', 'running', 'succeeded', 'failed', 'skipped'];

/** One step of a staged job in the view (README "Staged pipelines"). */
export interface StepView {
  /** 1 for the first step. */
  step: number;
  name: string;
  status: StepStatus;
  continueOnFailure: boolean;
  exitCode: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  /** Its range of the attempt's log, [logOffset, logEnd), marker line first; null before it started (logEnd: before it ended). */
  logOffset: number | null;
  logEnd: number | null;
  /** The attempt ended while it ran. */
  interrupted: boolean;
  /** Its own outputs, when it named some and they were stored (GET /v1/jobs/{id}/artifacts?step=N). */
  artifacts: { files: number; bytes: number } | null;
}

/** The orders GET /v1/jobs (and `jobline list --order`) accept. */
export type JobOrder = '-submittedAt' | 'submittedAt' | '-priority' | 'priority';
export const JOB_ORDERS: readonly JobOrder[] = ['-submittedAt', 'submittedAt', '-priority', 'priority'];
