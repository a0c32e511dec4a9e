import { JobSpecSchema, type JobEvent, type JobSpec } from '../../contracts/src';
import { decide, fold as foldJob, type JobCommand } from './job.decider';
import { LIFECYCLE_VERSION, Lifecycle, type OpenJob } from './lifecycle';

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:01.000Z';
const T2 = '2026-01-01T00:00:02.000Z';
const jobId = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0001';
const plain = JobSpecSchema.parse({ command: ['true'] });
const retrying = JobSpecSchema.parse({ command: 'exit 1', retry: { maxAttempts: 2, backoffSeconds: 1 }, timeoutSeconds: 5 });
const sourced = JobSpecSchema.parse({ command: ['make'], source: { archive: true } });

const submitted = (spec: JobSpec = plain): JobEvent => ({ type: 'JobSubmitted', data: { jobId, owner: 'alice', spec, priority: spec.priority, submittedAt: T0 } });
const queued = (attempt = 1): JobEvent => ({ type: 'JobQueued', data: { attempt, priority: 'normal', queuedAt: T0 } });
const dispatched = (attempt = 1, executorId = 'e1'): JobEvent => ({ type: 'JobDispatched', data: { attempt, executorId, dispatchedAt: T0 } });
const started = (attempt = 1): JobEvent => ({ type: 'JobStarted', data: { attempt, executorId: 'e1', startedAt: T1, sandbox: 'none' } });
const completed = (attempt: number, exitCode: number): JobEvent => ({
  type: 'JobCompleted',
  data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 3 },
});
const cancelRequested: JobEvent = { type: 'JobCancelRequested', data: { requestedBy: 'alice', requestedAt: T1 } };
const lost = (attempt = 1): JobEvent => ({ type: 'JobLost', data: { attempt, executorId: 'e1', reason: 'silent', lostAt: T2 } });

/** Given the events of one job (stored at positions 0, 1, …), the lifecycle holds… */
function given(events: JobEvent[]) {
  const fold = new Lifecycle();
  events.forEach((e, position) => fold.apply(jobId, e, position));
  return {
    thenOpen: (expected: Partial<OpenJob>) => expect(fold.get(jobId)).toMatchObject(expected),
    thenClosed: () => {
      expect(fold.get(jobId)).toBeUndefined();
      expect(fold.size).toBe(0);
    },
    fold,
  };
}

/** The events the real decider records for `commands`, one after the other, from nothing. */
function decided(commands: JobCommand[]): JobEvent[] {
  const events: JobEvent[] = [];
  for (const c of commands) events.push(...decide(c, foldJob(events)));
  return events;
}

