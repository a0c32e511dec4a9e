import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { JOB_EVENT_TYPES, EVENT_VERSIONS, type JobEventType } from '../events';
import { subjects } from '../subjects';
import { asyncApiJson, buildAsyncApiDocument } from './asyncapi';
import { EVENT_DATA_SCHEMAS } from './event-data.schemas';
import { PAYLOAD_SCHEMAS, PAYLOAD_SCHEMA_NAMES, payloadJsonSchema, type JsonSchema, type PayloadSchemaName } from './json-schemas';

/*
 * The published JSON Schemas are checked against the zod schemas they come from: for a
 * valid sample of every payload and for mutations of it (a required key removed, an
 * unknown key added, a deliberately wrong value), zod and the JSON Schema must give the
 * same verdict. The JSON Schema side runs through Ajv (draft-07, what the documents
 * declare) in strict mode: an unknown keyword, an unknown format, a type-less constraint
 * or an ambiguous union is an error when the schema compiles, so no part of a schema is
 * silently ignored; formats (uuid, date-time, uri...) are checked by ajv-formats.
 */
const ajv = new Ajv({ strict: true, allErrors: true });
addFormats(ajv);

type S = Record<string, unknown>;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const compiled = new Map<unknown, ValidateFunction>();
/** Problems of `v` against `s`; [] when valid. Throws when `s` does not compile in strict mode. */
function check(s: S | boolean, v: unknown): string[] {
  let validate = compiled.get(s);
  if (!validate) {
    validate = ajv.compile(typeof s === 'boolean' ? s : { ...s, $schema: undefined, $id: undefined });
    compiled.set(s, validate);
  }
  return validate(v) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '$'}: ${e.message ?? e.keyword}`);
}

// ---------------------------------------------------------------- samples
const JOB = '3f0c8a4e-2b9d-4c61-9a57-0d6e1b2f7c85';
const T = '2026-01-02T03:04:05.678Z';
const usage = { cpuMs: 12, maxRssBytes: 4096 };
const fullSpec = {
  command: 'echo hi && echo err >&2',
  env: { GREETING: 'hi' },
  workdir: 'src',
  priority: 'high',
  timeoutSeconds: 60,
  resources: { cpu: 0.5, memoryMb: 128, pids: 64, ioReadBps: 1_000_000, ioWriteBps: 1_000_000, network: false },
  source: { git: { url: 'https://example.com/acme/repo.git', commit: 'a'.repeat(40) } },
  data: [{ url: 'https://example.com/d.csv', path: 'data/d.csv', sha256: 'b'.repeat(64) }],
  outputs: ['out/**'],
  retry: { maxAttempts: 2, backoffSeconds: 1 },
  target: { executor: 'local', labels: { gpu: 'no' } },
};
const stepsSpec = { steps: [{ name: 'build', run: 'make' }, { name: 'test', run: 'make test' }], priority: 'normal' };

const EVENT_DATA: Record<JobEventType, Record<string, unknown>> = {
  JobSubmitted: { jobId: JOB, owner: 'acme', spec: fullSpec, priority: 'high', submittedAt: T, idempotencyKey: 'k1' },
  JobPackaged: { bundleDigest: `sha256:${'c'.repeat(64)}`, size: 1024, commit: 'a'.repeat(40), dataDigests: { 'data/d.csv': 'b'.repeat(64) }, packagedAt: T },
  JobPackagingFailed: { reason: 'git clone failed', failedAt: T },
  JobQueued: { attempt: 1, priority: 'normal', queuedAt: T },
  JobDispatched: { attempt: 1, executorId: 'local', dispatchedAt: T },
  JobStarted: { attempt: 1, executorId: 'local', startedAt: T, sandbox: 'none', sandboxNote: 'no cgroup delegation', pid: 4242 },
  JobCompleted: { attempt: 1, exitCode: 137, signal: 'SIGKILL', oomKilled: true, durationMs: 15.5, finishedAt: T, usage, logBytes: 10 },
  JobTimedOut: { attempt: 2, timeoutSeconds: 60, finishedAt: T },
  JobCancelRequested: { requestedBy: 'acme', reason: 'superseded', requestedAt: T },
  JobCancelled: { attempt: null, finishedAt: T },
  JobAttemptStopped: { attempt: 2, exitCode: 143, signal: 'SIGTERM', oomKilled: false, durationMs: 60_010, finishedAt: T, usage, logBytes: 2048 },
  JobLost: { attempt: 1, executorId: 'edge-1', reason: 'heartbeat lease expired', lostAt: T },
  JobRetryScheduled: { nextAttempt: 2, retryAt: T, reason: 'exit code 1' },
  JobFailed: { attempt: 3, reason: 'exit code 1', finishedAt: T },
  JobPurged: { purgedAt: T, by: 'admin' },
  JobStepStarted: { attempt: 1, step: 2, name: 'test', startedAt: T, logOffset: 120 },
  JobStepFinished: { attempt: 1, step: 2, name: 'test', exitCode: 3, startedAt: T, finishedAt: T, durationMs: 812, logOffset: 120, logEnd: 480, continueOnFailure: true, artifacts: { files: 2, bytes: 900 } },
};

const envelope = (type: JobEventType, data: Record<string, unknown>) => ({
  id: '0b8f4f7e-5f0a-4d0e-8a53-8c4b3f7f2d11',
  type,
  version: EVENT_VERSIONS[type],
  jobId: JOB,
  position: 17,
  streamRevision: 3,
  occurredAt: T,
  actor: 'scheduler',
  causationId: null,
  correlationId: JOB,
  data,
});

/** A valid sample, and a value that must be refused, for every payload. */
const SAMPLES: Record<PayloadSchemaName, { valid: unknown[]; invalid: unknown[] }> = {
  WebhookOrder: {
    valid: [{ deliveryId: 'd'.repeat(32), jobId: JOB, owner: 'acme', url: 'https://hooks.example.com/j', source: 'job', body: '{}', plannedAt: T }],
    invalid: [
      { deliveryId: 'd'.repeat(32), jobId: JOB, owner: 'acme', url: 'https://hooks.example.com/j', source: 'elsewhere', body: '{}', plannedAt: T },
      { deliveryId: 'd'.repeat(32), jobId: JOB, owner: 'acme', url: 'https://hooks.example.com/j', source: 'job', body: '{}', plannedAt: T, extra: 1 },
    ],
  },
  WebhookAttempt: {
    valid: [
      { deliveryId: 'd1', jobId: JOB, url: 'https://h.example/j', source: 'owner', attempt: 1, maxAttempts: 8, outcome: 'retrying', statusCode: 503, error: 'HTTP 503', at: T, durationMs: 12, nextAttemptAt: T },
      { deliveryId: 'd1', jobId: JOB, url: 'http://169.254.169.254/', source: 'job', attempt: 1, maxAttempts: 8, outcome: 'refused', statusCode: null, error: 'refused', at: T, durationMs: 0, nextAttemptAt: null },
    ],
    invalid: [{ deliveryId: 'd1', jobId: JOB, url: 'https://h.example/j', source: 'owner', attempt: 0, maxAttempts: 8, outcome: 'retrying', statusCode: 503, error: null, at: T, durationMs: 1, nextAttemptAt: null }],
  },
  ChainCheckpoint: {
    valid: [{ type: 'jobline.chain-checkpoint/v1', position: 42, chainHash: 'a'.repeat(64), signedAt: T, keyId: 'b'.repeat(64), signature: 'c2ln' }],
    invalid: [
      { type: 'jobline.chain-checkpoint/v1', position: 42, chainHash: 'not-hex', signedAt: T, keyId: 'b'.repeat(64), signature: 'c2ln' },
      { type: 'jobline.chain-checkpoint/v1', position: 42, chainHash: 'a'.repeat(64), signedAt: T, keyId: 'b'.repeat(64), signature: 'c2ln', extra: 1 },
    ],
  },
  SubmitJobMessage: {
    valid: [{ jobId: JOB, spec: fullSpec, idempotencyKey: 'k1', correlationId: 'c1' }, { jobId: JOB, spec: { command: ['true'] } }, { jobId: JOB, spec: stepsSpec }],
    invalid: [
      { jobId: 'not-a-uuid', spec: { command: ['true'] } },
      { jobId: JOB, spec: { command: ['true'], steps: [{ name: 'a', run: 'b' }] } },
      { jobId: JOB, spec: {} },
      { jobId: JOB, spec: { command: ['true'], priority: 'urgent' } },
      { jobId: JOB, spec: { command: ['true'], resources: { memoryMb: 1 } } },
      { jobId: JOB, spec: { command: ['true'], source: { git: { url: 'x', commit: 'main' } } } },
    ],
  },
  CancelJobMessage: { valid: [{ jobId: JOB }, { jobId: JOB, reason: 'r', correlationId: 'c' }], invalid: [{ reason: 'no job' }, { jobId: JOB.toUpperCase() }] },
  PurgeJobMessage: { valid: [{ jobId: JOB }, { jobId: JOB, correlationId: 'c' }], invalid: [{}, { jobId: JOB, reason: 'no such field' }] },
  RerunJobMessage: {
    valid: [{ jobId: JOB, rerunOf: '7d0f6a4e-2b1c-4e8a-9f3d-5c6b7a8e9f01' }, { jobId: JOB, rerunOf: '7d0f6a4e-2b1c-4e8a-9f3d-5c6b7a8e9f01', idempotencyKey: 'k', correlationId: 'c' }],
    invalid: [{ jobId: JOB }, { rerunOf: JOB }, { jobId: JOB, rerunOf: 'not-a-uuid' }, { jobId: JOB, rerunOf: JOB, spec: { command: 'x' } }],
  },
  CommandHeaders: {
    valid: [{}, { 'Nats-Msg-Id': JOB }, { 'Jobline-Reply-To': '_INBOX.abc123' }, { 'Jobline-Reply-To': '_INBOX_acme.x.y' }, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tracestate: 'acme=7' }],
    invalid: [{ 'Nats-Msg-Id': '' }, { 'Jobline-Reply-To': 'jobline.evt.x.JobCompleted' }, { 'Jobline-Reply-To': '_INBOX.>' }, { 'Jobline-Reply-To': '_INBOX.a b' }],
  },
  CommandRejection: {
    valid: [
      { subject: 'jobline.cmd.acme.submit', jobId: JOB, code: 'invalid_argument', field: 'spec.priority', message: 'invalid submit command' },
      { subject: 'jobline.cmd.acme.frobnicate', code: 'invalid_argument', message: 'unknown verb' },
      { subject: 'jobline.cmd.acme.submit', jobId: JOB, code: 'resource_exhausted', message: 'over quota', retryAfterSeconds: 10 },
    ],
    invalid: [{ subject: 'jobline.cmd.acme.submit', code: 'invalid_argument' }, { subject: 'x', code: 'c', message: 'm', extra: 1 }, { subject: 'x', code: 'c', message: 'm', retryAfterSeconds: 0 }],
  },
  CommandReply: {
    valid: [{ ok: true, subject: 'jobline.cmd.acme.submit', jobId: JOB }, { ok: false, subject: 'jobline.cmd.acme.cancel', code: 'not_found', message: 'no job' }],
    invalid: [{ ok: true, subject: 'jobline.cmd.acme.submit' }, { ok: false, subject: 'jobline.cmd.acme.cancel', message: 'no code' }],
  },
  JobEventMessage: { valid: [envelope('JobQueued', EVENT_DATA.JobQueued)], invalid: [{ ...envelope('JobQueued', EVENT_DATA.JobQueued), type: 'JobExploded' }] },
  ...(Object.fromEntries(
    JOB_EVENT_TYPES.flatMap((t) => [
      [`${t}Data`, { valid: [EVENT_DATA[t]], invalid: [{ ...EVENT_DATA[t], bogus: 1 }] }],
      [`${t}Event`, { valid: [envelope(t, EVENT_DATA[t])], invalid: [{ ...envelope(t, EVENT_DATA[t]), version: 99 }] }],
    ]),
  ) as Record<`${JobEventType}Data` | `${JobEventType}Event`, { valid: unknown[]; invalid: unknown[] }>),
  PublishedHeaders: { valid: [{ 'Nats-Msg-Id': 'e1:run' }], invalid: [{}] },
  LogChunkHeaders: {
    valid: [{ 'Jobline-Attempt': '1', 'Jobline-Stream': 'stderr', 'Jobline-Offset': '1048576', 'Nats-Msg-Id': `${JOB}.1.1048576` }],
    invalid: [{ 'Jobline-Attempt': '1', 'Jobline-Stream': 'stdin', 'Jobline-Offset': '0' }, { 'Jobline-Attempt': '-1', 'Jobline-Stream': 'stdout', 'Jobline-Offset': '0' }],
  },
  RunAttemptMessage: {
    valid: [
      { kind: 'run', jobId: JOB, owner: 'acme', attempt: 1, spec: { ...stepsSpec }, bundleDigest: null, dispatchedAt: T },
      { kind: 'run', jobId: JOB, owner: 'acme', attempt: 1, spec: { ...stepsSpec }, bundleDigest: null, dispatchedAt: T, startBy: T },
    ],
    invalid: [{ kind: 'stop', jobId: JOB, owner: 'acme', attempt: 1, spec: stepsSpec, bundleDigest: null, dispatchedAt: T }],
  },
  StopAttemptMessage: {
    valid: [{ kind: 'stop', jobId: JOB, attempt: 2, reason: 'timeout' }, { kind: 'stop', jobId: JOB, attempt: 1, reason: 'lost' }],
    invalid: [{ kind: 'stop', jobId: JOB, attempt: 0, reason: 'cancel' }, { kind: 'stop', jobId: JOB, attempt: 1, reason: 'paused' }],
  },
  LeaseReply: {
    valid: [{ executorId: 'local', instanceId: 'i-1', current: [{ jobId: JOB, attempt: 2 }], leaseMs: 10_000, sentAt: T }],
    invalid: [{ executorId: 'local', instanceId: 'i-1', current: [{ jobId: JOB, attempt: 0 }], leaseMs: 10_000, sentAt: T }],
  },
  ClaimRequest: {
    valid: [{ kind: 'started', jobId: JOB, attempt: 1, executorId: 'local', startedAt: T, sandbox: 'cgroup-v1' }],
    invalid: [{ kind: 'finished', jobId: JOB, attempt: 1, executorId: 'local', startedAt: T, sandbox: 'none' }],
  },
  ClaimReply: {
    valid: [{ granted: true }, { granted: false, code: 'stale', message: 'attempt 1 was declared lost' }],
    invalid: [{ granted: false, code: 'bogus', message: 'x' }, { granted: true, code: 'stale' }],
  },
  PackageJobMessage: {
    valid: [{ kind: 'package', jobId: JOB, owner: 'dev', spec: { command: ['true'], priority: 'normal', source: { git: { url: 'https://example.com/r.git', commit: 'a'.repeat(40) } } } }],
    invalid: [{ kind: 'package', jobId: JOB, owner: 'dev' }, { kind: 'run', jobId: JOB, owner: 'dev', spec: { command: ['true'] } }],
  },
  PackagingResult: {
    valid: [
      { kind: 'packaged', jobId: JOB, bundleDigest: `sha256:${'b'.repeat(64)}`, size: 10, commit: 'a'.repeat(40), dataDigests: { 'd.txt': 'c'.repeat(64) } },
      { kind: 'failed', jobId: JOB, reason: 'commit not found' },
    ],
    invalid: [{ kind: 'packaged', jobId: JOB, bundleDigest: 'md5:x', size: 1 }, { kind: 'failed', jobId: JOB, reason: '' }],
  },
  AttemptReport: {
    valid: [
      { kind: 'started', jobId: JOB, attempt: 1, executorId: 'local', startedAt: T, sandbox: 'cgroup-v2', pid: 7 },
      { kind: 'finished', jobId: JOB, attempt: 1, executorId: 'local', exitCode: 0, signal: null, oomKilled: false, durationMs: 3, finishedAt: T, usage: null, logBytes: 0 },
    ],
    invalid: [{ kind: 'paused', jobId: JOB, attempt: 1, executorId: 'local' }, { kind: 'started', jobId: JOB, attempt: 1, executorId: 'a.b', startedAt: T, sandbox: 'none' }],
  },
  ExecutorHeartbeat: {
    valid: [
      {
        executorId: 'local', instanceId: 'i-1', kind: 'local', capacity: 4, running: [{ jobId: JOB, attempt: 1 }], labels: { zone: 'a' },
        sandbox: 'cgroup-v2', runtime: 'node 20.19', startedAt: T, sentAt: T,
      },
      {
        executorId: 'box', instanceId: 'i-2', kind: 'ssh', capacity: 4, running: [], labels: { host: 'box' },
        sandbox: 'ssh', runtime: 'node 20.19', startedAt: T, sentAt: T, state: 'host-key-mismatch', note: 'host key mismatch for SSH host box',
      },
      {
        executorId: 'local', instanceId: 'i-3', kind: 'local', capacity: 4, running: [], labels: {},
        sandbox: 'none', runtime: 'deno 2.9', startedAt: T, sentAt: T, heartbeatMs: 1000,
      },
    ],
    invalid: [
      { executorId: 'local', instanceId: 'i-1', kind: 'docker', capacity: 4, running: [], labels: {}, sandbox: 'none', runtime: 'node', startedAt: T, sentAt: T },
      { executorId: 'local', instanceId: 'i-1', kind: 'local', capacity: 4, running: [], labels: {}, sandbox: 'none', runtime: 'node', startedAt: T, sentAt: T, heartbeatMs: 0 },
    ],
  },
};

// ---------------------------------------------------------------- tests
const jsonSchemas = Object.fromEntries(PAYLOAD_SCHEMA_NAMES.map((n) => [n, payloadJsonSchema(n)])) as Record<PayloadSchemaName, JsonSchema>;
const zodAccepts = (name: PayloadSchemaName, v: unknown) => PAYLOAD_SCHEMAS[name].schema.safeParse(v).success;
const jsonAccepts = (name: PayloadSchemaName, v: unknown) => check(jsonSchemas[name], v).length === 0;

describe('payload JSON Schemas', () => {
  it('cover every event type, twice (data and full message)', () => {
    for (const t of JOB_EVENT_TYPES) {
      expect(PAYLOAD_SCHEMA_NAMES).toContain(`${t}Data`);
      expect(PAYLOAD_SCHEMA_NAMES).toContain(`${t}Event`);
    }
  });

  it.each(PAYLOAD_SCHEMA_NAMES)('%s accepts its valid samples, like zod', (name) => {
    for (const v of SAMPLES[name].valid) {
      expect(zodAccepts(name, v)).toBe(true);
      expect(check(jsonSchemas[name], v)).toEqual([]);
    }
  });

  it.each(PAYLOAD_SCHEMA_NAMES)('%s refuses its invalid samples, like zod', (name) => {
    expect(SAMPLES[name].invalid.length).toBeGreaterThan(0);
    for (const v of SAMPLES[name].invalid) {
      expect(zodAccepts(name, v)).toBe(false);
      expect(jsonAccepts(name, v)).toBe(false);
    }
  });

  it.each(PAYLOAD_SCHEMA_NAMES)('%s: a missing required key or an unknown key gets the same verdict as zod', (name) => {
    const schema = jsonSchemas[name];
    for (const v of SAMPLES[name].valid) {
      if (!isObject(v)) continue;
      const branch = schema.oneOf ? (schema.oneOf as S[]).find((b) => check(b, v).length === 0)! : schema;
      for (const key of (branch.required ?? []) as string[]) {
        const without = { ...v };
        delete without[key];
        expect({ key, zod: zodAccepts(name, without) }).toEqual({ key, zod: false });
        expect({ key, json: jsonAccepts(name, without) }).toEqual({ key, json: false });
      }
      const extra = { ...v, 'x-unknown': 1 };
      expect(jsonAccepts(name, extra)).toBe(zodAccepts(name, extra));
    }
  });

  it('strict payloads say so (additionalProperties: false); heartbeats and headers may carry more', () => {
    const open = new Set<PayloadSchemaName>(['ExecutorHeartbeat', 'CommandHeaders', 'PublishedHeaders', 'LogChunkHeaders']);
    for (const name of PAYLOAD_SCHEMA_NAMES) {
      const s = jsonSchemas[name];
      const roots = (s.oneOf as S[] | undefined) ?? [s];
      for (const r of roots) expect({ name, additionalProperties: r.additionalProperties }).toEqual({ name, additionalProperties: open.has(name) ? undefined : false });
    }
  });

  it('list the required keys of the contracts', () => {
    expect(jsonSchemas.SubmitJobMessage.required).toEqual(['jobId', 'spec']);
    expect(jsonSchemas.CancelJobMessage.required).toEqual(['jobId']);
    expect(jsonSchemas.JobEventMessage.required).toEqual(
      ['id', 'type', 'version', 'jobId', 'position', 'streamRevision', 'occurredAt', 'actor', 'causationId', 'correlationId', 'data'],
    );
    expect(jsonSchemas.LogChunkHeaders.required).toEqual(['Jobline-Attempt', 'Jobline-Stream', 'Jobline-Offset']);
    expect(jsonSchemas.JobCompletedData.required).toEqual(['attempt', 'exitCode', 'signal', 'oomKilled', 'durationMs', 'finishedAt', 'usage', 'logBytes']);
  });

  it('describe accepted specs as zod input (priority optional) and published ones as output (priority present)', () => {
    const submitSpec = (jsonSchemas.SubmitJobMessage.properties as Record<string, S>).spec;
    const eventSpec = (jsonSchemas.JobSubmittedData.properties as Record<string, S>).spec;
    expect(submitSpec.required ?? []).not.toContain('priority');
    expect(eventSpec.required).toContain('priority');
    expect(submitSpec.oneOf).toEqual([
      { properties: { command: true }, required: ['command'] },
      { properties: { steps: true }, required: ['steps'] },
    ]);
  });

  it('the validator refuses keywords and formats it does not know, so it cannot pass a schema it did not read', () => {
    expect(() => check({ type: 'string', frobnicate: true }, 'x')).toThrow(/unknown keyword/);
    expect(() => check({ type: 'string', format: 'colour' }, 'x')).toThrow(/unknown format/);
    expect(check({ type: 'string', format: 'uuid' }, 'not-a-uuid')).not.toEqual([]);
  });
});

// ---------------------------------------------------------------- AsyncAPI
type Doc = {
  asyncapi: string;
  channels: Record<string, { address: string; parameters?: Record<string, unknown>; messages: Record<string, { $ref: string }> }>;
  operations: Record<string, { action: string; channel: { $ref: string }; messages: { $ref: string }[] }>;
  components: { messages: Record<string, { payload: unknown; headers?: unknown; examples?: { payload?: unknown; headers?: unknown }[] }>; schemas: Record<string, unknown> };
};
const doc = buildAsyncApiDocument() as unknown as Doc;

const tokens = (s: string) => s.split('.').map((t) => (/^\{.+\}$/.test(t) ? '{}' : t));
/** NATS matching, with a channel parameter standing for exactly one token. */
function natsMatches(pattern: string, address: string): boolean {
  const p = pattern.split('.');
  const a = tokens(address);
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return a.length > i;
    if (i >= a.length) return false;
    if (p[i] !== '*' && p[i] !== a[i]) return false;
  }
  return p.length === a.length;
}
/** A subject function's shape: its parameters become `{}` tokens (wildcards stay). */
const shapeOf = (fn: (...a: string[]) => string) => tokens(fn(...Array.from({ length: fn.length }, (_, i) => `{p${i}}`))).join('.');

function resolvePointer(root: unknown, ref: string): unknown {
  expect(ref.startsWith('#/')).toBe(true);
  return ref
    .slice(2)
    .split('/')
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), root);
}

function collectRefs(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((n) => collectRefs(n, out));
  else if (isObject(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else collectRefs(v, out);
    }
  }
  return out;
}

describe('AsyncAPI document', () => {
  const addresses = Object.values(doc.channels).map((c) => c.address);

  it('is AsyncAPI 3.0', () => {
    expect(doc.asyncapi).toBe('3.0.0');
  });

  it('has a channel for every subject of subjects.ts, and covers every wildcard', () => {
    const shapes = addresses.map((a) => tokens(a).join('.'));
    const entries = Object.entries(subjects);
    expect(entries.length).toBeGreaterThan(10);
    for (const [key, value] of entries) {
      const pattern = typeof value === 'function' ? shapeOf(value as (...a: string[]) => string) : value;
      const covered = /(^|\.)[*>](\.|$)/.test(pattern) ? addresses.some((a) => natsMatches(pattern, a)) : shapes.includes(pattern);
      expect({ key, pattern, covered }).toEqual({ key, pattern, covered: true });
    }
  });

  it('documents no subject that subjects.ts does not build', () => {
    const built = Object.values(subjects)
      .filter((v): v is (...a: string[]) => string => typeof v === 'function')
      .map(shapeOf)
      .filter((shape) => !/(^|\.)[*>](\.|$)/.test(shape));
    for (const a of addresses) expect({ a, built: built.includes(tokens(a).join('.')) }).toEqual({ a, built: true });
  });

  it('declares exactly the parameters each address uses', () => {
    for (const [id, c] of Object.entries(doc.channels)) {
      const used = [...c.address.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      expect({ id, params: Object.keys(c.parameters ?? {}).sort() }).toEqual({ id, params: used });
    }
  });

  it('resolves every $ref, and operations only use messages of their channel', () => {
    for (const r of collectRefs(doc)) expect({ r, resolved: resolvePointer(doc, r) !== undefined }).toEqual({ r, resolved: true });
    for (const [id, op] of Object.entries(doc.operations)) {
      expect(['send', 'receive']).toContain(op.action);
      for (const m of op.messages) expect({ id, ok: m.$ref.startsWith(`${op.channel.$ref}/messages/`) }).toEqual({ id, ok: true });
    }
  });

  it('has one message per event type on the events channel, with that type’s schema', () => {
    const events = Object.values(doc.channels).find((c) => c.address === 'jobline.evt.{jobId}.{eventType}')!;
    expect(Object.keys(events.messages).sort()).toEqual([...JOB_EVENT_TYPES].sort());
    for (const t of JOB_EVENT_TYPES) {
      expect(doc.components.messages[t].payload).toEqual({ $ref: `#/components/schemas/${t}Event` });
      expect(EVENT_DATA_SCHEMAS[t].description).toBeTruthy();
    }
  });

  it('has message examples that the schemas and zod accept', () => {
    let seen = 0;
    for (const m of Object.values(doc.components.messages)) {
      for (const ex of m.examples ?? []) {
        const name = (m.payload as { $ref: string }).$ref.split('/').pop() as PayloadSchemaName;
        expect(zodAccepts(name, ex.payload)).toBe(true);
        expect(check(jsonSchemas[name], ex.payload)).toEqual([]);
        seen++;
      }
    }
    expect(seen).toBeGreaterThan(0);
  });

  it('is what docs/asyncapi.json holds (regenerate with write-asyncapi after a contract change)', () => {
    const onDisk = readFileSync(join(__dirname, '../../../../docs/asyncapi.json'), 'utf8');
    expect(onDisk === asyncApiJson()).toBe(true);
  });

  it('keeps libs/contracts runtime-neutral: only the script imports Node', () => {
    const nodeOnly = /from ['"](node:|fs['"]|path['"]|child_process['"])/;
    const offenders = [__dirname, join(__dirname, '..')]
      .flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts')).map((f) => join(dir, f)))
      .filter((f) => !f.endsWith('write-asyncapi.ts'))
      .filter((f) => nodeOnly.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});
