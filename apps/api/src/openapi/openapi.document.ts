import { z } from 'zod';
import { JobIdSchema, JobSpecSchema, SPEC_LIMITS } from '../../../../libs/contracts/src';
import { queryParamDocs } from '../http/query';
import { CancelBodySchema, ExecutorsQuerySchema, GetQuerySchema, ListQuerySchema, StatsQuerySchema, TimelineQuerySchema } from '../jobs.service';
import { LogQuerySchema } from '../logs/logs.service';
import {
  BundleManifestSchema,
  CallerSchema,
  ChainVerificationSchema,
  DsseEnvelopeSchema,
  CancelAcceptedSchema,
  JobComparisonSchema,
  ExecutorInfoSchema,
  ExecutorsAtSchema,
  ExecutorsSchema,
  HealthSchema,
  JobEventItemSchema,
  JobEventsSchema,
  WebhookDeliveriesSchema,
  JobStatsSchema,
  JobTimelineSchema,
  JobViewSchema,
  JobsPageSchema,
  ProblemSchema,
  ReadinessSchema,
} from './rest-schemas';

/**
 * The OpenAPI 3.1 document of the REST api, generated from the zod schemas the api
 * validates requests with (bodies, query parameters) and the response schemas of
 * rest-schemas.ts. Served at GET /openapi.json; `write-openapi.ts` writes docs/openapi.json,
 * and a test fails when that file or the routes differ from what this builds.
 */

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** Response bodies: the zod output (fields with a default are present). */
const RESPONSE_SCHEMAS: Record<string, z.ZodType> = {
  JobView: JobViewSchema,
  JobsPage: JobsPageSchema,
  JobEvent: JobEventItemSchema,
  JobEvents: JobEventsSchema,
  WebhookDeliveries: WebhookDeliveriesSchema,
  JobStats: JobStatsSchema,
  ChainVerification: ChainVerificationSchema,
  DsseEnvelope: DsseEnvelopeSchema,
  JobComparison: JobComparisonSchema,
  JobTimeline: JobTimelineSchema,
  Executor: ExecutorInfoSchema,
  Executors: ExecutorsSchema,
  ExecutorsAt: ExecutorsAtSchema,
  Caller: CallerSchema,
  CancelAccepted: CancelAcceptedSchema,
  BundleManifest: BundleManifestSchema,
  Problem: ProblemSchema,
  Health: HealthSchema,
  Readiness: ReadinessSchema,
  /** The spec as recorded: defaults applied (priority is always there). */
  StoredJobSpec: JobSpecSchema,
};

/** Request bodies: the zod input (fields with a default may be left out). */
const REQUEST_SCHEMAS: Record<string, z.ZodType> = {
  JobSpec: JobSpecSchema,
  CancelRequest: CancelBodySchema.unwrap(),
};

/** "Exactly one of command or steps" is a zod superRefine; say it in JSON Schema too. */
const override = (ctx: { zodSchema: unknown; jsonSchema: Json }) => {
  if (ctx.zodSchema === JobSpecSchema) ctx.jsonSchema.oneOf = [{ required: ['command'] }, { required: ['steps'] }];
};

function componentSchemas(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'throw',
    uri: (id) => `#/components/schemas/${id}`,
    override: override as never,
  }) as { schemas: Record<string, Json> };
  return Object.fromEntries(Object.entries(out.schemas).map(([id, s]) => [id, strip(s)]));
}

function strip(schema: Json): Json {
  const { $schema: _s, $id: _i, ...rest } = schema;
  return rest;
}

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): Json {
  return strip(z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'throw' }) as Json);
}

/** OpenAPI parameters of a strict zod object of query parameters; `notes` adds descriptions the schema lacks. */
function queryParameters(schema: z.ZodObject, notes: Record<string, string> = {}): Json[] {
  return Object.entries(schema.shape).map(([name, field]) => {
    const f = field as z.ZodType;
    const required = !(f instanceof z.ZodOptional);
    const inner = f instanceof z.ZodOptional ? (f.unwrap() as z.ZodType) : f;
    const doc = queryParamDocs.get(inner);
    const description = f.description ?? inner.description ?? notes[name];
    return {
      name,
      in: 'query',
      required,
      ...(description ? { description } : {}),
      schema: doc ? doc.schema : jsonSchemaOf(inner, 'input'),
      ...(doc?.list ? { style: 'form', explode: false } : {}),
    };
  });
}

