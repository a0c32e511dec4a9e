import { z } from 'zod';
import { ExecutorIdSchema, JOB_STATUSES, STEP_STATUSES, JobIdSchema, JobSpecSchema, OwnerSchema, Priority, WebhookAttemptSchema, WebhookOutcomeSchema, WebhookSourceSchema, type JobView, type StepStatus, type WebhookDeliveryView } from '../../../../libs/contracts/src';
import { IsoTimeSchema, ResourceUsageSchema, SandboxKindSchema } from '../../../../libs/contracts/src/schemas';
import type { Caller } from '../api-tokens';
import type { ExecutorInfo } from '../executors.registry';
import type { Problem } from '../http/problem.filter';
import type { ExecutorsAt, JobEventItem, JobStats, JobTimeline } from '../jobs.service';
import type { DsseEnvelope } from '../../../../libs/event-store/src/attestation';
import type { ChainVerification } from '../../../../libs/event-store/src/chain-verifier';
import type { JobsPage } from '../projections/jobs.projection';
import type { JobComparison } from '../compare';

/**
 * Zod schemas of what the REST api answers. The TypeScript types the handlers return stay
 * the source; the compile-time checks at the end fail `tsc` when a schema and its type
 * drift apart, and the api's tests parse real responses with them. With the request
 * schemas the api validates with, they are the source of the OpenAPI document.
 */

export const JobStatusSchema = z.enum(JOB_STATUSES as unknown as ['pending', ...JobView['status'][]]).describe('pending → queued → running → a terminal status');

export const StepViewSchema = z
  .strictObject({
    step: z.number().int().min(1).describe('1 for the first step'),
    name: z.string(),
    status: z.enum(STEP_STATUSES as unknown as [StepStatus, ...StepStatus[]]).describe('pending → running → succeeded | failed; skipped when the job ended before it'),
    continueOnFailure: z.boolean().describe('Its failure lets the next steps run and does not fail the job'),
    exitCode: z.number().int().nullable(),
    startedAt: IsoTimeSchema.nullable(),
    finishedAt: IsoTimeSchema.nullable(),
    durationMs: z.number().min(0).nullable(),
    logOffset: z.number().int().min(0).nullable().describe('Where the step begins in the attempt’s log (its `==> [n/N] name` marker line)'),
    logEnd: z.number().int().min(0).nullable().describe('Where its output ends: GET /v1/jobs/{id}/logs?offset=logOffset, read up to logEnd'),
    interrupted: z.boolean().describe('The attempt ended while the step ran (stopped, timed out, killed)'),
    artifacts: z
      .strictObject({ files: z.number().int().min(0), bytes: z.number().int().min(0) })
      .nullable()
      .describe('Its own outputs, collected right after it: GET /v1/jobs/{id}/artifacts?step=N'),
  })
  .describe('One step of a staged job, as the current (or last) attempt ran it');

export const JobViewSchema = z
  .strictObject({
    id: JobIdSchema,
    owner: OwnerSchema,
    status: JobStatusSchema,
    priority: Priority,
    spec: JobSpecSchema,
    submittedAt: IsoTimeSchema,
    startedAt: IsoTimeSchema.nullable().describe('When the current attempt started'),
    finishedAt: IsoTimeSchema.nullable(),
    attempt: z.number().int().min(0).describe('The current attempt (0 before the first dispatch)'),
    exitCode: z.number().int().nullable().describe('128 + n when signal n ended the job'),
    signal: z.string().nullable(),
    reason: z.string().nullable().describe('Why the job failed, was cancelled or timed out'),
    executor: ExecutorIdSchema.nullable().describe('The executor of the current attempt'),
    sandbox: SandboxKindSchema.nullable(),
    bundleDigest: z.string().nullable().describe('sha256:<hex> of the job’s bundle, for a job with a source or data'),
    usage: ResourceUsageSchema.nullable(),
    logBytes: z.number().int().min(0).describe('Bytes of output of the current attempt'),
    logSha256: z.string().nullable().describe('sha256 (hex) of the current or last attempt’s log (stdout and stderr in log order, the bytes of /logs), once it finished; null before or when its executor reported none'),
    rerunOf: JobIdSchema.nullable().describe('The finished job this one re-runs (POST /v1/jobs/{id}/rerun)'),
    cancelRequested: z.boolean(),
    purged: z.boolean().describe('Logs and artifacts deleted (DELETE); the history stays'),
    steps: z.array(StepViewSchema).optional().describe('A staged job’s steps in spec order (absent for a command job)'),
  })
  .describe('A job as the read model shows it');

