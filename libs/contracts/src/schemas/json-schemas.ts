import { z } from 'zod';
import { JOB_EVENT_TYPES, type JobEventType } from '../events';
import { JobSpecSchema } from '../job-spec.schema';
import { AttemptReportSchema, CancelJobMessageSchema, ChainCheckpointSchema, CommandRejectionSchema, CommandReplySchema, ClaimReplySchema, ClaimRequestSchema, ExecutorHeartbeatSchema, LeaseReplySchema, PackageJobMessageSchema, PackagingResultSchema, PurgeJobMessageSchema, RerunJobMessageSchema, SubmitJobMessageSchema } from '../messages';
import {
  CommandHeadersSchema,
  LogChunkHeadersSchema,
  PublishedHeadersSchema,
  RunAttemptMessageSchema,
  StopAttemptMessageSchema,
} from './bus-messages.schemas';
import { WebhookAttemptSchema, WebhookOrderSchema } from '../webhooks';
import { EVENT_DATA_SCHEMAS, JobEventMessageSchema, jobEventMessageSchema } from './event-data.schemas';

/**
 * JSON Schemas (draft-07, self-contained: no `$ref` between them) of every NATS payload,
 * generated from the zod schemas that the services validate with, so the published
 * contract cannot drift from the code.
 *
 * Direction decides which side of a zod schema is described:
 * - `accepted` (what Jobline receives: commands, reports, heartbeats) — the zod input:
 *   fields with a default are optional; non-strict objects allow extra keys (they are stripped);
 * - `published` (what Jobline sends: events, work, control) — the zod output: fields
 *   with a default are always present.
 * NATS headers are always described as zod input: a message may carry headers beyond
 * the ones listed (Nats-Msg-Id, headers JetStream adds on delivery...).
 *
 * Refinements zod checks in code (no '..' in a path, command[0] not blank, env size...)
 * are not expressible here and are not in the schemas, except "exactly one of command
 * or steps", which is added as a `oneOf`.
 */

export type JsonSchema = Record<string, unknown>;
export type SchemaDirection = 'accepted' | 'published';

export interface PayloadSchemaEntry {
  schema: z.ZodType;
  direction: SchemaDirection;
  /** Which side of the zod schema the JSON Schema describes. */
  io: 'input' | 'output';
}

const accepted = (schema: z.ZodType): PayloadSchemaEntry => ({ schema, direction: 'accepted', io: 'input' });
const published = (schema: z.ZodType): PayloadSchemaEntry => ({ schema, direction: 'published', io: 'output' });
const headers = (schema: z.ZodType, direction: SchemaDirection): PayloadSchemaEntry => ({ schema, direction, io: 'input' });

type EventDataName = `${JobEventType}Data`;
type EventMessageName = `${JobEventType}Event`;

const eventEntries = Object.fromEntries(
  JOB_EVENT_TYPES.flatMap((t) => [
    [`${t}Data`, published(EVENT_DATA_SCHEMAS[t])],
    [`${t}Event`, published(jobEventMessageSchema(t))],
  ]),
) as Record<EventDataName | EventMessageName, PayloadSchemaEntry>;

/** Every payload (and header set) on the bus, by the name it has in the AsyncAPI document. */
export const PAYLOAD_SCHEMAS = {
  SubmitJobMessage: accepted(SubmitJobMessageSchema),
  CancelJobMessage: accepted(CancelJobMessageSchema),
  PurgeJobMessage: accepted(PurgeJobMessageSchema),
  RerunJobMessage: accepted(RerunJobMessageSchema),
  CommandHeaders: headers(CommandHeadersSchema, 'accepted'),
  CommandRejection: published(CommandRejectionSchema),
  CommandReply: published(CommandReplySchema),
  JobEventMessage: published(JobEventMessageSchema),
  ...eventEntries,
  PublishedHeaders: headers(PublishedHeadersSchema, 'published'),
  LogChunkHeaders: headers(LogChunkHeadersSchema, 'published'),
  RunAttemptMessage: published(RunAttemptMessageSchema),
  StopAttemptMessage: published(StopAttemptMessageSchema),
  AttemptReport: accepted(AttemptReportSchema),
  ExecutorHeartbeat: accepted(ExecutorHeartbeatSchema),
  LeaseReply: published(LeaseReplySchema),
  ClaimRequest: accepted(ClaimRequestSchema),
  ClaimReply: published(ClaimReplySchema),
  PackageJobMessage: published(PackageJobMessageSchema),
  PackagingResult: accepted(PackagingResultSchema),
  ChainCheckpoint: published(ChainCheckpointSchema),
  WebhookOrder: published(WebhookOrderSchema),
  WebhookAttempt: published(WebhookAttemptSchema),
} satisfies Record<string, PayloadSchemaEntry>;

export type PayloadSchemaName = keyof typeof PAYLOAD_SCHEMAS;
export const PAYLOAD_SCHEMA_NAMES = Object.keys(PAYLOAD_SCHEMAS) as PayloadSchemaName[];

/**
 * "Exactly one of command or steps" is a zod superRefine; say it in JSON Schema too. Each
 * branch names the property it requires (`true`: the parent's `properties` say what it is), so
 * the schema passes Ajv's strict mode (strictRequired) as well as any lax validator.
 */
const overrides = (ctx: { zodSchema: unknown; jsonSchema: JsonSchema }) => {
  if (ctx.zodSchema === JobSpecSchema) {
    ctx.jsonSchema.oneOf = [
      { properties: { command: true }, required: ['command'] },
      { properties: { steps: true }, required: ['steps'] },
    ];
  }
};

/** The draft-07 JSON Schema of one payload. */
export function payloadJsonSchema(name: PayloadSchemaName): JsonSchema {
  const entry: PayloadSchemaEntry = PAYLOAD_SCHEMAS[name];
  const schema = z.toJSONSchema(entry.schema, {
    target: 'draft-7',
    io: entry.io,
    unrepresentable: 'throw',
    override: overrides as never,
  }) as JsonSchema;
  const { $schema, ...rest } = schema;
  return { $schema, title: name, ...rest };
}

/** Every payload's JSON Schema, by name. */
export function payloadJsonSchemas(): Record<PayloadSchemaName, JsonSchema> {
  return Object.fromEntries(PAYLOAD_SCHEMA_NAMES.map((n) => [n, payloadJsonSchema(n)])) as Record<PayloadSchemaName, JsonSchema>;
}
