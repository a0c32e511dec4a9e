import { JOB_EVENT_TYPES, EVENT_VERSIONS } from '../events';
import { STREAMS } from '../subjects';
import { EVENT_DATA_SCHEMAS } from './event-data.schemas';
import { PAYLOAD_SCHEMA_NAMES, payloadJsonSchema, type JsonSchema, type PayloadSchemaName } from './json-schemas';

/**
 * The AsyncAPI 3.0 document of Jobline's NATS interface, built from the same zod
 * schemas the services validate with. `write-asyncapi.ts` writes it to docs/asyncapi.json.
 *
 * It describes Jobline as one application: `receive` operations are what Jobline
 * consumes (integrations publish there), `send` operations what it publishes. Channels
 * tagged `internal` carry traffic between Jobline's own services (orchestrator ↔
 * executors); they are documented so operators can reason about permissions and
 * streams, not as an integration surface.
 */

export interface AsyncApiOptions {
  /** info.version (default '1.0.0', the v1 contract). */
  version?: string;
  /** Servers to list (default: the docker-compose development server). */
  servers?: Record<string, { host: string; protocol?: string; description?: string }>;
}

const SCHEMA_FORMAT = 'application/schema+json;version=draft-07';
const ref = (path: string) => ({ $ref: path });
const schemaRef = (name: PayloadSchemaName) => ref(`#/components/schemas/${name}`);

interface ChannelSpec {
  address: string;
  title: string;
  description: string;
  parameters: Record<string, { description: string; enum?: string[] }>;
  messages: string[];
  stream: string | null;
  tags: string[];
}

const owner = { description: 'Owner of the job: 1-64 of [A-Za-z0-9_-]. Set by the NATS user permissions, not by the payload.' };
const jobId = { description: 'Job id: a lowercase UUID.' };
const executorId = { description: 'Executor id: 1-64 of [A-Za-z0-9_-].' };

