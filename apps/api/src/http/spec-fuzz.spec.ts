import fc from 'fast-check';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { ValidationError, parseJobSpec } from '../../../../libs/contracts/src';
import { readJsonBody } from './json-body';
import { readSubmitBody } from './submit-body';

/*
 * Property-based fuzzing of the spec parsers (fast-check): the JSON body reader, the
 * multipart reader and the JobSpec schema, fed generated hostile input — arbitrary JSON,
 * near-valid specs with one field mutated, `__proto__`/`constructor` keys, paths with '..'
 * in every spelling, deep nesting, huge strings, random bytes. Each input is either accepted
 * (and then means exactly what it says: re-parsing gives the same spec, and no accepted path
 * can leave the workspace) or refused with a ValidationError whose issues name a field.
 * Nothing else may escape: no TypeError, no RangeError, no crash.
 */

const RUNS = Number(process.env.JOBLINE_FUZZ_RUNS ?? 300);

const request = (body: Buffer, contentType: string): IncomingMessage =>
  Object.assign(Readable.from([body]), { headers: { 'content-type': contentType, 'content-length': String(body.length) } }) as unknown as IncomingMessage;

const dotdot = fc.constantFrom('..', '../x', 'a/../../b', './..', 'a/..', '..\\x', 'x\\..\\..', '/etc/passwd', '//x', 'a/./../..', '%2e%2e/x', '.../x', 'a..', '..a');
const key = fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'PATH', 'A', '1A', 'a-b', ''), fc.string({ maxLength: 12 }));
const hostileString = fc.oneof(fc.string({ maxLength: 30 }), dotdot, fc.constantFrom('\u0000', 'x'.repeat(300_000), '\u202e', '\ud800'));

/** A valid spec with one field replaced by something hostile. */
const mutatedSpec = fc
  .record({
    field: fc.constantFrom('command', 'steps', 'env', 'workdir', 'priority', 'timeoutSeconds', 'resources', 'source', 'data', 'outputs', 'retry', 'target'),
    value: fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      hostileString,
      fc.dictionary(key, fc.oneof(hostileString, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 5 }),
      fc.array(fc.oneof(hostileString, fc.record({ url: hostileString, path: dotdot })), { maxLength: 5 }),
      fc.constantFrom(Number.MAX_SAFE_INTEGER + 2, -1, 0, 1e308, 2 ** 53, 0.5),
    ),
  })
  .map(({ field, value }) => ({ command: ['true'], [field]: value }));

/** JSON text an object literal cannot make: own `__proto__` keys, anywhere. */
const protoJson = fc.constantFrom(
  '{"command":["true"],"env":{"__proto__":"x"}}',
  '{"command":["true"],"__proto__":{"priority":"high"}}',
  '{"command":["true"],"target":{"labels":{"__proto__":"x"}}}',
  '{"command":["true"],"resources":{"__proto__":{"cpu":1}}}',
  '{"__proto__":{"command":["true"]}}',
);

function expectRefusalNamesAField(err: unknown): void {
  expect(err).toBeInstanceOf(ValidationError);
  const issues = (err as ValidationError).issues;
  expect(issues.length).toBeGreaterThan(0);
  for (const i of issues) {
    expect(typeof i.path).toBe('string');
    expect(i.path.length).toBeGreaterThan(0);
    expect(typeof i.message).toBe('string');
  }
}

/** What an accepted spec must never say. */
function expectSafe(spec: ReturnType<typeof parseJobSpec> & { ok: true }): void {
  const v = spec.value;
  const climbs = (p: string) => p.startsWith('/') || p.split(/[\\/]/).includes('..');
  if (v.workdir !== undefined) expect(climbs(v.workdir)).toBe(false);
  for (const d of v.data ?? []) expect(climbs(d.path)).toBe(false);
  for (const g of v.outputs ?? []) expect(climbs(g)).toBe(false);
  for (const k of Object.keys(v.env ?? {})) expect(k).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
  expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  if (v.env) expect(Object.getPrototypeOf(v.env)).toBe(Object.prototype);
  // Accepted means meant: parsing what was accepted gives it back unchanged.
  const again = parseJobSpec(JSON.parse(JSON.stringify(v)));
  expect(again).toEqual({ ok: true, value: v });
}

