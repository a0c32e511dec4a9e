import { z } from 'zod';
import { JobIdSchema, OwnerSchema, RequestIdSchema } from '../ids';
import { JobSpecSchema } from '../job-spec.schema';
import { AttemptReportSchema, ExecutorHeartbeatSchema, type AttemptReport, type ExecutorHeartbeat, type RunAttemptMessage, type StopAttemptMessage } from '../messages';
import { COMMAND_REPLY_HEADER, LOG_HEADERS, REQUEST_ID_HEADER } from '../subjects';
import { IsoTimeSchema } from './event-data.schemas';

/**
 * Zod schemas of the bus messages that messages.ts and subjects.ts declare only as
 * types: the work and control orders the relay sends executors, and the headers of a
 * log chunk. (SubmitJob, CancelJob, AttemptReport and ExecutorHeartbeat already have
 * their schemas in messages.ts.)
 */

/** `jobline.work.<executorId>`: run one attempt. Derived by the relay from JobDispatched. */
export const RunAttemptMessageSchema = z
  .strictObject({
    kind: z.literal('run'),
    jobId: JobIdSchema,
    owner: OwnerSchema,
    attempt: z.number().int().min(1),
    spec: JobSpecSchema,
    bundleDigest: z.string().nullable().describe('The bundle to fetch from the object store; null when the job has neither source nor data'),
    dispatchedAt: IsoTimeSchema,
    startBy: IsoTimeSchema.optional().describe('Fencing: the executor never starts the attempt after this instant'),
  })
  .describe('Run one attempt of a job (orchestrator → executor)');

/** `jobline.ctl.<executorId>`: stop one attempt. Derived from JobCancelRequested, JobTimedOut and JobLost. */
export const StopAttemptMessageSchema = z
  .strictObject({
    kind: z.literal('stop'),
    jobId: JobIdSchema,
    attempt: z.number().int().min(1),
    reason: z.enum(['cancel', 'timeout', 'purge', 'lost']).describe('lost: the orchestrator declared the attempt lost (its executor was silent past the lease, or restarted)'),
  })
  .describe('Stop one attempt: SIGTERM to the whole process tree, then SIGKILL after the grace period (orchestrator → executor)');

const decimal = /^\d{1,16}$/;

/**
 * W3C trace context (https://www.w3.org/TR/trace-context/): set by Jobline on what it publishes
 * while tracing is on (README "Tracing"); on a command, continued by the job's trace. A
 * malformed value is ignored, as the W3C specification says (the job's trace starts afresh).
 */
const traceHeaders = {
  traceparent: z.string().optional().describe('W3C traceparent, `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`; present only while tracing is on'),
  tracestate: z.string().optional().describe('W3C tracestate, carried along with traceparent'),
};

/**
 * Headers of a log chunk on `jobline.logs.<jobId>`; the payload is the raw bytes.
 * Other headers (Nats-Msg-Id, headers JetStream adds on delivery) may be present.
 */
export const LogChunkHeadersSchema = z
  .object({
    [LOG_HEADERS.attempt]: z.string().regex(decimal).describe('Attempt number, decimal'),
    [LOG_HEADERS.stream]: z.enum(['stdout', 'stderr']),
    [LOG_HEADERS.offset]: z
      .string()
      .regex(decimal)
      .describe("Byte offset of the chunk's first byte in the attempt's output, stdout and stderr counted together, decimal"),
    'Nats-Msg-Id': z.string().optional().describe('<jobId>.<attempt>.<offset>: a re-sent chunk is dropped as a duplicate'),
    ...traceHeaders,
  })
  .describe('Metadata of a log chunk, carried in NATS headers');

/** Headers an integration may set on `jobline.cmd.<owner>.*`. */
export const CommandHeadersSchema = z
  .object({
    'Nats-Msg-Id': z
      .string()
      .min(1)
      .optional()
      .describe('Set it (e.g. to the jobId) so a re-sent command within the duplicate window is stored once'),
    [COMMAND_REPLY_HEADER]: z
      .string()
      .regex(/^_INBOX(_[A-Za-z0-9_-]{1,64})?(\.[A-Za-z0-9_-]+)+$/)
      .optional()
      .describe('An inbox (_INBOX.… or _INBOX_<owner>.…) that gets the CommandReply once the command is recorded or refused'),
    [REQUEST_ID_HEADER]: RequestIdSchema.optional().describe(
      'The id of the request the command comes from, 1-128 of [A-Za-z0-9._:-]: the causationId of the events it records (the api sets it to the ' +
        "REST X-Request-Id or gRPC x-request-id). Without it the causationId is the command's Nats-Msg-Id, else JOBLINE_CMD:<stream sequence>. " +
        'A malformed value refuses the command.',
    ),
    ...traceHeaders,
  })
  .describe('NATS headers of a command');

/** Headers Jobline sets on the messages it publishes from stored events. */
export const PublishedHeadersSchema = z
  .object({
    'Nats-Msg-Id': z.string().min(1).describe('Derived from the event id, so a re-publish after a crash is deduplicated'),
    ...traceHeaders,
  })
  .describe('NATS headers of a message Jobline publishes');

// ---- compile-time agreement with messages.ts: a drift fails `tsc` here ----
type Agrees<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type AllTrue<T extends Record<string, true>> = T;
export type _BusMessagesAgree = AllTrue<{
  run: Agrees<z.output<typeof RunAttemptMessageSchema>, RunAttemptMessage>;
  stop: Agrees<z.output<typeof StopAttemptMessageSchema>, StopAttemptMessage>;
  report: Agrees<z.output<typeof AttemptReportSchema>, AttemptReport>;
  heartbeat: Agrees<z.output<typeof ExecutorHeartbeatSchema>, ExecutorHeartbeat>;
}>;