const CHANNELS: Record<string, ChannelSpec> = {
  submitJob: {
    address: 'jobline.cmd.{owner}.submit',
    title: 'Submit a job',
    description:
      'An integration submits a job for its owner. The client chooses the jobId; set Nats-Msg-Id (e.g. to the jobId) so a retried ' +
      'publish within the duplicate window is stored once. Publish with JetStream to get an ack once the command is stored; ' +
      'the outcome arrives as events (JobSubmitted), or, when the command is refused, as a CommandRejection on ' +
      'jobline.rej.<owner>. Set the Jobline-Reply-To header to an inbox to get a CommandReply there (the operation reply) as well.',
    parameters: { owner },
    messages: ['SubmitJob'],
    stream: STREAMS.commands,
    tags: ['integration'],
  },
  cancelJob: {
    address: 'jobline.cmd.{owner}.cancel',
    title: 'Cancel a job',
    description: "Ask to cancel one of the owner's jobs. Followed by JobCancelRequested and, once every process is gone, JobCancelled.",
    parameters: { owner },
    messages: ['CancelJob'],
    stream: STREAMS.commands,
    tags: ['integration'],
  },
  purgeJob: {
    address: 'jobline.cmd.{owner}.purge',
    title: 'Purge a job',
    description:
      "Ask to purge one of the owner's finished jobs: JobPurged is recorded, then the job's logs and artifacts are deleted. " +
      'The history stays. Refused (nothing written) while the job is not finished.',
    parameters: { owner },
    messages: ['PurgeJob'],
    stream: STREAMS.commands,
    tags: ['integration'],
  },
  rerunJob: {
    address: 'jobline.cmd.{owner}.rerun',
    title: 'Re-run a job',
    description:
      "Run one of the owner's finished jobs again as a new job (jobId, client-chosen as for submit) with the same spec and the same " +
      "bundle by digest: JobSubmitted (rerunOf: the original; its causationId the command), JobPackaged with the original's bundle " +
      '(nothing is fetched or packed) and JobQueued, in one append. Refused (nothing written) while the job is not finished, when it ' +
      'was purged, or when its bundle is not stored any more.',
    parameters: { owner },
    messages: ['RerunJob'],
    stream: STREAMS.commands,
    tags: ['integration'],
  },
  adminCommands: {
    address: 'jobline.adm.{admin}.{verb}',
    title: "An admin's commands",
    description:
      "The api's cancel, purge and re-run of another owner's job for an admin: the same payloads as jobline.cmd.<owner>.cancel|purge|rerun, " +
      'on any owner\'s job, recorded with the admin as the actor (JobCancelRequested.requestedBy, JobPurged.by, the events\' actor). ' +
      "Only Jobline's services may publish here (deploy/nats/jobline.conf); refusals go to jobline.rej.<admin>.",
    parameters: {
      admin: { description: 'The admin who acts (the caller the api authenticated as an admin): 1-64 of [A-Za-z0-9_-].' },
      verb: { description: 'What the admin asks.', enum: ['cancel', 'purge', 'rerun'] },
    },
    messages: ['CancelJob', 'PurgeJob', 'RerunJob'],
    stream: STREAMS.commands,
    tags: ['internal'],
  },
  commandRejections: {
    address: 'jobline.rej.{owner}',
    title: 'Refused commands',
    description:
      "Core NATS (not stored): every command of the owner that Jobline refused, naming the field at fault and why: an invalid " +
      'payload, a payload that is not JSON, an unknown verb (jobline.cmd.<owner>.frobnicate), a job that is not the owner\'s, ' +
      'a command that does not apply to the job (cancel a finished job). Nothing was recorded for it. Subscribe before publishing.',
    parameters: { owner },
    messages: ['CommandRejection'],
    stream: null,
    tags: ['integration'],
  },
  jobEvents: {
    address: 'jobline.evt.{jobId}.{eventType}',
    title: 'Job events',
    description:
      'Every event stored in a job stream, published after it is stored (store first, bus second), in order per job. ' +
      'A re-publish after a crash carries the same Nats-Msg-Id and is deduplicated. Subscribe to jobline.evt.<jobId>.* for one job ' +
      "or jobline.evt.> for all (every owner's: for Jobline's services; an integration user follows its own jobs on " +
      'jobline.owner.<owner>.evt.>). Events are never reshaped: a new shape is a new version.',
    parameters: { jobId, eventType: { description: 'The event type.', enum: [...JOB_EVENT_TYPES] } },
    messages: [...JOB_EVENT_TYPES],
    stream: STREAMS.events,
    tags: ['integration'],
  },
  jobLogs: {
    address: 'jobline.logs.{jobId}',
    title: 'Job logs',
    description:
      "A job's output as chunks: raw bytes in the payload (binary-safe), attempt, stream and byte offset in headers. " +
      'Offsets count stdout and stderr together and restart at 0 with each attempt; a reader resumes after (attempt, offset + length). ' +
      "Every owner's jobs: integration users follow theirs on jobline.owner.<owner>.logs.<jobId>.",
    parameters: { jobId },
    messages: ['LogChunk'],
    stream: STREAMS.logs,
    tags: ['integration'],
  },
  ownerJobEvents: {
    address: 'jobline.owner.{owner}.evt.{jobId}.{eventType}',
    title: "An owner's job events",
    description:
      "A copy of every stored event under its job's owner, for integration users limited to jobline.owner.<owner>.> " +
      '(deploy/nats/jobline.conf): the same payload as on jobline.evt.<jobId>.<eventType>, in the same order per job, with the ' +
      "event id as Nats-Msg-Id header. Core NATS, not stored: a subscriber receives what is published while it is subscribed; " +
      "a message may repeat after an orchestrator restart (same Nats-Msg-Id), and the history of any of the owner's jobs is " +
      'on REST (GET /v1/jobs/{id}/events) and gRPC (History). Subscribe to jobline.owner.<owner>.evt.> for all of its jobs.',
    parameters: { owner, jobId, eventType: { description: 'The event type.', enum: [...JOB_EVENT_TYPES] } },
    messages: [...JOB_EVENT_TYPES],
    stream: null,
    tags: ['integration'],
  },
  ownerJobLogs: {
    address: 'jobline.owner.{owner}.logs.{jobId}',
    title: "An owner's job logs",
    description:
      "A copy of every log chunk under its job's owner, for integration users limited to jobline.owner.<owner>.>: the same " +
      'bytes and headers as on jobline.logs.<jobId> (plus Nats-Msg-Id <jobId>.<attempt>.<offset>), sent by the executor once the ' +
      'stored copy is acknowledged. Core NATS, not stored: live output only; the whole log is on REST, WebSocket and gRPC. ' +
      "Sent while the subject has a subscriber: each copy carries a reply subject on the executor's inbox (nobody else may publish " +
      'there), a copy that reaches no subscriber is answered by the server with a 503 (no responders), and the subject then gets no ' +
      'copies for 250 ms. Subscribe before the job writes its first byte to receive every chunk; a later subscriber receives the ' +
      'chunks from at most about 250 ms after it subscribed.',
    parameters: { owner, jobId },
    messages: ['LogChunk'],
    stream: null,
    tags: ['integration'],
  },
  attemptWork: {
    address: 'jobline.work.{executorId}',
    title: 'Work for an executor',
    description: 'Internal. The orchestrator (its relay, from JobDispatched) hands one attempt to one executor; a work queue.',
    parameters: { executorId },
    messages: ['RunAttempt'],
    stream: STREAMS.work,
    tags: ['internal'],
  },
  attemptControl: {
    address: 'jobline.ctl.{executorId}',
    title: 'Stop orders for an executor',
    description: 'Internal. The orchestrator tells an executor to stop an attempt (cancel, timeout, lost executor, purge).',
    parameters: { executorId },
    messages: ['StopAttempt'],
    stream: STREAMS.control,
    tags: ['internal'],
  },
  attemptReports: {
    address: 'jobline.report.{jobId}',
    title: 'Attempt reports',
    description:
      'Internal. Executors report that an attempt started or finished; one subject per job keeps its reports in order. ' +
      'The orchestrator rejects a report naming an attempt that is no longer current (fencing).',
    parameters: { jobId },
    messages: ['AttemptReport'],
    stream: STREAMS.reports,
    tags: ['internal'],
  },
  packageWork: {
    address: 'jobline.pkg.work.{jobId}',
    title: 'Jobs to bundle',
    description: 'Internal. The relay (from JobSubmitted with a source or data) orders a packager to build the job\'s bundle; a work queue.',
    parameters: { jobId },
    messages: ['PackageJob'],
    stream: STREAMS.packages,
    tags: ['internal'],
  },
  packagingResults: {
    address: 'jobline.pkg.done.{jobId}',
    title: 'Packaging results',
    description: 'Internal. A packager reports the bundle digest (JobPackaged) or why packaging failed (JobPackagingFailed).',
    parameters: { jobId },
    messages: ['PackagingResult'],
    stream: STREAMS.packages,
    tags: ['internal'],
  },
  executorHeartbeats: {
    address: 'jobline.hb.{executorId}',
    title: 'Executor heartbeats',
    description:
      'Internal, core NATS (not stored). Executors announce capacity and running attempts; an executor silent for the lease ' +
      'time, or back with a new instanceId, has lost its attempts. Sent as a request: the scheduling orchestrator answers ' +
      'with a LeaseReply naming the attempts still current on that executor, and the executor stops any other it runs.',
    parameters: { executorId },
    messages: ['ExecutorHeartbeat', 'LeaseReply'],
    stream: null,
    tags: ['internal'],
  },
  attemptClaims: {
    address: 'jobline.claim.{jobId}',
    title: 'Attempt claims',
    description:
      'Internal, core NATS request/reply (queue group orchestrators). Before running an attempt\'s command an executor sends its ' +
      'started report as a claim; the answer grants it once JobStarted is stored, or refuses it when the attempt is no longer ' +
      'current (lost, cancelled, superseded). A command runs only as an attempt the history records as started.',
    parameters: { jobId },
    messages: ['ClaimRequest', 'ClaimReply'],
    stream: null,
    tags: ['internal'],
  },
  chainCheckpoints: {
    address: 'jobline.chain.checkpoint',
    title: 'Signed chain checkpoints',
    description:
      'Core NATS (not stored on the bus; the store keeps them too). Every few seconds while the store grows, the orchestrator signs ' +
      'the head of the event hash chain with its Ed25519 key. An auditor that keeps these can later detect a history rewritten ' +
      'with recomputed hashes or a truncated tail (`jobline verify`), which the unkeyed chain alone cannot.',
    parameters: {},
    messages: ['ChainCheckpoint'],
    stream: null,
    tags: ['integration'],
  },
  webhookOrders: {
    address: 'jobline.hook.order.{jobId}',
    title: 'Webhook deliveries to make',
    description:
      "Planned by the orchestrator's webhook reactor from the stored event that ended a job: one order per target (the job's notify " +
      "URLs, its owner's configured URLs), Nats-Msg-Id = the delivery id, carrying the exact body every try sends. One durable " +
      'consumer (webhooks-deliver) delivers them; a retry is a nak with the backoff as its delay.',
    parameters: { jobId },
    messages: ['WebhookOrder'],
    stream: STREAMS.webhookOrders,
    tags: ['internal'],
  },
  webhookAttempts: {
    address: 'jobline.hook.rec.{jobId}',
    title: 'Webhook delivery attempts',
    description: 'The outcome of every webhook delivery attempt of a job (delivered, retrying, failed, refused), recorded before the order is settled; GET /v1/jobs/{id}/webhooks shows them.',
    parameters: { jobId },
    messages: ['WebhookAttempt'],
    stream: STREAMS.webhookAttempts,
    tags: ['internal'],
  },
};

