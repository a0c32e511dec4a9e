import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import { ERROR_TABLE, JoblineError, ValidationError, type JobSpec, type JobStatus, type JobView, type SandboxKind, type StepView } from '../../../../libs/contracts/src';

/** proto Timestamp as proto-loader gives it (seconds as a number: LOADER_OPTIONS.longs). */
export interface PbTimestamp {
  seconds?: number;
  nanos?: number;
}

const PRIORITY_TO_PB = { low: 'PRIORITY_LOW', normal: 'PRIORITY_NORMAL', high: 'PRIORITY_HIGH' } as const;
const PRIORITY_FROM_PB: Record<string, JobSpec['priority']> = { PRIORITY_LOW: 'low', PRIORITY_NORMAL: 'normal', PRIORITY_HIGH: 'high' };
export const STATUS_TO_PB: Record<JobStatus, string> = {
  pending: 'JOB_STATUS_PENDING',
  queued: 'JOB_STATUS_QUEUED',
  running: 'JOB_STATUS_RUNNING',
  succeeded: 'JOB_STATUS_SUCCEEDED',
  failed: 'JOB_STATUS_FAILED',
  cancelled: 'JOB_STATUS_CANCELLED',
  timed_out: 'JOB_STATUS_TIMED_OUT',
};
const STATUS_FROM_PB = Object.fromEntries(Object.entries(STATUS_TO_PB).map(([k, v]) => [v, k])) as Record<string, JobStatus>;
const SANDBOX_TO_PB: Record<SandboxKind, string> = {
  none: 'SANDBOX_NONE',
  'cgroup-v1': 'SANDBOX_CGROUP_V1',
  'cgroup-v2': 'SANDBOX_CGROUP_V2',
  ssh: 'SANDBOX_SSH',
  'ssh-systemd': 'SANDBOX_SSH_SYSTEMD',
};

export const toTimestamp = (iso: string): PbTimestamp => {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
};

/** Earliest and latest instants a google.protobuf.Timestamp may hold (0001-01-01 .. 9999-12-31). */
const MIN_TIMESTAMP_SECONDS = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799;

/** A proto Timestamp as an ISO string; out-of-range seconds or nanos are refused, not wrapped. */
export function fromTimestamp(t: PbTimestamp, path = 'at'): string {
  const seconds = t.seconds ?? 0;
  const nanos = t.nanos ?? 0;
  if (!Number.isSafeInteger(seconds) || seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS) {
    throw new ValidationError(`invalid ${path}: seconds ${seconds} is outside 0001-01-01..9999-12-31`, [{ path: `${path}.seconds`, message: 'out of range' }]);
  }
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    throw new ValidationError(`invalid ${path}: nanos must be 0..999999999 (got ${nanos})`, [{ path: `${path}.nanos`, message: 'out of range' }]);
  }
  return new Date(seconds * 1000 + Math.floor(nanos / 1e6)).toISOString();
}

/**
 * A proto enum value as proto-loader hands it over (its name; a number the schema does not
 * know stays a number): the mapped value, undefined for unset or *_UNSPECIFIED, and a
 * ValidationError naming the field for anything else. Nothing is coerced to a default.
 */
function enumFromPb<T>(value: unknown, table: Record<string, T>, path: string, unspecified: string): T | undefined {
  if (value === undefined || value === null || value === unspecified || value === 0) return undefined;
  if (typeof value === 'string' && Object.prototype.hasOwnProperty.call(table, value)) return table[value];
  const expected = Object.keys(table).join(', ');
  throw new ValidationError(`invalid ${path}: ${JSON.stringify(value)} is not a known value (expected ${expected}, or unset)`, [
    { path, message: `unknown enum value ${JSON.stringify(value)}; expected ${expected}` },
  ]);
}

const EXECUTOR_FROM_PB: Record<string, 'local' | 'ssh'> = { EXECUTOR_KIND_LOCAL: 'local', EXECUTOR_KIND_SSH: 'ssh' };
const LOG_STREAM_FROM_PB: Record<string, 'stdout' | 'stderr'> = { LOG_STREAM_STDOUT: 'stdout', LOG_STREAM_STDERR: 'stderr' };

