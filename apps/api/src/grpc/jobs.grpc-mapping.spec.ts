import * as grpc from '@grpc/grpc-js';
import { QuotaExceededError, ValidationError, parseJobSpec } from '../../../../libs/contracts/src';
import { fromTimestamp, jobViewToPb, logStreamFromPb, priorityFromPb, specFromPb, specToPb, statusFromPb, toGrpcError } from './jobs.grpc-mapping';
import { jobViewFromPb } from '../../../cli/src/remote/json-shapes';
import { evolveJobView } from '../../../../libs/domain/src';
import { jobServiceClient } from './jobs.proto-loader';

/*
 * Requests are decoded by the real proto-loader deserializer from wire bytes, exactly as the
 * server sees them: an enum number the schema does not know arrives as a number, a map key
 * `__proto__` as an own key of a null-prototype object.
 */

/** Minimal protobuf wire writer: enough to send what a client written elsewhere could send. */
const varint = (n: number): number[] => {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
};
const field = (no: number, value: number | string | Buffer): Buffer => {
  if (typeof value === 'number') return Buffer.from([...varint((no << 3) | 0), ...varint(value)]);
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([Buffer.from([...varint((no << 3) | 2), ...varint(bytes.length)]), bytes]);
};
const msg = (...fields: Buffer[]) => Buffer.concat(fields);

const service = jobServiceClient().service;
const decodeStart = (specFields: Buffer[]) => service.Start.requestDeserialize(msg(field(1, msg(...specFields)))) as { spec: unknown };
const decodeList = (...fields: Buffer[]) => service.List.requestDeserialize(msg(...fields)) as { status?: unknown; priority?: unknown };
const decodeLogs = (...fields: Buffer[]) => service.Logs.requestDeserialize(msg(...fields)) as { stream?: unknown };

const SCRIPT = field(2, 'true');

/** What the Start handler does with a request: map it, then validate it with the REST schema. */
function startSpec(specFields: Buffer[]) {
  const mapped = specFromPb(decodeStart(specFields).spec);
  const parsed = parseJobSpec(mapped);
  if (!parsed.ok) throw new ValidationError('invalid job spec', parsed.issues);
  return parsed.value;
}

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return toGrpcError(err);
  }
  throw new Error('expected a refusal');
};

describe('gRPC errors', () => {
  it('a refusal over a quota is RESOURCE_EXHAUSTED with retry-after metadata; other errors carry none', () => {
    const e = toGrpcError(new QuotaExceededError('owner ci has 5 job(s) waiting, its quota is 5', 7));
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toBe('owner ci has 5 job(s) waiting, its quota is 5');
    expect(e.metadata?.get('retry-after')).toEqual(['7']);
    expect(toGrpcError(new ValidationError('bad')).metadata).toBeUndefined();
  });
});