describe('lifecycle of open jobs', () => {
  it('holds a submitted job as queued, with its owner, priority, spec and queue position', () =>
    given([submitted(), queued()]).thenOpen({ jobId, owner: 'alice', priority: 'normal', spec: plain, phase: 'queued', attempt: 1, queuedSeq: 1, executorId: null }));

  it('holds a job with a source as packaging until it is packaged and queued', () => {
    given([submitted(sourced)]).thenOpen({ phase: 'packaging', attempt: 0, queuedSeq: null });
    given([submitted(sourced), { type: 'JobPackaged', data: { bundleDigest: 'sha256:ab', size: 1, packagedAt: T1 } }, queued()]).thenOpen({
      phase: 'queued',
      bundleDigest: 'sha256:ab',
      queuedSeq: 2,
    });
  });

  it('lets a job whose packaging failed leave', () => given([submitted(sourced), { type: 'JobPackagingFailed', data: { reason: 'no', failedAt: T1 } }]).thenClosed());

  it('records the dispatch: executor and time', () => given([submitted(), queued(), dispatched()]).thenOpen({ phase: 'dispatched', attempt: 1, executorId: 'e1', dispatchedAt: T0 }));

  it('records the start, and the timeout deadline of the running attempt', () =>
    given([submitted(retrying), queued(), dispatched(), started()]).thenOpen({ phase: 'running', startedAt: T1, timeoutAt: '2026-01-01T00:00:06.000Z' }));

  it('has no timeout deadline for a job without a timeout', () => given([submitted(), queued(), dispatched(), started()]).thenOpen({ phase: 'running', timeoutAt: null }));

  it('lets a completed job leave', () => given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).thenClosed());

  it('lets a job that failed with no retry left leave', () => given([submitted(), queued(), dispatched(), started(), completed(1, 1)]).thenClosed());

  it('keeps a failed job the retry policy allows again waiting for its retry, then with the due time', () => {
    given([submitted(retrying), queued(), dispatched(), started(), completed(1, 1)]).thenOpen({ phase: 'retry_wait', attempt: 1, executorId: null, retryAt: null, timeoutAt: null });
    const events = decided([
      { type: 'SubmitJob', data: { jobId, owner: 'alice', spec: retrying, now: T0 } },
      { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: T0 } },
      { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: T1, sandbox: 'none' } },
      { type: 'RecordFinished', data: { attempt: 1, exitCode: 1, signal: null, oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 0 } },
    ]);
    given(events).thenOpen({ phase: 'retry_wait', attempt: 2, retryAt: '2026-01-01T00:00:03.000Z', executorId: null });
    given([...events, queued(2)]).thenOpen({ phase: 'queued', attempt: 2, retryAt: null, queuedSeq: events.length });
  });

  it('lets the last allowed attempt leave when it fails', () =>
    given([
      submitted(retrying),
      queued(),
      dispatched(),
      completed(1, 1),
      { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T2, reason: 'exit code 1' } },
      queued(2),
      dispatched(2),
      completed(2, 1),
    ]).thenClosed());

  it('waits for a retry after a lost attempt, and lets a lost job without retries leave', () => {
    given([submitted(retrying), queued(), dispatched(), lost()]).thenOpen({ phase: 'retry_wait', executorId: null });
    given([submitted(), queued(), dispatched(), lost()]).thenClosed();
  });

  it('lets a lost job leave when its cancel was requested (the decider cancels it), retry policy or not', () =>
    given([submitted(retrying), queued(), dispatched(), cancelRequested, lost()]).thenClosed());

  it('marks a requested cancel of a running job, with the time it was asked', () =>
    given([submitted(), queued(), dispatched(), started(), cancelRequested]).thenOpen({ phase: 'running', cancelRequested: true, cancelRequestedAt: T1, executorId: 'e1' }));

  it('lets a cancelled, timed-out or failed job leave', () => {
    given([submitted(), queued(), cancelRequested, { type: 'JobCancelled', data: { attempt: null, finishedAt: T1 } }]).thenClosed();
    given([submitted(retrying), queued(), dispatched(), started(), { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 5, finishedAt: T2 } }]).thenClosed();
    given([submitted(), queued(), dispatched(), { type: 'JobFailed', data: { attempt: 1, reason: 'x', finishedAt: T2 } }]).thenClosed();
  });

  it('ignores events of a job it does not hold (finished before, or before the fold began)', () =>
    given([{ type: 'JobPurged', data: { purgedAt: T2, by: 'alice' } }, started()]).thenClosed());

  it('agrees with the decider on the phase and attempt of every open job, event by event', () => {
    const events = decided([
      { type: 'SubmitJob', data: { jobId, owner: 'alice', spec: retrying, now: T0 } },
      { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: T0 } },
      { type: 'MarkLost', data: { attempt: 1, executorId: 'e1', reason: 'gone', now: T1 } },
      { type: 'RequeueJob', data: { attempt: 2, now: T2 } },
      { type: 'DispatchJob', data: { attempt: 2, executorId: 'e2', now: T2 } },
      { type: 'RecordStarted', data: { attempt: 2, executorId: 'e2', startedAt: T2, sandbox: 'none' } },
    ]);
    const fold = new Lifecycle();
    events.forEach((e, i) => {
      fold.apply(jobId, e, i);
      const job = foldJob(events.slice(0, i + 1));
      const open = fold.get(jobId);
      // Right after JobLost the decider's job is failed for a moment: its JobRetryScheduled follows.
      if (e.type === 'JobLost') return expect(open?.phase).toBe('retry_wait');
      expect(open?.phase).toBe(job.phase);
      expect(open?.attempt).toBe(job.attempt);
      expect(open?.executorId ?? null).toBe(job.executorId);
    });
  });

  describe('snapshot', () => {
    it('round-trips through JSON to the same fold and position', () => {
      const { fold } = given([submitted(retrying), queued(), dispatched(), started(), cancelRequested]);
      fold.apply('other', { ...submitted(), data: { ...(submitted().data as object), jobId: 'other' } } as JobEvent, 10);
      const restored = Lifecycle.fromSnapshot(JSON.parse(JSON.stringify(fold.toSnapshot())), fold.position);
      expect(restored).not.toBeNull();
      expect(restored!.position).toBe(10);
      expect([...restored!.values()]).toEqual([...fold.values()]);
      // And it folds on from there as the original does.
      const next = completed(1, 0);
      fold.apply(jobId, next, 11);
      restored!.apply(jobId, next, 11);
      expect(restored!.toSnapshot()).toEqual(fold.toSnapshot());
    });

    it('refuses a snapshot of another version or shape (the caller folds from 0)', () => {
      const { fold } = given([submitted(), queued()]);
      const snap = fold.toSnapshot();
      expect(Lifecycle.fromSnapshot({ ...snap, version: LIFECYCLE_VERSION - 1 }, 1)).toBeNull();
      expect(Lifecycle.fromSnapshot({ ...snap, version: LIFECYCLE_VERSION + 1 }, 1)).toBeNull();
      expect(Lifecycle.fromSnapshot({ version: LIFECYCLE_VERSION, jobs: [{ jobId, phase: 'succeeded', attempt: 1 }] }, 1)).toBeNull();
      expect(Lifecycle.fromSnapshot({ version: LIFECYCLE_VERSION }, 1)).toBeNull();
      expect(Lifecycle.fromSnapshot(null, 1)).toBeNull();
      expect(Lifecycle.fromSnapshot(snap, 1.5)).toBeNull();
    });
  });
});