export const priorityFromPb = (p: unknown, path = 'priority'): JobSpec['priority'] | undefined => enumFromPb(p, PRIORITY_FROM_PB, path, 'PRIORITY_UNSPECIFIED');
export const statusFromPb = (s: unknown, path = 'status'): JobStatus | undefined => enumFromPb(s, STATUS_FROM_PB, path, 'JOB_STATUS_UNSPECIFIED');
export const executorKindFromPb = (k: unknown, path = 'spec.target.executor'): 'local' | 'ssh' | undefined => enumFromPb(k, EXECUTOR_FROM_PB, path, 'EXECUTOR_KIND_UNSPECIFIED');
/** LogsRequest.stream: undefined means both streams. */
export const logStreamFromPb = (s: unknown, path = 'stream'): 'stdout' | 'stderr' | undefined => enumFromPb(s, LOG_STREAM_FROM_PB, path, 'LOG_STREAM_UNSPECIFIED');

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped JSON-like objects */

/** A proto JobSpec as the JSON JobSpec of the REST API (validated afterwards by the same schema). */
export function specFromPb(pb: any): Record<string, unknown> {
  if (!pb || typeof pb !== 'object') throw new ValidationError('spec is required', [{ path: 'spec', message: 'required' }]);
  const out: Record<string, unknown> = {};
  if (pb.argv) out.command = pb.argv.args ?? [];
  else if (pb.script !== undefined) out.command = pb.script;
  else if (pb.steps) out.steps = (pb.steps.steps ?? []).map((s: any) => ({ name: s.name ?? '', run: s.run ?? '', ...(s.continueOnFailure !== undefined ? { continueOnFailure: s.continueOnFailure } : {}), ...(s.outputs?.length ? { outputs: s.outputs } : {}) }));
  if (pb.env && Object.keys(pb.env).length) out.env = pb.env;
  if (pb.workdir) out.workdir = pb.workdir;
  const priority = priorityFromPb(pb.priority, 'spec.priority');
  if (priority) out.priority = priority;
  if (pb.timeoutSeconds !== undefined) out.timeoutSeconds = pb.timeoutSeconds;
  if (pb.resources) {
    const r: Record<string, unknown> = {};
    for (const k of ['cpu', 'memoryMb', 'pids', 'ioReadBps', 'ioWriteBps', 'network']) if (pb.resources[k] !== undefined) r[k] = pb.resources[k];
    out.resources = r;
  }
  if (pb.source?.git) out.source = { git: { url: pb.source.git.url ?? '', commit: pb.source.git.commit ?? '' } };
  else if (pb.source?.archive) throw new ValidationError('archive sources are not accepted over gRPC yet: use REST (multipart) or a git source', [{ path: 'spec.source.archive', message: 'not supported over gRPC' }]);
  if (pb.data?.length) out.data = pb.data.map((d: any) => ({ url: d.url ?? '', path: d.path ?? '', ...(d.sha256 !== undefined ? { sha256: d.sha256 } : {}) }));
  if (pb.outputs?.length) out.outputs = pb.outputs;
  if (pb.notify?.length) out.notify = pb.notify.map((n: any) => ({ url: n.url ?? '' }));
  if (pb.retry) out.retry = { maxAttempts: pb.retry.maxAttempts ?? 0, backoffSeconds: pb.retry.backoffSeconds ?? 0 };
  if (pb.target) {
    const t: Record<string, unknown> = {};
    const executor = executorKindFromPb(pb.target.executor);
    if (executor) t.executor = executor;
    if (pb.target.host !== undefined) t.host = pb.target.host;
    if (pb.target.labels && Object.keys(pb.target.labels).length) t.labels = pb.target.labels;
    out.target = t;
  }
  return out;
}

