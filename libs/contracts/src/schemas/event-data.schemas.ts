import { z } from 'zod';
import { EVENT_VERSIONS, type JobEvent, type JobEventMessage, type JobEventType } from '../events';
import { ExecutorIdSchema, JobIdSchema, OwnerSchema } from '../ids';
import { JobSpecSchema, Priority } from '../job-spec.schema';

/**
 * Zod schemas of every job event's data and of the envelope published on
 * `jobline.evt.<jobId>.<type>`. events.ts stays the source of the types; the
 * compile-time checks at the end of this file fail the build if a schema and its
 * interface drift apart. They describe what Jobline publishes (strict: a new field is a
 * new event version, DESIGN.md), and are the source of the published JSON Schemas.
 */

/** A time as Jobline writes it: ISO-8601 in UTC (`Date#toISOString`). */
export const IsoTimeSchema = z.string().min(1).meta({ format: 'date-time', description: 'ISO-8601 time, UTC' });

const Attempt = z.number().int().min(1).describe('Attempt number, 1 for the first');
const Reason = z.string().describe('Human-readable reason');
const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

export const SandboxKindSchema = z
  .enum(['none', 'cgroup-v1', 'cgroup-v2', 'ssh', 'ssh-systemd'])
  .describe('How an attempt was isolated on its executor');

export const ResourceUsageSchema = z
  .strictObject({
    cpuMs: z.number().min(0).describe('CPU time, user + system, in milliseconds'),
    maxRssBytes: z.number().min(0).describe('Peak resident memory in bytes'),
  })
  .describe('Resources an attempt used, as measured by its sandbox');

export const JobSubmittedDataSchema = z
  .strictObject({
    jobId: JobIdSchema,
    owner: OwnerSchema,
    spec: JobSpecSchema,
    priority: Priority,
    submittedAt: IsoTimeSchema,
    idempotencyKey: z.string().optional(),
    rerunOf: JobIdSchema.optional().describe('Since version 2: the finished job this one re-runs, with the same spec and the same bundle by digest (its JobSubmitted causationId is the re-run command)'),
  })
  .describe('A job was accepted and durably recorded (version 3: a step may carry continueOnFailure and outputs)');

export const JobPackagedDataSchema = z
  .strictObject({
    bundleDigest: z.string().min(1).describe('Digest of the bundle (sha256:<hex>), the key it is stored under'),
    size: z.number().int().min(0).describe('Bundle size in bytes'),
    commit: z.string().optional().describe('The git commit packaged'),
    dataDigests: z.record(z.string(), z.string()).optional().describe('sha256 of each data file, by path'),
    packagedAt: IsoTimeSchema,
  })
  .describe("The job's source and data were packed into a bundle");

export const JobPackagingFailedDataSchema = z
  .strictObject({ reason: Reason, failedAt: IsoTimeSchema })
  .describe('The bundle could not be built; the job fails');

export const JobQueuedDataSchema = z
  .strictObject({
    attempt: Attempt.describe('The number the next dispatch will carry (1 for the first)'),
    priority: Priority,
    queuedAt: IsoTimeSchema,
  })
  .describe('The job waits for an executor');

export const JobDispatchedDataSchema = z
  .strictObject({ attempt: Attempt, executorId: ExecutorIdSchema, dispatchedAt: IsoTimeSchema })
  .describe('An attempt was handed to an executor');

export const JobStartedDataSchema = z
  .strictObject({
    attempt: Attempt,
    executorId: ExecutorIdSchema,
    startedAt: IsoTimeSchema,
    sandbox: SandboxKindSchema,
    sandboxNote: z.string().optional().describe('Why the sandbox is weaker than asked, e.g. no cgroup delegation'),
    pid: z.number().int().optional(),
  })
  .describe("The attempt's process started");

export const JobCompletedDataSchema = z
  .strictObject({
    attempt: Attempt,
    exitCode: z.number().int().describe('Exit code; 128 + signal number when killed by a signal'),
    signal: z.string().nullable().describe('Signal that ended the process, e.g. SIGKILL'),
    oomKilled: z.boolean(),
    durationMs: z.number().min(0),
    finishedAt: IsoTimeSchema,
    usage: ResourceUsageSchema.nullable(),
    logBytes: z.number().int().min(0).describe('Bytes of stdout and stderr the attempt wrote'),
    logSha256: Sha256Hex.optional().describe('Since version 2: sha256 (hex) of the attempt\'s log, stdout and stderr in log order, exactly the bytes of GET /v1/jobs/{id}/logs?attempt=N'),
    error: z.string().optional().describe('Set when the attempt could not run at all (spawn failure, bad workdir...)'),
  })
  .describe('The attempt ran to its end; exitCode 0 is success');