const jobIdParam = { name: 'id', in: 'path', required: true, description: 'The job id (a UUID).', schema: jsonSchemaOf(JobIdSchema, 'input') };

const json = (schema: Json) => ({ 'application/json': { schema } });
const ok = (description: string, schema: Json, headers?: Json) => ({ description, content: json(schema), ...(headers ? { headers } : {}) });
const problem = (description: string) => ({ description, content: { 'application/problem+json': { schema: ref('Problem') } } });

const P400 = problem('Invalid input (nothing changed): `errors` lists each field.');
const P401 = problem('No or unknown credentials.');
const P403 = problem('Not allowed (the owner filter is for admins).');
const P404 = problem("No such job, or another owner's (the same answer).");
const PAST_BUSY = problem('With `at`: too many past states are being built at once; ask again shortly.');
const P503 = problem('The bus is unavailable, or the command was not recorded in time (the problem may carry `jobId`).');
const P429 = {
  ...problem("Over the owner's queued quota (JOBLINE_QUOTAS_FILE): nothing was recorded; `retryAfterSeconds` and the Retry-After header say when to try again."),
  headers: { 'Retry-After': { description: 'Seconds after which submitting again is worth it.', schema: { type: 'integer', minimum: 1 } } },
};

const gzip = (description: string) => ({ description, content: { 'application/gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } } } });

function paths(): Json {
  const jobTag = ['jobs'];
  return {
    '/v1/jobs': {
      post: {
        operationId: 'submitJob',
        tags: jobTag,
        summary: 'Submit a job',
        description:
          'Answers once the submission is recorded (a GET right after sees it). With `Idempotency-Key`, the same owner and key always name the same job: ' +
          'a repeat answers 200 with it, or 409 when the spec differs. A body over 1 MiB is a 400.',
        parameters: [
          {
            name: 'Idempotency-Key',
            in: 'header',
            required: false,
            description: '1-200 printable ASCII characters.',
            schema: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[\\x20-\\x7E]+$' },
          },
        ],
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: ref('JobSpec') },
            'multipart/form-data': {
              schema: {
                type: 'object',
                required: ['spec', 'archive'],
                properties: {
                  spec: { type: 'string', contentMediaType: 'application/json', description: 'The JobSpec as JSON, with `"source": {"archive": true}`.' },
                  archive: { type: 'string', contentMediaType: 'application/octet-stream', description: 'The source as a zip or tar.gz (at most 256 MiB).' },
                },
              },
            },
          },
        },
        responses: {
          '201': ok('Recorded.', ref('JobView'), { Location: { description: '/v1/jobs/{id}', schema: { type: 'string' } } }),
          '200': ok('The job an Idempotency-Key already named.', ref('JobView')),
          '400': P400,
          '401': P401,
          '409': problem('The Idempotency-Key was used with another spec.'),
          '415': problem('The body is not JSON (or multipart).'),
          '429': P429,
          '503': P503,
        },
      },
      get: {
        operationId: 'listJobs',
        tags: jobTag,
        summary: 'List jobs',
        description: 'Your jobs (an admin: everyone’s), filtered, sorted, one page at a time (keyset paging: no duplicate, no gap).',
        parameters: queryParameters(ListQuerySchema),
        responses: { '200': ok('One page.', ref('JobsPage')), '400': P400, '401': P401, '403': P403, '503': PAST_BUSY },
      },
    },
    '/v1/jobs/{id}': {
      parameters: [jobIdParam],
      get: {
        operationId: 'getJob',
        tags: jobTag,
        summary: 'A job',
        parameters: queryParameters(GetQuerySchema),
        responses: { '200': ok('The job.', ref('JobView')), '400': P400, '401': P401, '404': P404 },
      },
      delete: {
        operationId: 'purgeJob',
        tags: jobTag,
        summary: 'Purge a finished job',
        description: 'Deletes its logs and artifacts once JobPurged is recorded; the history stays. Purging again is a 204.',
        responses: { '204': { description: 'Purged.' }, '401': P401, '404': P404, '409': problem('The job is not finished.'), '503': P503 },
      },
    },
    '/v1/jobs/{id}/cancel': {
      parameters: [jobIdParam],
      post: {
        operationId: 'cancelJob',
        tags: jobTag,
        summary: 'Cancel a job',
        description: 'A queued job is cancelled at once; a running one once its executor has stopped it.',
        requestBody: { required: false, content: json(ref('CancelRequest')) },
        responses: { '202': ok('Handed to the orchestrator.', ref('CancelAccepted')), '400': P400, '401': P401, '404': P404, '409': problem('The job already finished.'), '503': P503 },
      },
    },
    '/v1/jobs/{id}/rerun': {
      parameters: [jobIdParam],
      post: {
        operationId: 'rerunJob',
        tags: jobTag,
        summary: 'Run a finished job again',
        description:
          'A new job with the same spec and the same bundle by digest (nothing is fetched or packed again), owned by the original’s owner; ' +
          'its view names the original in `rerunOf`, and its events name the original’s last event as their cause. Compare the two with GET /v1/jobs/{id}/compare/{other}.',
        parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, description: 'Same caller + key → the same re-run (200).', schema: { type: 'string', minLength: 1, maxLength: 200 } }],
        responses: {
          '201': ok('Recorded.', ref('JobView'), { Location: { description: '/v1/jobs/{id} of the new job', schema: { type: 'string' } } }),
          '200': ok('The re-run an Idempotency-Key already named.', ref('JobView')),
          '400': P400,
          '401': P401,
          '404': P404,
          '409': problem('The job has not finished, was purged, has no bundle (or it is no longer stored), or the Idempotency-Key names another job.'),
          '429': P429,
          '503': P503,
        },
      },
    },
    '/v1/jobs/{id}/compare/{other}': {
      parameters: [jobIdParam, { ...jobIdParam, name: 'other', description: 'The other job id (a UUID).' }],
      get: {
        operationId: 'compareJobs',
        tags: jobTag,
        summary: 'Compare two finished jobs',
        description: 'Whether exit code, log digest (sha256 of the latest attempt’s log) and artifact digest (sha256 of its artifacts tar.gz) are the same; `jobline compare A B` exits 0 when identical, 1 otherwise.',
        responses: { '200': ok('The comparison (identical or not: read `identical`).', ref('JobComparison')), '401': P401, '404': P404, '409': problem('One of the jobs has not finished.') },
      },
    },
    '/v1/jobs/{id}/events': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobEvents',
        tags: jobTag,
        summary: 'A job’s history',
        responses: { '200': ok('Every event, in stream order.', ref('JobEvents')), '401': P401, '404': P404 },
      },
    },
    '/v1/jobs/{id}/webhooks': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobWebhooks',
        tags: jobTag,
        summary: 'A job’s webhook deliveries',
        description:
          'Every delivery planned when the job ended (its notify URLs, its owner’s configured URLs) with the outcome of each attempt: ' +
          'delivered, retrying (and when), failed, or refused (address guard, http not allowed, no secret for the owner). Empty until the job ends.',
        responses: { '200': ok('The deliveries.', ref('WebhookDeliveries')), '401': P401, '404': P404, '503': P503 },
      },
    },
    '/v1/jobs/{id}/verify': {
      parameters: [jobIdParam],
      get: {
        operationId: 'verifyJob',
        tags: jobTag,
        summary: 'Verify a job’s history',
        description: 'Recomputes the hash chain of the job’s events: intact, or the first position where an event was edited, removed, inserted or reordered. Events recorded before the chain existed count as unchained.',
        responses: { '200': ok('The verification (intact or not: read `intact`).', ref('ChainVerification')), '401': P401, '404': P404 },
      },
    },
    '/v1/jobs/{id}/attestation': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobAttestation',
        tags: jobTag,
        summary: 'A finished job’s signed provenance',
        description: 'A DSSE envelope of an in-toto Statement v1, signed with the Ed25519 key that signs the chain checkpoints, built from the job’s stored events (and the latest attempt’s artifacts). Verify offline with `jobline verify --attestation FILE --public-key PEM`.',
        responses: { '200': ok('The envelope.', ref('DsseEnvelope')), '401': P401, '404': P404, '409': problem('The job has not finished, or has nothing to attest by digest.'), '503': problem('This api has no signing key.') },
      },
    },
    '/v1/jobs/{id}/logs': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobLogs',
        tags: jobTag,
        summary: 'One attempt’s output',
        description: 'The raw bytes of one attempt, stdout and stderr interleaved as produced (or one of them). With follow, chunked and live until the attempt is over.',
        parameters: queryParameters(LogQuerySchema, {
          attempt: 'The attempt (default: the current one).',
          stream: 'Only stdout or only stderr (default both).',
          offset: "Skip the attempt's first N bytes (stdout and stderr counted together).",
          follow: 'Keep the response open with live output until the attempt is over.',
        }),
        responses: {
          '200': {
            description: 'The output.',
            headers: { 'Jobline-Attempt': { description: 'The attempt shown.', schema: { type: 'integer', minimum: 1 } } },
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
          '400': P400,
          '401': P401,
          '404': P404,
        },
      },
    },
    '/v1/jobs/{id}/bundle': {
      parameters: [jobIdParam],
      get: { operationId: 'jobBundle', tags: jobTag, summary: 'The job’s bundle', responses: { '200': gzip('The deterministic tar.gz.'), '401': P401, '404': P404 } },
    },
    '/v1/jobs/{id}/bundle/manifest': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobBundleManifest',
        tags: jobTag,
        summary: 'The bundle’s manifest',
        description: '`.jobline/manifest.json` of the bundle: every file with its mode, size and sha256, the source and the data files.',
        responses: { '200': ok('The manifest.', ref('BundleManifest')), '401': P401, '404': P404 },
      },
    },
    '/v1/jobs/{id}/artifacts': {
      parameters: [jobIdParam],
      get: {
        operationId: 'jobArtifacts',
        tags: jobTag,
        summary: 'The latest attempt’s outputs, or one step’s',
        parameters: [
          {
            name: 'step',
            in: 'query',
            required: false,
            description: 'A staged job’s step number (1 for the first): that step’s own `outputs`, collected right after it ended',
            schema: { type: 'integer', minimum: 1, maximum: SPEC_LIMITS.steps },
          },
        ],
        responses: { '200': gzip('The outputs as a tar.gz.'), '400': P400, '401': P401, '404': P404 },
      },
    },
    '/v1/executors': {
      get: {
        operationId: 'listExecutors',
        tags: ['system'],
        summary: 'Executors heard from, or (at=) the jobs on each executor then',
        parameters: queryParameters(ExecutorsQuerySchema),
        responses: {
          '200': ok('Without `at`: the executors heard from (heartbeats). With `at`: the executors that had work then, from the history, with your jobs on each.', { oneOf: [ref('Executors'), ref('ExecutorsAt')] }),
          '400': P400,
          '401': P401,
          '503': PAST_BUSY,
        },
      },
    },
    '/v1/verify': {
      get: {
        operationId: 'verifyStore',
        tags: ['system'],
        summary: 'Verify the whole history (admins)',
        description: 'Recomputes every event’s links in its stream and in the whole log, and checks them against the signed checkpoints: intact, or the first bad position.',
        responses: { '200': ok('The verification (intact or not: read `intact`).', ref('ChainVerification')), '401': P401, '403': problem('Admins only.') },
      },
    },
    '/v1/stats': {
      get: {
        operationId: 'jobStats',
        tags: ['system'],
        summary: 'Jobs per status',
        parameters: queryParameters(StatsQuerySchema),
        responses: { '200': ok('Counts.', ref('JobStats')), '400': P400, '401': P401, '403': P403 },
      },
    },
    '/v1/stats/timeline': {
      get: {
        operationId: 'jobTimeline',
        tags: ['system'],
        summary: 'Throughput over time',
        description: 'Per bucket, the jobs submitted and the jobs that finished, by terminal status (at most 1,000 buckets).',
        parameters: queryParameters(TimelineQuerySchema),
        responses: { '200': ok('Every bucket.', ref('JobTimeline')), '400': P400, '401': P401, '403': P403 },
      },
    },
    '/v1/me': {
      get: { operationId: 'whoAmI', tags: ['system'], summary: 'Who the credentials name', responses: { '200': ok('The caller.', ref('Caller')), '401': P401 } },
    },
    '/healthz': {
      get: { operationId: 'liveness', tags: ['probes'], security: [], summary: 'The process answers', responses: { '200': ok('Up.', ref('Health')) } },
    },
    '/readyz': {
      get: {
        operationId: 'readiness',
        tags: ['probes'],
        security: [],
        summary: 'NATS answers and the read model follows the store',
        responses: { '200': ok('Ready.', ref('Readiness')), '503': ok('Not ready: see reasons.', ref('Readiness')) },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['probes'],
        security: [],
        summary: 'Prometheus metrics',
        responses: { '200': { description: 'Text exposition format 0.0.4.', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['probes'],
        security: [],
        summary: 'This document',
        responses: { '200': { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } } },
      },
    },
  };
}

