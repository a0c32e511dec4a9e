import { z } from 'zod';
import { JobSpecSchema, SPEC_LIMITS, type JobSpec } from './job-spec.schema';
import { ExecutorIdSchema, JobIdSchema } from './ids';
import type { ResourceUsage, SandboxKind, StepFinishedData, StepStartedData } from './events';

/** `jobline.cmd.<owner>.submit` payload. The client chooses the jobId; Nats-Msg-Id dedupes. */
export const SubmitJobMessageSchema = z.strictObject({
  jobId: JobIdSchema,
  spec: JobSpecSchema,
  idempotencyKey: z.string().min(1).max(255).optional(),
  correlationId: z.string().min(1).max(128).optional(),
});
export type SubmitJobMessage = z.output<typeof SubmitJobMessageSchema>;

/** `jobline.cmd.<owner>.cancel` payload. */
export const CancelJobMessageSchema = z.strictObject({
  jobId: JobIdSchema,
  reason: z.string().max(1024).optional(),
  correlationId: z.string().min(1).max(128).optional(),
});
export type CancelJobMessage = z.output<typeof CancelJobMessageSchema>;

/**
 * `jobline.cmd.<owner>.rerun` payload: run a finished job of the owner again as a new job
 * `jobId` (client-chosen, as for submit) with the same spec and the same bundle by digest.
 */
export const RerunJobMessageSchema = z.strictObject({
  jobId: JobIdSchema.describe('The new job'),
  rerunOf: JobIdSchema.describe('The finished job to run again'),
  idempotencyKey: z.string().min(1).max(255).optional(),
  correlationId: z.string().min(1).max(128).optional(),
});
export type RerunJobMessage = z.output<typeof RerunJobMessageSchema>;

/** `jobline.cmd.<owner>.purge` payload: remove a finished job's logs and artifacts (the history stays). */
export const PurgeJobMessageSchema = z.strictObject({
  jobId: JobIdSchema,
  correlationId: z.string().min(1).max(128).optional(),
});
export type PurgeJobMessage = z.output<typeof PurgeJobMessageSchema>;

/**
 * `jobline.rej.<owner>`: a command Jobline refused, naming the field at fault (a payload
 * path, `(payload)`, `(subject)` or a header name) and why. Nothing was recorded for it.
 */
export const CommandRejectionSchema = z
  .strictObject({
    subject: z.string().describe('The subject the command was published on'),
    jobId: z.string().optional().describe("The payload's jobId, when it had one (even an invalid one)"),
    code: z.string().describe('The error code (ERROR_TABLE): invalid_argument, not_found, failed_precondition...'),
    field: z.string().optional().describe('The first field at fault: a payload path (spec.command), (payload), (subject) or a header'),
    message: z.string().describe('What was wrong, every field at fault named'),
    retryAfterSeconds: z.number().int().positive().optional().describe('A refusal over a quota (resource_exhausted): seconds after which trying again is worth it'),
  })
  .describe('A command Jobline refused; nothing was recorded for it');
export type CommandRejection = z.output<typeof CommandRejectionSchema>;

/** Sent to the `Jobline-Reply-To` inbox of a command once it is handled. */
export const CommandReplySchema = z
  .discriminatedUnion('ok', [
    z.strictObject({
      ok: z.literal(true),
      subject: z.string(),
      jobId: z.string().describe('The job the command was recorded for'),
    }),
    CommandRejectionSchema.extend({ ok: z.literal(false) }),
  ])
  .describe('The outcome of a command: recorded (ok) or refused (the rejection)');
export type CommandReply = z.output<typeof CommandReplySchema>;

/** `jobline.work.<executorId>`: run one attempt. */
export interface RunAttemptMessage {
  kind: 'run';
  jobId: string;
  owner: string;
  attempt: number;
  spec: JobSpec;
  bundleDigest: string | null;
  dispatchedAt: string;
  /**
   * Fencing: the executor never starts the attempt after this instant (dispatch + lease),
   * whatever the claim says; by then the orchestrator may have declared it lost. Optional on
   * the wire for messages queued by older orchestrators (then: dispatchedAt + the executor's lease).
   */
  startBy?: string;
}

/** `jobline.ctl.<executorId>`: stop one attempt (cancel, timeout, or lost: the orchestrator no longer counts on it). */
export interface StopAttemptMessage {
  kind: 'stop';
  jobId: string;
  attempt: number;
  reason: 'cancel' | 'timeout' | 'purge' | 'lost';
}