export const JobTimedOutDataSchema = z
  .strictObject({ attempt: Attempt, timeoutSeconds: z.number().int().min(1), finishedAt: IsoTimeSchema })
  .describe('The attempt ran longer than timeoutSeconds and was stopped');

export const JobCancelRequestedDataSchema = z
  .strictObject({ requestedBy: z.string().min(1), reason: Reason.optional(), requestedAt: IsoTimeSchema })
  .describe('Someone asked to cancel the job');

export const JobCancelledDataSchema = z
  .strictObject({
    attempt: Attempt.nullable().describe('null when the job was cancelled before any attempt ran'),
    finishedAt: IsoTimeSchema,
    exitCode: z.number().int().optional(),
    signal: z.string().nullable().optional(),
    usage: ResourceUsageSchema.nullable().optional(),
    logBytes: z.number().int().min(0).optional(),
    forced: z.boolean().optional().describe('true when the executor never confirmed the stop'),
  })
  .describe('The job was cancelled (terminal)');

export const JobAttemptStoppedDataSchema = z
  .strictObject({
    attempt: Attempt,
    exitCode: z.number().int().describe('Exit code; 128 + signal number when killed by a signal'),
    signal: z.string().nullable().describe('Signal that ended the process, e.g. SIGTERM'),
    oomKilled: z.boolean(),
    durationMs: z.number().min(0),
    finishedAt: IsoTimeSchema.describe('When the process ended'),
    usage: ResourceUsageSchema.nullable(),
    logBytes: z.number().int().min(0).describe('Bytes of stdout and stderr the attempt wrote'),
  })
  .describe("The executor's account of an attempt it stopped after the job had ended (timed out, or a cancel it did not confirm in time); changes no status");

export const JobLostDataSchema = z
  .strictObject({ attempt: Attempt, executorId: ExecutorIdSchema, reason: Reason, lostAt: IsoTimeSchema })
  .describe('The executor running the attempt went silent or restarted');

export const JobRetryScheduledDataSchema = z
  .strictObject({ nextAttempt: Attempt, retryAt: IsoTimeSchema, reason: Reason })
  .describe('The attempt failed and another one will run');

export const JobFailedDataSchema = z
  .strictObject({ attempt: Attempt.nullable(), reason: Reason, finishedAt: IsoTimeSchema })
  .describe('The job failed for good (terminal)');

export const JobPurgedDataSchema = z
  .strictObject({ purgedAt: IsoTimeSchema, by: z.string().min(1) })
  .describe("The finished job's logs, bundle and artifacts were deleted");

// ---- staged pipelines (README "Staged pipelines") ----

const StepNumber = z.number().int().min(1).describe("The step's place in the spec's steps, 1 for the first");
const LogOffset = z.number().int().min(0);

export const JobStepStartedDataSchema = z
  .strictObject({
    attempt: Attempt,
    step: StepNumber,
    name: z.string().min(1).describe("The step's name in the spec"),
    startedAt: IsoTimeSchema,
    logOffset: LogOffset.describe("Byte offset in the attempt's log where the step's marker line begins (its output follows the marker)"),
  })
  .describe('A step of a staged job began');

export const JobStepFinishedDataSchema = z
  .strictObject({
    attempt: Attempt,
    step: StepNumber,
    name: z.string().min(1),
    exitCode: z.number().int().describe("The step's exit code; 128 + signal number when killed by a signal"),
    startedAt: IsoTimeSchema,
    finishedAt: IsoTimeSchema,
    durationMs: z.number().min(0),
    logOffset: LogOffset.describe('Where the step begins in the log (its marker line)'),
    logEnd: LogOffset.describe("Where the step's output ends: its log range is [logOffset, logEnd)"),
    continueOnFailure: z.boolean().describe('The spec marked it: its failure let the next steps run and does not fail the job'),
    interrupted: z.boolean().optional().describe('The attempt ended while the step ran (stopped, timed out, killed); exitCode is the attempt\'s'),
    artifacts: z
      .strictObject({ files: z.number().int().min(0), bytes: z.number().int().min(0) })
      .optional()
      .describe("The step's own outputs, collected right after it ended (GET /v1/jobs/{id}/artifacts?step=N); absent when none were stored"),
  })
  .describe('A step of a staged job ended');

