import { parseJobSpec, STEP_STATUSES, type JobSpec, type JobStatus, type JobView, type SandboxKind, type StepStatus, type StepView } from '../../../../libs/contracts/src';
import { STATUS_TO_PB, priorityFromPb, specFromPb, type PbTimestamp } from '../../../api/src/grpc/jobs.grpc-mapping';

/**
 * What `--json` prints: the documented REST shapes (JobView, the event items of
 * GET /v1/jobs/{id}/events, the page of GET /v1/jobs), rebuilt from the gRPC messages, so a
 * script reads the same JSON from the CLI as from the REST API — never proto-loader's
 * internals (`_timeoutSeconds`, `JOB_STATUS_RUNNING`, `{seconds, nanos}`).
 */

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

const STATUS_FROM_PB = Object.fromEntries(Object.entries(STATUS_TO_PB).map(([k, v]) => [v, k])) as Record<string, JobStatus>;
const SANDBOX_FROM_PB: Record<string, SandboxKind> = {
  SANDBOX_NONE: 'none',
  SANDBOX_CGROUP_V1: 'cgroup-v1',
  SANDBOX_CGROUP_V2: 'cgroup-v2',
  SANDBOX_SSH: 'ssh',
  SANDBOX_SSH_SYSTEMD: 'ssh-systemd',
};

