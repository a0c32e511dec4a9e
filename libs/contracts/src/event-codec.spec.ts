import { decodeJobEvent, encodeJobEvent } from './event-codec';
import { EVENT_DATA_SCHEMAS } from './schemas/event-data.schemas';

const JOB = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0001';
const T = '2026-01-01T00:00:00.000Z';
const meta = (version: number) => ({ version, jobId: JOB, occurredAt: T, actor: 'alice', causationId: null, correlationId: JOB });
const v1Completed = { attempt: 1, exitCode: 0, signal: null, oomKilled: false, durationMs: 3, finishedAt: T, usage: null, logBytes: 0 };

describe('event codec: version 2 of JobSubmitted (rerunOf) and JobCompleted (logSha256)', () => {
  it('writes the current versions', () => {
    const rec = encodeJobEvent({ type: 'JobCompleted', data: { ...v1Completed, logSha256: 'a'.repeat(64) } }, { id: 'e1', jobId: JOB, occurredAt: T, actor: 'x', causationId: null, correlationId: JOB });
    expect(rec.metadata.version).toBe(2);
  });

  it('reads a version 1 event, stored before the field existed, as a valid version 2 without it', () => {
    const completed = decodeJobEvent({ id: 'e1', type: 'JobCompleted', data: v1Completed, metadata: meta(1), revision: 5, position: 9 });
    expect(completed.metadata.version).toBe(2);
    expect(completed.data).toEqual(v1Completed);
    expect(EVENT_DATA_SCHEMAS.JobCompleted.safeParse(completed.data).success).toBe(true);
    const submittedData = { jobId: JOB, owner: 'alice', spec: { command: 'true', priority: 'normal' }, priority: 'normal', submittedAt: T };
    const submitted = decodeJobEvent({ id: 'e0', type: 'JobSubmitted', data: submittedData, metadata: meta(1), revision: 0, position: 1 });
    expect(submitted.metadata.version).toBe(3);
    expect(EVENT_DATA_SCHEMAS.JobSubmitted.safeParse(submitted.data).success).toBe(true);
  });

  it('reads a version 2 JobSubmitted of a staged job as version 3: its steps stop at the first failure, as they did', () => {
    const data = { jobId: JOB, owner: 'alice', spec: { steps: [{ name: 'a', run: 'true' }], priority: 'normal' }, priority: 'normal', submittedAt: T, rerunOf: JOB };
    const submitted = decodeJobEvent({ id: 'e0', type: 'JobSubmitted', data, metadata: meta(2), revision: 0, position: 1 });
    expect(submitted.metadata.version).toBe(3);
    expect(submitted.data).toEqual(data);
    expect(EVENT_DATA_SCHEMAS.JobSubmitted.safeParse(submitted.data).success).toBe(true);
    const v3 = { ...data, spec: { steps: [{ name: 'a', run: 'true', continueOnFailure: true, outputs: ['out/*'] }], priority: 'normal' } };
    expect(EVENT_DATA_SCHEMAS.JobSubmitted.safeParse({ ...data, spec: { steps: [{ name: 'a', run: 'true', outputs: ['../x'] }], priority: 'normal' } }).success).toBe(false);
    expect(EVENT_DATA_SCHEMAS.JobSubmitted.safeParse(v3).success).toBe(true);
    expect(EVENT_DATA_SCHEMAS.JobSubmitted.safeParse({ ...data, spec: { steps: [{ name: 'a', run: 'true', continueOnFailure: 'yes' }], priority: 'normal' } }).success).toBe(false);
  });

  it('the schemas take the new fields and refuse a malformed digest', () => {
    expect(EVENT_DATA_SCHEMAS.JobCompleted.safeParse({ ...v1Completed, logSha256: 'a'.repeat(64) }).success).toBe(true);
    expect(EVENT_DATA_SCHEMAS.JobCompleted.safeParse({ ...v1Completed, logSha256: 'not-hex' }).success).toBe(false);
  });
});