/** The data schema of every event type, at its current version (EVENT_VERSIONS). */
export const EVENT_DATA_SCHEMAS = {
  JobSubmitted: JobSubmittedDataSchema,
  JobPackaged: JobPackagedDataSchema,
  JobPackagingFailed: JobPackagingFailedDataSchema,
  JobQueued: JobQueuedDataSchema,
  JobDispatched: JobDispatchedDataSchema,
  JobStarted: JobStartedDataSchema,
  JobCompleted: JobCompletedDataSchema,
  JobTimedOut: JobTimedOutDataSchema,
  JobCancelRequested: JobCancelRequestedDataSchema,
  JobCancelled: JobCancelledDataSchema,
  JobAttemptStopped: JobAttemptStoppedDataSchema,
  JobLost: JobLostDataSchema,
  JobRetryScheduled: JobRetryScheduledDataSchema,
  JobFailed: JobFailedDataSchema,
  JobPurged: JobPurgedDataSchema,
  JobStepStarted: JobStepStartedDataSchema,
  JobStepFinished: JobStepFinishedDataSchema,
} as const satisfies Record<JobEventType, z.ZodType>;

const eventTypes = Object.keys(EVENT_VERSIONS) as [JobEventType, ...JobEventType[]];

const envelopeShape = {
  id: z.string().min(1).max(128).describe('Event id (a UUID); also the Nats-Msg-Id, so a re-publish is dropped as a duplicate'),
  type: z.enum(eventTypes),
  version: z.number().int().min(1).describe("Version of the data's shape"),
  jobId: JobIdSchema,
  position: z.number().int().min(0).describe('Position in the whole store: a total order over all jobs'),
  streamRevision: z.number().int().min(0).describe("Revision in the job's stream job-<jobId>, from 0"),
  occurredAt: IsoTimeSchema,
  actor: z.string().min(1).describe("Who acted: the owner, an admin (its own name, when it acted on another owner's job), executor:<id>, packager, scheduler, orchestrator, retention:<policy>"),
  causationId: z
    .string()
    .nullable()
    .describe(
      "Id of the message or event that caused this one: the command's Jobline-Request-Id (REST X-Request-Id, gRPC x-request-id), else its Nats-Msg-Id, else " +
        'JOBLINE_CMD:<stream sequence>; the report or packager message id; for JobStarted the JobDispatched it answers; for a scheduler or retention decision the event before it. ' +
        'Null only in histories recorded before causation was kept',
    ),
  correlationId: z.string().describe("The job's submission, shared by every event of the job: the submit's correlationId, else the job id"),
};

/** `jobline.evt.<jobId>.<type>` of any type: the envelope, data left open. */
export const JobEventMessageSchema = z
  .strictObject({
    ...envelopeShape,
    data: z.record(z.string(), z.unknown()).describe('The event data (always an object); its shape is given by type and version'),
  })
  .describe('A stored job event as published on the bus');

/** `jobline.evt.<jobId>.<T>`: the envelope with T's data. */
export function jobEventMessageSchema<T extends JobEventType>(type: T) {
  return z
    .strictObject({
      ...envelopeShape,
      type: z.literal(type),
      version: z.literal(EVENT_VERSIONS[type]),
      data: EVENT_DATA_SCHEMAS[type],
    })
    .describe(`${type}: ${EVENT_DATA_SCHEMAS[type].description ?? ''}`.trim());
}

// ---- compile-time agreement with events.ts: a drift fails `tsc` here ----
type Agrees<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type AllTrue<T extends Record<string, true>> = T;
export type _EventDataAgrees = AllTrue<{
  [K in JobEventType]: Agrees<z.output<(typeof EVENT_DATA_SCHEMAS)[K]>, Extract<JobEvent, { type: K }>['data']>;
}>;
export type _EnvelopeAgrees = AllTrue<{ envelope: Agrees<Omit<z.output<typeof JobEventMessageSchema>, 'data'>, Omit<JobEventMessage, 'data'>> }>;