/** `jobline.report.<jobId>`: what an executor saw of an attempt. */
export type AttemptReport =
  | {
      kind: 'started';
      jobId: string;
      attempt: number;
      executorId: string;
      startedAt: string;
      sandbox: SandboxKind;
      sandboxNote?: string;
      pid?: number;
    }
  | {
      kind: 'finished';
      jobId: string;
      attempt: number;
      executorId: string;
      exitCode: number;
      signal: string | null;
      oomKilled: boolean;
      durationMs: number;
      finishedAt: string;
      usage: ResourceUsage | null;
      logBytes: number;
      /** sha256 (hex) of the log's bytes in offset order (stdout and stderr together); optional: older executors do not send it. */
      logSha256?: string;
      /** Set when the attempt could not run at all (spawn failure, bad workdir...). */
      error?: string;
      /** A staged job: every step that ran, so a lost or late step report cannot leave a step unrecorded. */
      steps?: StepFinishedData[];
    }
  | ({ kind: 'step-started'; jobId: string; executorId: string } & StepStartedData)
  | ({ kind: 'step-finished'; jobId: string; executorId: string } & StepFinishedData);

const Usage = z.strictObject({ cpuMs: z.number().min(0), maxRssBytes: z.number().min(0) }).nullable();

const StepStartedShape = z.strictObject({
  attempt: z.number().int().min(1),
  step: z.number().int().min(1).max(SPEC_LIMITS.steps),
  name: z.string().min(1).max(200),
  startedAt: z.string(),
  logOffset: z.number().int().min(0),
});
const StepFinishedShape = z.strictObject({
  ...StepStartedShape.shape,
  exitCode: z.number().int(),
  finishedAt: z.string(),
  durationMs: z.number().min(0),
  logEnd: z.number().int().min(0),
  continueOnFailure: z.boolean(),
  interrupted: z.boolean().optional(),
  artifacts: z.strictObject({ files: z.number().int().min(0), bytes: z.number().int().min(0) }).optional(),
});

export const AttemptReportSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('started'),
    jobId: JobIdSchema,
    attempt: z.number().int().min(1),
    executorId: ExecutorIdSchema,
    startedAt: z.string(),
    sandbox: z.enum(['none', 'cgroup-v1', 'cgroup-v2', 'ssh', 'ssh-systemd']),
    sandboxNote: z.string().optional(),
    pid: z.number().int().optional(),
  }),
  z.strictObject({
    kind: z.literal('finished'),
    jobId: JobIdSchema,
    attempt: z.number().int().min(1),
    executorId: ExecutorIdSchema,
    exitCode: z.number().int(),
    signal: z.string().nullable(),
    oomKilled: z.boolean(),
    durationMs: z.number().min(0),
    finishedAt: z.string(),
    usage: Usage,
    logBytes: z.number().int().min(0),
    logSha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    error: z.string().optional(),
    steps: z.array(StepFinishedShape).max(SPEC_LIMITS.steps).optional(),
  }),
  z.strictObject({ kind: z.literal('step-started'), jobId: JobIdSchema, executorId: ExecutorIdSchema, ...StepStartedShape.shape }),
  z.strictObject({ kind: z.literal('step-finished'), jobId: JobIdSchema, executorId: ExecutorIdSchema, ...StepFinishedShape.shape }),
]);

/**
 * `jobline.claim.<jobId>` request: the `started` report of an attempt, sent before its
 * command runs. The answer (ClaimReply) is given once JobStarted is stored, or refused when
 * the attempt is no longer current; a command runs only as an attempt the history records
 * as started. A claim repeated for an attempt already started is granted again (idempotent).
 */
export type ClaimRequest = Extract<AttemptReport, { kind: 'started' }>;
export const ClaimRequestSchema = AttemptReportSchema.options[0];

/** The orchestrator's answer to a claim. `stale`: the attempt is not current (lost, cancelled, superseded). */
export type ClaimReply = { granted: true } | { granted: false; code: 'stale' | 'not_found' | 'invalid_argument'; message: string };
export const ClaimReplySchema = z.discriminatedUnion('granted', [
  z.strictObject({ granted: z.literal(true) }),
  z.strictObject({ granted: z.literal(false), code: z.enum(['stale', 'not_found', 'invalid_argument']), message: z.string().max(4096) }),
]);