interface OperationSpec {
  action: 'send' | 'receive';
  channel: keyof typeof CHANNELS;
  summary: string;
  /** A command answered on the inbox its Jobline-Reply-To header names. */
  replies?: true;
}

const COMMAND_REPLY = {
  address: {
    location: '$message.header#/Jobline-Reply-To',
    description:
      'The inbox (_INBOX.… or _INBOX_<owner>.…) the command names in its Jobline-Reply-To header: core NATS, sent once the command is ' +
      'recorded ({ok: true}) or refused ({ok: false} and the rejection). A header naming anything else gets the command refused.',
  },
  messages: [ref('#/components/messages/CommandReply')],
};

const OPERATIONS: Record<string, OperationSpec> = {
  receiveSubmitJob: { action: 'receive', channel: 'submitJob', summary: 'Jobline takes submissions from integrations.', replies: true },
  receiveCancelJob: { action: 'receive', channel: 'cancelJob', summary: 'Jobline takes cancellations from integrations.', replies: true },
  receivePurgeJob: { action: 'receive', channel: 'purgeJob', summary: 'Jobline takes purges of finished jobs from integrations.', replies: true },
  receiveAdminCommands: { action: 'receive', channel: 'adminCommands', summary: "The orchestrator takes an admin's cancels, purges and re-runs of any owner's job from the api.", replies: true },
  receiveRerunJob: { action: 'receive', channel: 'rerunJob', summary: 'Jobline takes re-runs of finished jobs from integrations.', replies: true },
  sendCommandRejections: { action: 'send', channel: 'commandRejections', summary: 'Jobline tells the owner which of its commands it refused, and why.' },
  sendJobEvents: { action: 'send', channel: 'jobEvents', summary: 'Jobline publishes every stored job event.' },
  sendJobLogs: { action: 'send', channel: 'jobLogs', summary: 'Executors publish the output of running attempts.' },
  sendOwnerJobEvents: { action: 'send', channel: 'ownerJobEvents', summary: "Jobline publishes every stored job event again under its job's owner." },
  sendOwnerJobLogs: { action: 'send', channel: 'ownerJobLogs', summary: "Executors publish the output of running attempts again under the job's owner." },
  sendAttemptWork: { action: 'send', channel: 'attemptWork', summary: 'The orchestrator dispatches attempts to executors.' },
  sendAttemptControl: { action: 'send', channel: 'attemptControl', summary: 'The orchestrator orders executors to stop attempts.' },
  receiveAttemptReports: { action: 'receive', channel: 'attemptReports', summary: 'The orchestrator records what executors report.' },
  sendPackageWork: { action: 'send', channel: 'packageWork', summary: 'The orchestrator orders bundles from packagers.' },
  receivePackagingResults: { action: 'receive', channel: 'packagingResults', summary: 'The orchestrator records what packagers built.' },
  receiveExecutorHeartbeats: { action: 'receive', channel: 'executorHeartbeats', summary: 'The orchestrator tracks live executors and answers with their current attempts.' },
  receiveAttemptClaims: { action: 'receive', channel: 'attemptClaims', summary: 'The orchestrator grants or refuses the start of an attempt.' },
  sendChainCheckpoints: { action: 'send', channel: 'chainCheckpoints', summary: 'The orchestrator publishes signed heads of the event hash chain.' },
  sendWebhookOrders: { action: 'send', channel: 'webhookOrders', summary: 'The webhook reactor plans a delivery per target of a job that ended.' },
  sendWebhookAttempts: { action: 'send', channel: 'webhookAttempts', summary: 'The webhook reactor records the outcome of each delivery attempt.' },
};