export const JobsPageSchema = z
  .strictObject({
    items: z.array(JobViewSchema),
    total: z.number().int().min(0).describe('Jobs matching the filters, all pages together'),
    nextCursor: z.string().nullable().describe('Pass as cursor for the next page; null on the last'),
  })
  .describe('One page of jobs');

export const JobEventItemSchema = z
  .strictObject({
    position: z.number().int().min(0).describe('Position in the whole store'),
    id: z.string(),
    type: z.string().describe('The event type, e.g. JobStarted (see the AsyncAPI document for each type’s data)'),
    version: z.number().int().min(1),
    occurredAt: IsoTimeSchema,
    actor: z.string().describe("Who acted: the owner, an admin (its own name, when it cancelled, purged or re-ran another owner's job), executor:<id>, packager, scheduler, orchestrator, retention:<policy>"),
    causationId: z
      .string()
      .nullable()
      .describe(
        "What caused it: the command's request id (X-Request-Id, gRPC x-request-id, Jobline-Request-Id), else its Nats-Msg-Id, else JOBLINE_CMD:<seq>; " +
          'the report or packager message id; for JobStarted the JobDispatched it answers; for a scheduler or retention decision the event before it. Null only in histories recorded before causation was kept',
      ),
    correlationId: z.string().nullable().describe("The job's submission, on every event of the job: the submit's correlationId, else the job id"),
    data: z.unknown().describe('The event data, as published on jobline.evt.<jobId>.<type>'),
  })
  .describe('One event of a job’s history');

export const JobEventsSchema = z.strictObject({ items: z.array(JobEventItemSchema) }).describe('A job’s history in stream order');

export const WebhookDeliveriesSchema = z
  .strictObject({
    items: z.array(
      z.strictObject({
        deliveryId: z.string().describe('The Jobline-Delivery header of every try'),
        url: z.string(),
        source: WebhookSourceSchema.describe("job: the job's notify; owner: the owner's configured URLs"),
        state: WebhookOutcomeSchema.describe('The outcome of the latest attempt'),
        attempts: z.array(WebhookAttemptSchema),
      }),
    ),
  })
  .describe('The webhook deliveries of a job that ended, in the order they were first tried');

export const DsseEnvelopeSchema = z
  .strictObject({
    payloadType: z.string().describe('application/vnd.in-toto+json'),
    payload: z.string().describe('The in-toto Statement v1 (RFC 8785 canonical JSON), base64: subject = the job’s history head, bundle and artifacts by sha256; predicate = spec, bundle, attempts, exit, executor, sandbox, chain head'),
    signatures: z
      .array(z.strictObject({ keyid: z.string().describe('sha256 of the signing public key (SPKI DER), hex'), sig: z.string().describe('Ed25519 over the DSSE PAE of payloadType and payload, base64') }))
      .describe('One signature, by the key that signs the chain checkpoints'),
  })
  .describe('A DSSE envelope: the signed provenance of a finished job');

const ComparedRunSchema = z
  .strictObject({
    id: JobIdSchema,
    status: JobStatusSchema,
    attempt: z.number().int().min(0).describe('The latest attempt, the one compared'),
    exitCode: z.number().int().nullable(),
    logSha256: z.string().nullable().describe('sha256 (hex) of its log; null when its executor reported none'),
    artifactsSha256: z.string().nullable().describe('sha256 (hex) of its artifacts tar.gz (GET /v1/jobs/{id}/artifacts); null without artifacts'),
    bundleDigest: z.string().nullable(),
    rerunOf: JobIdSchema.nullable(),
  })
  .describe('One side of a comparison');