describe('spec parsers under generated hostile input', () => {
  it('parseJobSpec: any JSON value or mutated spec is accepted safely or refused naming a field, never thrown', () => {
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 6 }), mutatedSpec, protoJson.map((t) => JSON.parse(t) as unknown)), (input) => {
        const parsed = parseJobSpec(input);
        if (parsed.ok) expectSafe(parsed);
        else expectRefusalNamesAField(new ValidationError('invalid job spec', parsed.issues));
      }),
      { numRuns: RUNS },
    );
  });

  it('an own __proto__ key anywhere is refused, never silently dropped', () => {
    fc.assert(
      fc.property(protoJson, (text) => {
        expect(parseJobSpec(JSON.parse(text)).ok).toBe(false);
      }),
    );
  });

  it('readJsonBody: random bytes, deep nesting and huge bodies give a ValidationError or a value, nothing else', async () => {
    const bodies = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc.jsonValue({ maxDepth: 8 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
      fc.integer({ min: 1, max: 200_000 }).map((d) => Buffer.from('['.repeat(d) + ']'.repeat(d))),
      fc.integer({ min: 1, max: 200_000 }).map((d) => Buffer.from('{"a":'.repeat(d) + '1' + '}'.repeat(d))),
      fc.constant(Buffer.alloc(1024 * 1024 + 1, 0x20)),
      protoJson.map((t) => Buffer.from(t)),
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const outcome = await readJsonBody(request(body, 'application/json')).then(
          (value) => ({ value }),
          (err: unknown) => ({ err }),
        );
        if ('err' in outcome) expectRefusalNamesAField(outcome.err);
        else {
          const parsed = parseJobSpec(outcome.value);
          if (parsed.ok) expectSafe(parsed);
        }
      }),
      { numRuns: Math.min(RUNS, 150) },
    );
  });

  it('readSubmitBody: hostile multipart framing is refused with a ValidationError, never a crash or a hang', async () => {
    const headerLine = fc.oneof(
      fc.constantFrom('Content-Disposition: form-data; name="spec"', 'Content-Disposition: form-data; name="archive"; filename="../../x"', 'Content-Disposition: form-data', 'Content-Type: text/plain'),
      fc.string({ maxLength: 60 }).map((s) => s.replace(/\r|\n/g, '')),
      fc.integer({ min: 1, max: 100 }).map((n) => `X-Pad: ${'y'.repeat(n * 1000)}`),
    );
    const part = fc.record({ headers: fc.array(headerLine, { maxLength: 20 }), body: fc.oneof(fc.string({ maxLength: 80 }), fc.constant('{"command":"true","source":{"archive":true}}')) });
    const body = fc.record({ parts: fc.array(part, { maxLength: 5 }), close: fc.boolean(), junk: fc.string({ maxLength: 20 }) }).map(({ parts, close, junk }) =>
      Buffer.from(junk + parts.map((p) => `--B\r\n${p.headers.join('\r\n')}\r\n\r\n${p.body}\r\n`).join('') + (close ? '--B--\r\n' : '')),
    );
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const outcome = await (async () => {
          const r = await readSubmitBody(request(b, 'multipart/form-data; boundary=B'));
          if (r.archive) {
            const reader = r.archive.stream.getReader();
            while (!(await reader.read()).done);
          }
          return r;
        })().then(
          (value) => ({ value }),
          (err: unknown) => ({ err }),
        );
        if ('err' in outcome) expectRefusalNamesAField(outcome.err);
      }),
      { numRuns: Math.min(RUNS, 150), timeout: 5000 },
    );
  });
});