const EXAMPLE_JOB_ID = '3f0c8a4e-2b9d-4c61-9a57-0d6e1b2f7c85';

function messages(): Record<string, Record<string, unknown>> {
  const json = 'application/json';
  const out: Record<string, Record<string, unknown>> = {
    SubmitJob: {
      name: 'SubmitJob',
      title: 'Submit a job',
      contentType: json,
      headers: schemaRef('CommandHeaders'),
      payload: schemaRef('SubmitJobMessage'),
      correlationId: { location: '$message.payload#/correlationId' },
      examples: [
        {
          name: 'argv',
          summary: 'Run a command with limits and retries',
          headers: { 'Nats-Msg-Id': EXAMPLE_JOB_ID },
          payload: {
            jobId: EXAMPLE_JOB_ID,
            spec: {
              command: ['python3', 'train.py', '--epochs', '3'],
              priority: 'high',
              timeoutSeconds: 3600,
              resources: { cpu: 2, memoryMb: 2048 },
              source: { git: { url: 'https://github.com/acme/models.git', commit: '0123456789abcdef0123456789abcdef01234567' } },
              retry: { maxAttempts: 3, backoffSeconds: 10 },
            },
          },
        },
      ],
    },
    CancelJob: {
      name: 'CancelJob',
      title: 'Cancel a job',
      contentType: json,
      headers: schemaRef('CommandHeaders'),
      payload: schemaRef('CancelJobMessage'),
      correlationId: { location: '$message.payload#/correlationId' },
      examples: [{ name: 'cancel', payload: { jobId: EXAMPLE_JOB_ID, reason: 'superseded' } }],
    },
    PurgeJob: {
      name: 'PurgeJob',
      title: 'Purge a finished job',
      contentType: json,
      headers: schemaRef('CommandHeaders'),
      payload: schemaRef('PurgeJobMessage'),
      correlationId: { location: '$message.payload#/correlationId' },
      examples: [{ name: 'purge', payload: { jobId: EXAMPLE_JOB_ID } }],
    },
    RerunJob: {
      name: 'RerunJob',
      title: 'Re-run a finished job',
      contentType: json,
      headers: schemaRef('CommandHeaders'),
      payload: schemaRef('RerunJobMessage'),
      correlationId: { location: '$message.payload#/correlationId' },
      examples: [{ name: 'rerun', payload: { jobId: '7d0f6a4e-2b1c-4e8a-9f3d-5c6b7a8e9f01', rerunOf: EXAMPLE_JOB_ID } }],
    },
    CommandRejection: {
      name: 'CommandRejection',
      title: 'A refused command',
      contentType: json,
      payload: schemaRef('CommandRejection'),
      examples: [
        {
          name: 'invalid',
          payload: { subject: 'jobline.cmd.acme.submit', jobId: EXAMPLE_JOB_ID, code: 'invalid_argument', field: 'spec.priority', message: 'invalid submit command: spec.priority: Invalid option: expected one of "low"|"normal"|"high"' },
        },
        { name: 'unknown verb', payload: { subject: 'jobline.cmd.acme.frobnicate', code: 'invalid_argument', field: '(subject)', message: "unknown command verb 'frobnicate': expected submit, cancel, purge, rerun: (subject): unknown verb 'frobnicate'" } },
      ],
    },
    CommandReply: { name: 'CommandReply', title: 'Recorded or refused', contentType: json, payload: schemaRef('CommandReply') },
    LogChunk: {
      name: 'LogChunk',
      title: 'A slice of output',
      contentType: 'application/octet-stream',
      headers: schemaRef('LogChunkHeaders'),
      payload: { schemaFormat: SCHEMA_FORMAT, schema: { type: 'string', format: 'binary', description: 'The raw bytes of the chunk' } },
    },
    RunAttempt: { name: 'RunAttempt', title: 'Run an attempt', contentType: json, headers: schemaRef('PublishedHeaders'), payload: schemaRef('RunAttemptMessage') },
    StopAttempt: { name: 'StopAttempt', title: 'Stop an attempt', contentType: json, headers: schemaRef('PublishedHeaders'), payload: schemaRef('StopAttemptMessage') },
    PackageJob: { name: 'PackageJob', title: 'Build a bundle', contentType: json, headers: schemaRef('PublishedHeaders'), payload: schemaRef('PackageJobMessage') },
    PackagingResult: { name: 'PackagingResult', title: 'Bundle built or packaging failed', contentType: json, payload: schemaRef('PackagingResult') },
    AttemptReport: { name: 'AttemptReport', title: 'Attempt started or finished', contentType: json, payload: schemaRef('AttemptReport') },
    ExecutorHeartbeat: { name: 'ExecutorHeartbeat', title: 'Executor heartbeat', contentType: json, payload: schemaRef('ExecutorHeartbeat') },
    LeaseReply: { name: 'LeaseReply', title: 'Attempts current on an executor', contentType: json, payload: schemaRef('LeaseReply') },
    ClaimRequest: { name: 'ClaimRequest', title: 'Claim the start of an attempt', contentType: json, payload: schemaRef('ClaimRequest') },
    ClaimReply: { name: 'ClaimReply', title: 'Claim granted or refused', contentType: json, payload: schemaRef('ClaimReply') },
    ChainCheckpoint: { name: 'ChainCheckpoint', title: 'A signed chain head', contentType: json, payload: schemaRef('ChainCheckpoint') },
    WebhookOrder: { name: 'WebhookOrder', title: 'A webhook delivery to make', contentType: json, headers: schemaRef('PublishedHeaders'), payload: schemaRef('WebhookOrder') },
    WebhookAttempt: { name: 'WebhookAttempt', title: 'The outcome of a delivery attempt', contentType: json, headers: schemaRef('PublishedHeaders'), payload: schemaRef('WebhookAttempt') },
  };
  for (const type of JOB_EVENT_TYPES) {
    out[type] = {
      name: type,
      title: type,
      summary: EVENT_DATA_SCHEMAS[type].description,
      contentType: json,
      headers: schemaRef('PublishedHeaders'),
      payload: schemaRef(`${type}Event`),
      correlationId: { location: '$message.payload#/correlationId' },
      'x-event-version': EVENT_VERSIONS[type],
    };
  }
  return out;
}