/** Every operation takes X-Request-Id and every response echoes it (requestIdMiddleware runs before any route). */
function withRequestId(all: Json): Json {
  for (const item of Object.values(all as Record<string, Record<string, Record<string, unknown>>>)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === 'parameters') continue;
      op.parameters = [...((op.parameters as unknown[] | undefined) ?? []), { $ref: '#/components/parameters/RequestId' }];
      for (const response of Object.values(op.responses as Record<string, Record<string, unknown>>)) {
        response.headers = { ...((response.headers as Record<string, unknown> | undefined) ?? {}), 'X-Request-Id': { $ref: '#/components/headers/RequestId' } };
      }
    }
  }
  return all;
}

/** The OpenAPI 3.1 document of the REST api. */
export function buildOpenApiDocument(): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Jobline REST API',
      version: '1.0.0',
      summary: 'Submit jobs, follow them and read their history.',
      description:
        'Errors are RFC 9457 problem documents (application/problem+json). A job that is not the caller’s is a 404 to a non-admin, exactly as if it did not exist. ' +
        `A JobSpec holds at most ${SPEC_LIMITS.steps} steps, ${SPEC_LIMITS.envEntries} environment entries and ${SPEC_LIMITS.dataItems} data files. ` +
        'Live logs and status changes are also on the WebSocket at /v1/ws; NATS payloads are in the AsyncAPI document (docs/asyncapi.json).',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'This api' }],
    security: [{ bearerAuth: [] }, { clientCertificate: [] }],
    tags: [
      { name: 'jobs', description: 'Submit, list, follow, cancel and purge jobs.' },
      { name: 'system', description: 'Executors, counts and the caller.' },
      { name: 'probes', description: 'No authentication.' },
    ],
    paths: withRequestId(paths()),
    components: {
      parameters: {
        RequestId: {
          name: 'X-Request-Id',
          in: 'header',
          required: false,
          description:
            'Names the request: 1-128 of [A-Za-z0-9._:-] (anything else is a 400 and changes nothing); a UUID is made up when absent. ' +
            'Echoed in the response. A command the request sends (submit, cancel, purge, re-run) carries it, and the events it records name it as their `causationId`.',
          schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
        },
      },
      headers: {
        RequestId: { description: "The request's id: the caller's X-Request-Id, or the one made up for it.", schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } },
      },
      securitySchemes: {
        bearerAuth: { type: 'http', scheme: 'bearer', description: 'A token configured for the api (JOBLINE_TOKENS_FILE, or the one `jobline dev` prints).' },
        clientCertificate: { type: 'mutualTLS', description: 'Under HTTPS: a client certificate of the configured CA (CN = owner, OU=admin = admin).' },
      },
      schemas: { ...componentSchemas(RESPONSE_SCHEMAS, 'output'), ...componentSchemas(REQUEST_SCHEMAS, 'input') },
    },
  };
}

/** docs/openapi.json as committed: the document, two-space indented, with a final newline. */
export function openApiJson(): string {
  return JSON.stringify(buildOpenApiDocument(), null, 2) + '\n';
}