const sameFlags = z
  .strictObject({ exitCode: z.boolean(), logSha256: z.boolean().describe('false too when either has no log digest'), artifacts: z.boolean().describe('true when neither stored artifacts') })
  .describe('Which of the three are the same');

export const JobComparisonSchema = z
  .strictObject({
    identical: z.boolean().describe('Exit code, log digest and artifact digests all the same'),
    same: sameFlags,
    differences: z.array(z.enum(['exitCode', 'logSha256', 'artifacts'])).describe('Those not the same'),
    a: ComparedRunSchema,
    b: ComparedRunSchema,
  })
  .describe('Whether two finished jobs (e.g. a job and its re-run) gave the same exit code, log and artifacts');

export const ChainVerificationSchema = z
  .strictObject({
    intact: z.boolean().describe('false: the history is not what was recorded (see problem)'),
    events: z.number().int().min(0).describe('Events read (up to the first problem, or all)'),
    unchained: z.number().int().min(0).describe('Of those, recorded before the hash chain existed: not proven, not tampered'),
    headPosition: z.number().int().describe('Position of the last verified event; -1 when none'),
    chainHash: z.string().nullable().describe('Its link in the chain (hex sha256); null when none'),
    checkpointsMatched: z.number().int().min(0).describe('Signed checkpoints the log matched'),
    checkpointsIgnored: z.number().int().min(0).describe('Stored checkpoints not signed by a trusted key (not used)'),
    problem: z
      .strictObject({
        kind: z.enum(['edited', 'removed', 'inserted', 'reordered', 'truncated', 'checkpoint']),
        position: z.number().int().describe('The first store position where the history differs from what was recorded'),
        streamId: z.string().optional(),
        revision: z.number().int().optional(),
        eventId: z.string().optional(),
        message: z.string(),
      })
      .optional()
      .describe('The first break; absent when intact'),
  })
  .describe('Hash-chain verification of a job or of the whole store');

const statusCounts = z.strictObject(Object.fromEntries(JOB_STATUSES.map((s) => [s, z.number().int().min(0)])) as Record<JobView['status'], z.ZodNumber>);

export const JobStatsSchema = z.strictObject({ total: z.number().int().min(0), byStatus: statusCounts }).describe('Jobs per status');

export const JobTimelineSchema = z
  .strictObject({
    from: IsoTimeSchema,
    to: IsoTimeSchema,
    bucketSeconds: z.number().int().min(1),
    buckets: z.array(
      z.strictObject({
        start: IsoTimeSchema,
        submitted: z.number().int().min(0).describe('Jobs submitted in the bucket'),
        succeeded: z.number().int().min(0).describe('Jobs that finished in the bucket, by terminal status'),
        failed: z.number().int().min(0),
        cancelled: z.number().int().min(0),
        timedOut: z.number().int().min(0),
      }),
    ),
  })
  .describe('Throughput over time: every bucket of [from, to), empty ones too');

export const ExecutorInfoSchema = z
  .strictObject({
    id: ExecutorIdSchema,
    instanceId: z.string(),
    kind: z.enum(['local', 'ssh']),
    capacity: z.number().int().min(0),
    running: z.number().int().min(0).describe('Attempts running at its last heartbeat'),
    labels: z.record(z.string(), z.string()),
    sandbox: SandboxKindSchema,
    runtime: z.string(),
    startedAt: z.string(),
    lastSeen: IsoTimeSchema,
    heartbeatAgeMs: z.number().min(0).describe('Milliseconds since its last heartbeat, by the api’s clock'),
    alive: z.boolean().describe('Heard from within the lease (10 s)'),
    state: z.string().optional().describe("SSH hosts: 'connected', 'host-key-mismatch' or 'unreachable'"),
    note: z.string().optional(),
  })
  .describe('An executor, from its heartbeats');

export const ExecutorsSchema = z.strictObject({ items: z.array(ExecutorInfoSchema) });