export function specToPb(spec: JobSpec): any {
  const out: any = {};
  if (Array.isArray(spec.command)) out.argv = { args: spec.command };
  else if (typeof spec.command === 'string') out.script = spec.command;
  else if (spec.steps) out.steps = { steps: spec.steps };
  if (spec.env) out.env = spec.env;
  if (spec.workdir) out.workdir = spec.workdir;
  out.priority = PRIORITY_TO_PB[spec.priority];
  if (spec.timeoutSeconds !== undefined) out.timeoutSeconds = spec.timeoutSeconds;
  if (spec.resources) out.resources = spec.resources;
  if (spec.source && 'git' in spec.source) out.source = { git: spec.source.git };
  else if (spec.source) out.source = { archive: true };
  if (spec.data) out.data = spec.data;
  if (spec.outputs) out.outputs = spec.outputs;
  if (spec.notify) out.notify = spec.notify;
  if (spec.retry) out.retry = spec.retry;
  if (spec.target) {
    out.target = {
      executor: spec.target.executor === 'local' ? 'EXECUTOR_KIND_LOCAL' : spec.target.executor === 'ssh' ? 'EXECUTOR_KIND_SSH' : 'EXECUTOR_KIND_UNSPECIFIED',
      ...(spec.target.host !== undefined ? { host: spec.target.host } : {}),
      ...(spec.target.labels ? { labels: spec.target.labels } : {}),
    };
  }
  return out;
}

export function jobViewToPb(v: JobView): any {
  return {
    id: v.id,
    owner: v.owner,
    status: STATUS_TO_PB[v.status],
    priority: PRIORITY_TO_PB[v.priority],
    spec: specToPb(v.spec),
    submittedAt: toTimestamp(v.submittedAt),
    ...(v.startedAt ? { startedAt: toTimestamp(v.startedAt) } : {}),
    ...(v.finishedAt ? { finishedAt: toTimestamp(v.finishedAt) } : {}),
    attempt: v.attempt,
    ...(v.exitCode !== null ? { exitCode: v.exitCode } : {}),
    ...(v.signal !== null ? { signal: v.signal } : {}),
    ...(v.reason !== null ? { reason: v.reason } : {}),
    ...(v.executor !== null ? { executor: v.executor } : {}),
    ...(v.bundleDigest !== null ? { bundleDigest: v.bundleDigest } : {}),
    ...(v.usage ? { usage: v.usage } : {}),
    logBytes: v.logBytes,
    sandbox: v.sandbox ? SANDBOX_TO_PB[v.sandbox] : 'SANDBOX_UNSPECIFIED',
    cancelRequested: v.cancelRequested,
    purged: v.purged,
    ...(v.logSha256 !== null ? { logSha256: v.logSha256 } : {}),
    ...(v.rerunOf !== null ? { rerunOf: v.rerunOf } : {}),
    ...(v.steps ? { steps: stepsToPb(v.steps) } : {}),
  };
}

/** A staged job's steps as proto StepViews. */
export function stepsToPb(steps: readonly StepView[]): any[] {
  return steps.map((s) => ({
    step: s.step,
    name: s.name,
    status: `STEP_STATUS_${s.status.toUpperCase()}`,
    continueOnFailure: s.continueOnFailure,
    ...(s.exitCode !== null ? { exitCode: s.exitCode } : {}),
    ...(s.startedAt ? { startedAt: toTimestamp(s.startedAt) } : {}),
    ...(s.finishedAt ? { finishedAt: toTimestamp(s.finishedAt) } : {}),
    ...(s.durationMs !== null ? { durationMs: s.durationMs } : {}),
    ...(s.logOffset !== null ? { logOffset: s.logOffset } : {}),
    ...(s.logEnd !== null ? { logEnd: s.logEnd } : {}),
    interrupted: s.interrupted,
    ...(s.artifacts ? { artifactFiles: s.artifacts.files, artifactBytes: s.artifacts.bytes } : {}),
  }));
}

/* eslint-enable @typescript-eslint/no-explicit-any */

/** The one place domain errors become gRPC statuses (through ERROR_TABLE); anything unexpected is INTERNAL without its details. */
export function toGrpcError(err: unknown): { code: GrpcStatus; details: string; metadata?: Metadata } {
  if (err instanceof ValidationError && err.issues.length) {
    return { code: GrpcStatus.INVALID_ARGUMENT, details: `${err.message}: ${err.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` };
  }
  if (err instanceof JoblineError) {
    const retry = err.details?.retryAfterSeconds;
    // Over a quota: the REST Retry-After, as trailing metadata `retry-after` (seconds).
    const metadata = typeof retry === 'number' ? new Metadata() : undefined;
    metadata?.set('retry-after', String(retry));
    return { code: GrpcStatus[ERROR_TABLE[err.code].grpc], details: err.message, ...(metadata ? { metadata } : {}) };
  }
  return { code: GrpcStatus.INTERNAL, details: 'internal error' };
}