/** A proto Timestamp as the ISO-8601 string REST uses (millisecond precision, UTC). */
export function isoFromPb(t: PbTimestamp | null | undefined): string | null {
  if (!t || t.seconds === undefined) return null;
  return new Date(t.seconds * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

export const statusFromPbName = (s: unknown): JobStatus => {
  const status = typeof s === 'string' ? STATUS_FROM_PB[s] : undefined;
  if (!status) throw new Error(`the server sent an unknown job status ${JSON.stringify(s)}: is this CLI older than the server?`);
  return status;
};

/** The JobSpec as recorded (defaults applied), like JobView.spec over REST. */
export function specViewFromPb(pb: any): JobSpec {
  // An archive source cannot be submitted over gRPC, so the api's mapping refuses it; shown, it is just {archive: true}.
  const archive = Boolean(pb?.source?.archive);
  const mapped = specFromPb(archive ? { ...pb, source: undefined } : pb);
  if (archive) mapped.source = { archive: true };
  const parsed = parseJobSpec(mapped);
  if (!parsed.ok) throw new Error(`the server sent a spec this CLI cannot read (${parsed.issues.map((i) => `${i.path}: ${i.message}`).join('; ')})`);
  return parsed.value;
}

/** A gRPC JobView as the REST JobView, field for field. */
export function jobViewFromPb(pb: any): JobView {
  const spec = specViewFromPb(pb.spec);
  return {
    id: pb.id,
    owner: pb.owner,
    status: statusFromPbName(pb.status),
    priority: priorityFromPb(pb.priority) ?? spec.priority,
    spec,
    submittedAt: isoFromPb(pb.submittedAt) ?? '',
    startedAt: isoFromPb(pb.startedAt),
    finishedAt: isoFromPb(pb.finishedAt),
    attempt: pb.attempt ?? 0,
    exitCode: pb.exitCode ?? null,
    signal: pb.signal ?? null,
    reason: pb.reason ?? null,
    executor: pb.executor ?? null,
    sandbox: SANDBOX_FROM_PB[pb.sandbox as string] ?? null,
    bundleDigest: pb.bundleDigest ?? null,
    usage: pb.usage ? { cpuMs: pb.usage.cpuMs ?? 0, maxRssBytes: pb.usage.maxRssBytes ?? 0 } : null,
    logBytes: pb.logBytes ?? 0,
    logSha256: pb.logSha256 ?? null,
    rerunOf: pb.rerunOf ?? null,
    cancelRequested: pb.cancelRequested ?? false,
    purged: pb.purged ?? false,
    ...(Array.isArray(pb.steps) && pb.steps.length ? { steps: pb.steps.map(stepViewFromPb) } : {}),
  };
}

/** A proto StepView as the REST one. */
export function stepViewFromPb(pb: any): StepView {
  const status = typeof pb.status === 'string' ? pb.status.replace(/^STEP_STATUS_/, '').toLowerCase() : '';
  if (!isStepStatus(status)) throw new Error(`the server sent an unknown step status ${JSON.stringify(pb.status)}: is this CLI older than the server?`);
  return {
    step: pb.step ?? 0,
    name: pb.name ?? '',
    status,
    continueOnFailure: pb.continueOnFailure ?? false,
    exitCode: pb.exitCode ?? null,
    startedAt: isoFromPb(pb.startedAt),
    finishedAt: isoFromPb(pb.finishedAt),
    durationMs: pb.durationMs ?? null,
    logOffset: pb.logOffset ?? null,
    logEnd: pb.logEnd ?? null,
    interrupted: pb.interrupted ?? false,
    artifacts: pb.artifactFiles !== undefined ? { files: pb.artifactFiles, bytes: pb.artifactBytes ?? 0 } : null,
  };
}

/** One item of GET /v1/jobs/{id}/events. */
export interface EventItem {
  position: number;
  id: string;
  type: string;
  version: number;
  occurredAt: string;
  actor: string;
  causationId: string | null;
  correlationId: string | null;
  data: unknown;
}

export function eventItemFromPb(pb: any): EventItem {
  return {
    position: pb.position ?? 0,
    id: pb.id,
    type: pb.type,
    version: pb.version ?? 0,
    occurredAt: isoFromPb(pb.occurredAt) ?? '',
    actor: pb.actor ?? '',
    // proto3 strings have no null: '' is "none", as the REST item's null.
    causationId: pb.causationId ? String(pb.causationId) : null,
    correlationId: pb.correlationId ? String(pb.correlationId) : null,
    data: JSON.parse(pb.dataJson ?? 'null') as unknown,
  };
}

/** GET /v1/jobs: one page. */
export interface JobsPageJson {
  items: JobView[];
  total: number;
  nextCursor: string | null;
}

export const jobsPageFromPb = (pb: any): JobsPageJson => ({
  items: ((pb.items ?? []) as any[]).map(jobViewFromPb),
  total: pb.total ?? 0,
  nextCursor: pb.nextCursor ? String(pb.nextCursor) : null,
});

/** GET /v1/executors?at=: the executors with work at an instant, and how many jobs waited for one. */
export interface ExecutorsAtJson {
  at: string;
  position: number;
  queued: number;
  items: { id: string; running: number; jobs: JobView[] }[];
}

export const executorsAtFromPb = (pb: any): ExecutorsAtJson => ({
  at: isoFromPb(pb.at) ?? '',
  position: pb.position ?? 0,
  queued: pb.queued ?? 0,
  items: ((pb.items ?? []) as any[]).map((e) => ({ id: String(e.id), running: e.running ?? 0, jobs: ((e.jobs ?? []) as any[]).map(jobViewFromPb) })),
});

/**
 * A log chunk as the WebSocket `log` frame carries it: `data` is UTF-8 text, or base64 with
 * `"encoding": "base64"` when the bytes are not valid UTF-8.
 */
export function logFrameFromPb(jobId: string, chunk: any): Record<string, unknown> {
  const bytes = Buffer.from(chunk.data ?? []);
  const stream = chunk.stream === 'LOG_STREAM_STDERR' ? 'stderr' : 'stdout';
  let text: string | null;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    text = null;
  }
  return { type: 'log', jobId, attempt: chunk.attempt ?? 0, stream, offset: chunk.offset ?? 0, ...(text !== null ? { data: text } : { data: bytes.toString('base64'), encoding: 'base64' }) };
}

/** The end of a followed log, as the WebSocket `end` frame. */
export const endFrameFromPb = (jobId: string, end: any) => ({ type: 'end', jobId, status: statusFromPbName(end.status), exitCode: end.exitCode ?? null });


/** GET /v1/jobs/{id}/compare/{other}, rebuilt from the gRPC CompareResponse. */
export interface JobComparisonJson {
  identical: boolean;
  same: { exitCode: boolean; logSha256: boolean; artifacts: boolean };
  differences: ('exitCode' | 'logSha256' | 'artifacts')[];
  a: ComparedRunJson;
  b: ComparedRunJson;
}
export interface ComparedRunJson {
  id: string;
  status: JobStatus;
  attempt: number;
  exitCode: number | null;
  logSha256: string | null;
  artifactsSha256: string | null;
  bundleDigest: string | null;
  rerunOf: string | null;
}

const runFromPb = (pb: any): ComparedRunJson => ({
  id: pb?.id ?? '',
  status: statusFromPbName(pb?.status),
  attempt: pb?.attempt ?? 0,
  exitCode: pb?.exitCode ?? null,
  logSha256: pb?.logSha256 ?? null,
  artifactsSha256: pb?.artifactsSha256 ?? null,
  bundleDigest: pb?.bundleDigest ?? null,
  rerunOf: pb?.rerunOf ?? null,
});

export const comparisonFromPb = (pb: any): JobComparisonJson => ({
  identical: Boolean(pb.identical),
  same: { exitCode: Boolean(pb.sameExitCode), logSha256: Boolean(pb.sameLogSha256), artifacts: Boolean(pb.sameArtifacts) },
  differences: (pb.differences ?? []) as JobComparisonJson['differences'],
  a: runFromPb(pb.a),
  b: runFromPb(pb.b),
});

/** The gRPC DsseEnvelope as REST's JSON (bytes → base64), so `jobline verify --attestation` reads either. */
export function envelopeFromPb(pb: any): { payloadType: string; payload: string; signatures: { keyid: string; sig: string }[] } {
  const b64 = (v: unknown) => Buffer.from((v as Uint8Array | undefined) ?? new Uint8Array()).toString('base64');
  return {
    payloadType: pb?.payloadType ?? '',
    payload: b64(pb?.payload),
    signatures: ((pb?.signatures ?? []) as any[]).map((s) => ({ keyid: s.keyid ?? '', sig: b64(s.sig) })),
  };
}

/* eslint-enable @typescript-eslint/no-explicit-any */

const isStepStatus = (s: string): s is StepStatus => (STEP_STATUSES as readonly string[]).includes(s);