export const ExecutorsAtSchema = z
  .strictObject({
    at: IsoTimeSchema.describe('The instant answered for'),
    position: z.number().int().min(-1).describe('The newest store position recorded by then (-1: none yet); the answer is the log up to it'),
    queued: z.number().int().min(0).describe('Your jobs (an admin: every job) queued then, waiting for an executor: GET /v1/jobs?at=…&status=queued lists them'),
    items: z.array(
      z.strictObject({
        id: ExecutorIdSchema.describe('The executorId of the JobDispatched of the attempts on it'),
        running: z.number().int().min(0).describe('Attempts dispatched to it or running on it then, of every owner'),
        jobs: z.array(JobViewSchema).describe('Yours among them (an admin: all), as they stood then, oldest submission first'),
      }),
    ),
  })
  .describe('Which jobs were on each executor at an instant, from the history (heartbeats are not stored: an executor idle then is not listed)');

export const CallerSchema = z.strictObject({ owner: OwnerSchema, admin: z.boolean() }).describe('Who the credentials name');

export const CancelAcceptedSchema = z
  .strictObject({ id: JobIdSchema, status: JobStatusSchema, cancelRequested: z.literal(true) })
  .describe('The cancellation was handed to the orchestrator');

export const ProblemSchema = z
  .looseObject({
    type: z.string().describe('urn:jobline:problem:<code>'),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe('The stable error code, as on gRPC and the WebSocket'),
    errors: z.array(z.strictObject({ path: z.string(), message: z.string() })).optional().describe('What is wrong with each field of an invalid input'),
  })
  .describe('RFC 9457 problem details');

export const BundleManifestSchema = z
  .looseObject({
    version: z.literal(1),
    source: z.looseObject({}).optional().describe('{git: {url, commit}} or {archive: {sha256}}'),
    data: z.array(z.strictObject({ path: z.string(), url: z.string(), sha256: z.string() })).optional(),
    files: z.array(
      z.looseObject({
        path: z.string(),
        type: z.enum(['file', 'symlink']),
        mode: z.string(),
        size: z.number().int().min(0).optional(),
        sha256: z.string().optional(),
        target: z.string().optional(),
      }),
    ),
  })
  .describe('.jobline/manifest.json of a bundle');

export const HealthSchema = z.strictObject({ status: z.literal('ok') });

export const ReadinessSchema = z
  .strictObject({
    ready: z.boolean(),
    checks: z.strictObject({
      nats: z.strictObject({ ok: z.boolean(), rttMs: z.number().optional(), error: z.string().optional() }),
      projection: z.strictObject({ ok: z.boolean(), position: z.number().int(), live: z.boolean(), error: z.string().nullable() }),
    }),
    reasons: z.array(z.string()),
  })
  .describe('Whether this instance can serve');

// ---- compile-time agreement with the handlers' types: a drift fails `tsc` here ----
type Agrees<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type AllTrue<T extends Record<string, true>> = T;
type ProblemKeys = 'type' | 'title' | 'status' | 'detail' | 'code' | 'errors';
export type _RestSchemasAgree = AllTrue<{
  JobView: Agrees<z.output<typeof JobViewSchema>, JobView>;
  JobsPage: Agrees<z.output<typeof JobsPageSchema>, JobsPage>;
  JobEventItem: Agrees<z.output<typeof JobEventItemSchema>, JobEventItem>;
  JobStats: Agrees<z.output<typeof JobStatsSchema>, JobStats>;
  ChainVerification: Agrees<z.output<typeof ChainVerificationSchema>, ChainVerification>;
  WebhookDeliveries: Agrees<z.output<typeof WebhookDeliveriesSchema>, { items: WebhookDeliveryView[] }>;
  DsseEnvelope: Agrees<z.output<typeof DsseEnvelopeSchema>, DsseEnvelope>;
  JobComparison: Agrees<z.output<typeof JobComparisonSchema>, JobComparison>;
  JobTimeline: Agrees<z.output<typeof JobTimelineSchema>, JobTimeline>;
  ExecutorInfo: Agrees<z.output<typeof ExecutorInfoSchema>, ExecutorInfo>;
  ExecutorsAt: Agrees<z.output<typeof ExecutorsAtSchema>, ExecutorsAt>;
  Caller: Agrees<z.output<typeof CallerSchema>, Caller>;
  Problem: Agrees<Pick<z.output<typeof ProblemSchema>, ProblemKeys>, Pick<Problem, ProblemKeys>>;
}>;