/** Builds the AsyncAPI 3.0 document (a plain JSON-ready object). */
export function buildAsyncApiDocument(options: AsyncApiOptions = {}): Record<string, unknown> {
  const servers = options.servers ?? {
    development: { host: 'localhost:4222', description: 'The NATS server of docker-compose.yml (JetStream enabled).' },
  };
  const channels: Record<string, unknown> = {};
  for (const [id, c] of Object.entries(CHANNELS)) {
    channels[id] = {
      address: c.address,
      title: c.title,
      description: c.description + (c.stream ? ` Stored in the JetStream stream ${c.stream}.` : ''),
      parameters: c.parameters,
      messages: Object.fromEntries(c.messages.map((m) => [m, ref(`#/components/messages/${m}`)])),
      tags: c.tags.map((name) => ({ name })),
      ...(c.stream ? { 'x-jetstream-stream': c.stream } : {}),
    };
  }
  const operations: Record<string, unknown> = {};
  for (const [id, o] of Object.entries(OPERATIONS)) {
    operations[id] = {
      action: o.action,
      channel: ref(`#/channels/${o.channel}`),
      summary: o.summary,
      messages: CHANNELS[o.channel].messages.map((m) => ref(`#/channels/${o.channel}/messages/${m}`)),
      tags: CHANNELS[o.channel].tags.map((name) => ({ name })),
      ...(o.replies ? { reply: COMMAND_REPLY } : {}),
    };
  }
  const schemas: Record<string, unknown> = {};
  for (const name of PAYLOAD_SCHEMA_NAMES) schemas[name] = { schemaFormat: SCHEMA_FORMAT, schema: payloadJsonSchema(name) };

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Jobline',
      version: options.version ?? '1.0.0',
      description:
        'Jobline runs commands and records every step as an event. Integrations submit and cancel jobs on ' +
        'jobline.cmd.<owner>.*, hear of refused commands on jobline.rej.<owner>, and follow their own jobs on jobline.owner.<owner>.evt.> and jobline.owner.<owner>.logs.<jobId>. ' +
        'The NATS account configuration (deploy/nats/jobline.conf) limits each integration user to publishing on its own ' +
        'command prefix and subscribing to its own owner prefix, its rejections and its inbox. jobline.evt.> and jobline.logs.> carry every ' +
        "owner's jobs and are for Jobline's services.",
      license: { name: 'Apache-2.0', url: 'https://www.apache.org/licenses/LICENSE-2.0' },
      tags: [
        { name: 'integration', description: 'For event-driven integrations.' },
        { name: 'internal', description: "Between Jobline's own services; not an integration surface." },
      ],
    },
    defaultContentType: 'application/json',
    servers: Object.fromEntries(
      Object.entries(servers).map(([k, s]) => [
        k,
        { host: s.host, protocol: s.protocol ?? 'nats', description: s.description, security: [ref('#/components/securitySchemes/userPassword')] },
      ]),
    ),
    channels,
    operations,
    components: {
      schemas,
      messages: messages(),
      securitySchemes: {
        userPassword: { type: 'userPassword', description: 'A NATS user of the JOBLINE account; its permissions fix the owner it may act for.' },
      },
    },
  };
}

/** The document as written to docs/asyncapi.json (stable key order, trailing newline). */
export function asyncApiJson(options?: AsyncApiOptions): string {
  return `${JSON.stringify(buildAsyncApiDocument(options), null, 2)}\n`;
}

export type { JsonSchema };