/**
 * The scheduling orchestrator's answer to a heartbeat: every attempt it holds as current
 * (dispatched or running) on this executor instance. An executor stops any attempt it runs
 * that is missing from a reply to a heartbeat sent after that attempt's claim was granted.
 */
export interface LeaseReply {
  executorId: string;
  instanceId: string;
  current: { jobId: string; attempt: number }[];
  /** How long the executor may go without an answer before it must assume its attempts are lost. */
  leaseMs: number;
  sentAt: string;
}
export const LeaseReplySchema = z.strictObject({
  executorId: ExecutorIdSchema,
  instanceId: z.string().min(1).max(128),
  current: z.array(z.strictObject({ jobId: JobIdSchema, attempt: z.number().int().min(1) })),
  leaseMs: z.number().int().min(1),
  sentAt: z.string(),
});

/** `jobline.hb.<executorId>` (core NATS). */
export interface ExecutorHeartbeat {
  executorId: string;
  /** New on every start: a new instance means the old one's attempts are gone. */
  instanceId: string;
  kind: 'local' | 'ssh';
  capacity: number;
  running: { jobId: string; attempt: number }[];
  labels: Record<string, string>;
  sandbox: SandboxKind;
  runtime: string;
  startedAt: string;
  sentAt: string;
  /** Where the executor reaches something (an SSH host), its state, e.g. 'connected' or 'host-key-mismatch'. Optional: added later. */
  state?: string;
  /** Why the state is what it is (e.g. the host-key error). */
  note?: string;
  /** Its heartbeat period: the scheduler sends no new work once it has been silent for ~3 periods. Optional: added later. */
  heartbeatMs?: number;
}

export const ExecutorHeartbeatSchema = z.object({
  executorId: ExecutorIdSchema,
  instanceId: z.string().min(1).max(128),
  kind: z.enum(['local', 'ssh']),
  capacity: z.number().int().min(0),
  running: z.array(z.object({ jobId: JobIdSchema, attempt: z.number().int().min(1) })),
  labels: z.record(z.string(), z.string()),
  sandbox: z.enum(['none', 'cgroup-v1', 'cgroup-v2', 'ssh', 'ssh-systemd']),
  runtime: z.string(),
  startedAt: z.string(),
  sentAt: z.string(),
  state: z.string().min(1).max(64).optional(),
  note: z.string().max(1000).optional(),
  heartbeatMs: z.number().int().min(1).max(3_600_000).optional(),
});

/** `jobline.pkg.work.<jobId>`: build the bundle of a job that carries a source. */
export const PackageJobMessageSchema = z.strictObject({ kind: z.literal('package'), jobId: JobIdSchema, owner: z.string().min(1), spec: JobSpecSchema });

export interface PackageJobMessage {
  kind: 'package';
  jobId: string;
  owner: string;
  spec: JobSpec;
}

/** `jobline.pkg.done.<jobId>`: what a packager made of a job. */
export const PackagingResultSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('packaged'),
    jobId: JobIdSchema,
    bundleDigest: z.string().regex(/^sha256:[0-9a-f]{64}$/),
    size: z.number().int().min(0),
    commit: z.string().optional(),
    dataDigests: z.record(z.string(), z.string()).optional(),
  }),
  z.strictObject({ kind: z.literal('failed'), jobId: JobIdSchema, reason: z.string().min(1).max(4096) }),
]);
export type PackagingResult = z.output<typeof PackagingResultSchema>;

/**
 * `jobline.chain.checkpoint` (core NATS): a signed statement of the event store's chain head
 * ("the log up to position has link chainHash"), published by the orchestrator and kept in
 * the store. Keep one to detect a rewritten or truncated history later (`jobline verify`).
 */
export const ChainCheckpointSchema = z
  .strictObject({
    type: z.literal('jobline.chain-checkpoint/v1'),
    position: z.number().int().min(1).describe('The store position of the chain head'),
    chainHash: z.string().regex(/^[0-9a-f]{64}$/).describe('Its chainHash (hex sha256)'),
    signedAt: z.string().describe('ISO-8601'),
    keyId: z.string().regex(/^[0-9a-f]{64}$/).describe('sha256 of the signing public key (SPKI DER), hex'),
    signature: z.string().min(1).describe('Ed25519 over the RFC 8785 canonical JSON of the other fields, base64'),
  })
  .describe('A signed chain checkpoint');
export type ChainCheckpointMessage = z.output<typeof ChainCheckpointSchema>;