describe('gRPC mapping refuses what it cannot map, and coerces nothing', () => {
  it('maps a staged spec (continue_on_failure, outputs) and the view’s steps both ways, over the wire', () => {
    const step = (name: string, more: Buffer[] = []) => field(3, msg(field(1, msg(field(1, name), field(2, 'true'), ...more))));
    const decoded = decodeStart([msg(step('a', [field(3, 1), field(4, 'out/*')]))]).spec;
    const spec = parseJobSpec(specFromPb(decoded));
    expect(spec.ok && spec.value.steps).toEqual([{ name: 'a', run: 'true', continueOnFailure: true, outputs: ['out/*'] }]);
    const jobId = '0b5cf6c2-8a38-4a6e-9a55-1f5b4f5e2a11';
    const T = '2026-01-01T00:00:00.123Z';
    const view = [
      { type: 'JobSubmitted', data: { jobId, owner: 'alice', spec: spec.ok ? spec.value : ({} as never), priority: 'normal', submittedAt: T } },
      { type: 'JobQueued', data: { attempt: 1, priority: 'normal', queuedAt: T } },
      { type: 'JobDispatched', data: { attempt: 1, executorId: 'e1', dispatchedAt: T } },
      { type: 'JobStarted', data: { attempt: 1, executorId: 'e1', startedAt: T, sandbox: 'none' } },
      { type: 'JobStepFinished', data: { attempt: 1, step: 1, name: 'a', exitCode: 2, startedAt: T, finishedAt: T, durationMs: 1.5, logOffset: 0, logEnd: 12, continueOnFailure: true, artifacts: { files: 1, bytes: 3 } } },
    ].reduce((v, e) => evolveJobView(v, e as never), null as ReturnType<typeof evolveJobView>)!;
    const wire = service.Status.responseSerialize({ job: jobViewToPb(view) });
    const back = jobViewFromPb((service.Status.responseDeserialize(wire) as { job: unknown }).job);
    expect(back.steps).toEqual(view.steps);
    expect(back.steps![0]).toMatchObject({ status: 'failed', exitCode: 2, logEnd: 12, artifacts: { files: 1, bytes: 3 } });
  });

  it('maps notify (field 14) both ways, validated by the REST schema', () => {
    const hook = (url: string) => field(14, msg(field(1, url)));
    const spec = startSpec([SCRIPT, hook('https://a.example/h'), hook('https://b.example/h')]);
    expect(spec.notify).toEqual([{ url: 'https://a.example/h' }, { url: 'https://b.example/h' }]);
    expect(specFromPb(specToPb(spec)).notify).toEqual(spec.notify);
    expect(refusal(() => startSpec([SCRIPT, hook('ftp://a.example/')])).details).toMatch(/notify\.0\.url/);
  });

  it('maps the known priorities and leaves PRIORITY_UNSPECIFIED to the default (normal)', () => {
    expect(startSpec([SCRIPT, field(6, 3)]).priority).toBe('high');
    expect(startSpec([SCRIPT, field(6, 1)]).priority).toBe('low');
    expect(startSpec([SCRIPT, field(6, 0)]).priority).toBe('normal');
    expect(startSpec([SCRIPT]).priority).toBe('normal');
  });

  it('refuses priority 9 with INVALID_ARGUMENT naming spec.priority (it was stored as normal)', () => {
    expect(decodeStart([SCRIPT, field(6, 9)]).spec).toMatchObject({ priority: 9 });
    const e = refusal(() => startSpec([SCRIPT, field(6, 9)]));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/spec\.priority/);
    expect(e.details).toMatch(/9/);
  });

  it('refuses an unknown target.executor kind instead of dropping it', () => {
    const target = field(13, field(1, 7));
    const e = refusal(() => startSpec([SCRIPT, target]));
    expect(e.details).toMatch(/spec\.target\.executor/);
    expect(startSpec([SCRIPT, field(13, field(1, 2))]).target).toEqual({ executor: 'ssh' });
  });

  it('refuses an env key __proto__ naming it (it was dropped), and keeps constructor and prototype', () => {
    const entry = (k: string, v: string) => field(4, msg(field(1, k), field(2, v)));
    const e = refusal(() => startSpec([SCRIPT, entry('__proto__', 'x'), entry('OK', '1')]));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/env\.__proto__/);
    expect(startSpec([SCRIPT, entry('constructor', 'c'), entry('prototype', 'p')]).env).toEqual({ constructor: 'c', prototype: 'p' });
  });

  it('refuses a target label __proto__', () => {
    const label = field(3, msg(field(1, '__proto__'), field(2, 'x')));
    expect(refusal(() => startSpec([SCRIPT, field(13, label)])).details).toMatch(/target\.labels\.__proto__/);
  });

  it('refuses unknown status, priority and stream filters of List and Logs', () => {
    expect(statusFromPb(decodeList(field(1, 3)).status)).toBe('running');
    expect(statusFromPb(decodeList(field(1, 0)).status)).toBeUndefined();
    expect(refusal(() => statusFromPb(decodeList(field(1, 42)).status)).details).toMatch(/status/);
    expect(refusal(() => priorityFromPb(decodeList(field(2, 9)).priority)).details).toMatch(/priority/);
    expect(logStreamFromPb(decodeLogs(field(5, 2)).stream)).toBe('stderr');
    expect(logStreamFromPb(decodeLogs().stream)).toBeUndefined();
    expect(refusal(() => logStreamFromPb(decodeLogs(field(5, 5)).stream)).details).toMatch(/stream/);
  });

  it('refuses timestamps outside the range proto allows instead of wrapping them', () => {
    expect(fromTimestamp({ seconds: 1_700_000_000, nanos: 5e8 })).toBe('2023-11-14T22:13:20.500Z');
    expect(refusal(() => fromTimestamp({ seconds: 1, nanos: 1e9 })).details).toMatch(/nanos/);
    expect(refusal(() => fromTimestamp({ seconds: 1, nanos: -1 })).details).toMatch(/nanos/);
    expect(refusal(() => fromTimestamp({ seconds: 253_402_300_800 })).details).toMatch(/seconds/);
  });

  it('refuses numbers the schema does not allow rather than clamping them', () => {
    // uint32 timeout 0 and a 2^60 io limit (lossy as a JavaScript number) both reach the schema and fail there.
    expect(refusal(() => startSpec([SCRIPT, field(7, 0)])).details).toMatch(/timeoutSeconds/);
    const resources = field(8, field(4, 2 ** 60));
    expect(refusal(() => startSpec([SCRIPT, resources])).details).toMatch(/resources\.ioReadBps/);
  });
});
