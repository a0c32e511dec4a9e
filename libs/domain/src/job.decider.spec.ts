import { ConflictError, IllegalStateError, NotFoundError, NotOwnerError, StaleAttemptError, JobSpecSchema, type JobEvent } from '../../contracts/src';
import { deciderSpec } from '../../testing/src/decider-spec';
import { decide, evolve, initialState, fold, rerunCommand, type Actor, type JobCommand } from './job.decider';

const given = deciderSpec<JobCommand, JobEvent, ReturnType<typeof initialState>>({ decide, evolve, initialState });

const alice: Actor = { id: 'alice', admin: false };
const bob: Actor = { id: 'bob', admin: false };
const root: Actor = { id: 'root', admin: true };
const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:01.000Z';
const T2 = '2026-01-01T00:00:02.000Z';
const jobId = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0001';
const spec = JobSpecSchema.parse({ command: ['true'] });
const retrying = JobSpecSchema.parse({ command: 'exit 1', retry: { maxAttempts: 2, backoffSeconds: 1 }, timeoutSeconds: 5 });

const submitted = (s = spec): JobEvent => ({ type: 'JobSubmitted', data: { jobId, owner: 'alice', spec: s, priority: s.priority, submittedAt: T0 } });
const queued = (attempt = 1): JobEvent => ({ type: 'JobQueued', data: { attempt, priority: 'normal', queuedAt: T0 } });
const dispatched = (attempt = 1): JobEvent => ({ type: 'JobDispatched', data: { attempt, executorId: 'e1', dispatchedAt: T0 } });
const started = (attempt = 1): JobEvent => ({ type: 'JobStarted', data: { attempt, executorId: 'e1', startedAt: T1, sandbox: 'none' } });
const cancelRequested: JobEvent = { type: 'JobCancelRequested', data: { requestedBy: 'alice', requestedAt: T1 } };
const finish = (attempt: number, exitCode: number, signal: string | null = null): JobCommand => ({
  type: 'RecordFinished',
  data: { attempt, exitCode, signal, oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 3 },
});
const completed = (attempt: number, exitCode: number, signal: string | null = null): JobEvent => ({
  type: 'JobCompleted',
  data: { attempt, exitCode, signal, oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 3 },
});

describe('job decider', () => {
  describe('SubmitJob', () => {
    it('records the submission and queues the first attempt', () =>
      given([]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: T0 } }).then([submitted(), queued()]));

    it('waits for packaging when the job carries a source', () => {
      const withSource = JobSpecSchema.parse({ command: ['make'], source: { archive: true } });
      expect(given([]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec: withSource, now: T0 } }).events().map((e) => e.type)).toEqual(['JobSubmitted']);
    });

    it('waits for packaging when the job carries data and no source (its URLs must meet the packager’s guards)', () => {
      const dataOnly = JobSpecSchema.parse({ command: ['cat', 'in.csv'], data: [{ url: 'https://data.example.com/in.csv', path: 'in.csv' }] });
      const events = given([]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec: dataOnly, now: T0 } }).events();
      expect(events.map((e) => e.type)).toEqual(['JobSubmitted']);
      expect(fold(events).phase).toBe('packaging');
      given(events).when({ type: 'RecordPackagingFailed', data: { reason: 'refused', now: T1 } }).then([{ type: 'JobPackagingFailed', data: { reason: 'refused', failedAt: T1 } }]);
    });

    it('does not package a job whose data list is empty', () => {
      const empty = JobSpecSchema.parse({ command: ['true'], data: [] });
      expect(given([]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec: empty, now: T0 } }).events().map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued']);
    });

    it('replays a data-only job recorded before data was packaged (submitted and queued at once) as queued', () => {
      const dataOnly = JobSpecSchema.parse({ command: ['true'], data: [{ url: 'https://data.example.com/x', path: 'x' }] });
      expect(fold([submitted(dataOnly), queued()]).phase).toBe('queued');
    });

    it('keeps the idempotency key', () =>
      expect(given([]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: T0, idempotencyKey: 'k1' } }).events()[0]).toMatchObject({ data: { idempotencyKey: 'k1' } }));

    it('ignores the same submission delivered again', () =>
      given([submitted(), queued()]).when({ type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: T1 } }).thenNothing());

    it('refuses another spec under an existing id', () =>
      given([submitted()]).when({ type: 'SubmitJob', data: { jobId, owner: 'bob', spec, now: T1 } }).thenThrows(ConflictError));
  });

  describe('re-runs (rerunCommand, then SubmitJob)', () => {
    const rerunId = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0002';
    const withSource = JobSpecSchema.parse({ command: ['make'], source: { git: { url: 'https://example.com/r.git', commit: 'a'.repeat(40) } } });
    const packaged: JobEvent = { type: 'JobPackaged', data: { bundleDigest: `sha256:${'b'.repeat(64)}`, size: 42, commit: 'a'.repeat(40), dataDigests: { 'in.txt': 'c'.repeat(64) }, packagedAt: T0 } };
    const finishedWithBundle = fold([submitted(withSource), packaged, queued(), dispatched(), started(), completed(1, 0)]);

    it('submits the same owner and spec with the original bundle, recorded again instead of packaging', () => {
      const command = rerunCommand(finishedWithBundle, { actor: alice, jobId: rerunId, now: T2 });
      expect(command.data).toMatchObject({ jobId: rerunId, owner: 'alice', spec: withSource, rerunOf: { jobId, bundle: { bundleDigest: packaged.data.bundleDigest, size: 42 } } });
      given([])
        .when(command)
        .then([
          { type: 'JobSubmitted', data: { jobId: rerunId, owner: 'alice', spec: withSource, priority: 'normal', submittedAt: T2, rerunOf: jobId } },
          { type: 'JobPackaged', data: { bundleDigest: packaged.data.bundleDigest, size: 42, commit: 'a'.repeat(40), dataDigests: { 'in.txt': 'c'.repeat(64) }, packagedAt: T2 } },
          { type: 'JobQueued', data: { attempt: 1, priority: 'normal', queuedAt: T2 } },
        ]);
    });

    it('a job without a source is queued at once, naming the original', () =>
      given([])
        .when(rerunCommand(fold([submitted(), queued(), dispatched(), started(), completed(1, 3)]), { actor: alice, jobId: rerunId, now: T2 }))
        .then([
          { type: 'JobSubmitted', data: { jobId: rerunId, owner: 'alice', spec, priority: 'normal', submittedAt: T2, rerunOf: jobId } },
          { type: 'JobQueued', data: { attempt: 1, priority: 'normal', queuedAt: T2 } },
        ]));

    it('the same re-run delivered again changes nothing', () => {
      const command = rerunCommand(finishedWithBundle, { actor: alice, jobId: rerunId, now: T2 });
      given(decide(command, initialState())).when(command).thenNothing();
    });

    it('refuses a job that has not finished, was purged, or has a source but no bundle; and an unknown one', () => {
      expect(() => rerunCommand(fold([submitted(), queued(), dispatched()]), { actor: alice, jobId: rerunId, now: T2 })).toThrow(IllegalStateError);
      const purged: JobEvent = { type: 'JobPurged', data: { purgedAt: T2, by: 'alice' } };
      expect(() => rerunCommand(fold([submitted(), queued(), dispatched(), started(), completed(1, 0), purged]), { actor: alice, jobId: rerunId, now: T2 })).toThrow(/purged/);
      const failedPackaging = fold([submitted(withSource), { type: 'JobPackagingFailed', data: { reason: 'no such commit', failedAt: T1 } }]);
      expect(() => rerunCommand(failedPackaging, { actor: alice, jobId: rerunId, now: T2 })).toThrow(/no bundle/);
      expect(() => rerunCommand(initialState(), { actor: alice, jobId: rerunId, now: T2 })).toThrow(NotFoundError);
    });

    it('a SubmitJob naming a re-run of a job with a source but no bundle is refused', () =>
      given([]).when({ type: 'SubmitJob', data: { jobId: rerunId, owner: 'alice', spec: withSource, now: T2, rerunOf: { jobId, bundle: null } } }).thenThrows(IllegalStateError));
  });

  describe('DispatchJob', () => {
    it('dispatches the queued attempt', () =>
      given([submitted(), queued()]).when({ type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: T0 } }).then([dispatched()]));
    it('refuses a job that is not queued', () =>
      given([submitted(), queued(), dispatched()]).when({ type: 'DispatchJob', data: { attempt: 1, executorId: 'e2', now: T0 } }).thenThrows(IllegalStateError));
    it('refuses another attempt than the queued one', () =>
      given([submitted(), queued()]).when({ type: 'DispatchJob', data: { attempt: 2, executorId: 'e1', now: T0 } }).thenThrows(StaleAttemptError));
    it('refuses an unknown job', () => given([]).when({ type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: T0 } }).thenThrows(NotFoundError));
  });

  describe('RecordStarted', () => {
    const start: JobCommand = { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: T1, sandbox: 'none' } };
    it('records the start of the dispatched attempt', () => given([submitted(), queued(), dispatched()]).when(start).then([started()]));
    it('ignores the same report twice', () => given([submitted(), queued(), dispatched(), started()]).when(start).thenNothing());
    it('fences a report from an older attempt', () =>
      given([submitted(), queued(), dispatched(), { type: 'JobLost', data: { attempt: 1, executorId: 'e1', reason: 'x', lostAt: T1 } }, { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T1, reason: 'x' } }, queued(2), dispatched(2)])
        .when(start)
        .thenThrows(StaleAttemptError));
    it('refuses a start before dispatch', () => given([submitted(), queued()]).when(start).thenThrows(StaleAttemptError));
  });

  describe('RecordFinished', () => {
    it("records the log's digest when the executor sent one", () => {
      const digest = 'd'.repeat(64);
      const f = finish(1, 0);
      given([submitted(), queued(), dispatched(), started()])
        .when({ ...f, data: { ...f.data, logSha256: digest } } as JobCommand)
        .then([{ type: 'JobCompleted', data: { ...(completed(1, 0).data as object), logSha256: digest } } as JobEvent]);
    });
    it('completes with exit code 0 (succeeded)', () => {
      given([submitted(), queued(), dispatched(), started()]).when(finish(1, 0)).then([completed(1, 0)]);
      expect(fold([submitted(), queued(), dispatched(), started(), completed(1, 0)]).phase).toBe('succeeded');
    });
    it('completes with a failure exit code (failed, no retry by default)', () => {
      given([submitted(), queued(), dispatched(), started()]).when(finish(1, 3)).then([completed(1, 3)]);
      expect(fold([submitted(), queued(), dispatched(), started(), completed(1, 3)]).phase).toBe('failed');
    });
    it('accepts a finish without a start report (the process never ran)', () =>
      given([submitted(), queued(), dispatched()]).when(finish(1, 127)).then([completed(1, 127)]));
    it('schedules a retry with exponential backoff while attempts remain', () =>
      given([submitted(retrying), queued(), dispatched(), started()])
        .when(finish(1, 1))
        .then([completed(1, 1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: '2026-01-01T00:00:03.000Z', reason: 'exit code 1' } }]));
    it('stops retrying at maxAttempts', () =>
      given([submitted(retrying), queued(), dispatched(), started(), completed(1, 1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T2, reason: '' } }, queued(2), dispatched(2), started(2)])
        .when(finish(2, 1))
        .then([completed(2, 1)]));
    it('turns into a cancellation when one was requested', () =>
      given([submitted(), queued(), dispatched(), started(), cancelRequested])
        .when(finish(1, 143, 'SIGTERM'))
        .then([{ type: 'JobCancelled', data: { attempt: 1, finishedAt: T2, exitCode: 143, signal: 'SIGTERM', usage: null, logBytes: 3 } }]));
    it('never completes twice', () => given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).when(finish(1, 0)).thenNothing());
    it('fences a finish from a stale attempt', () =>
      given([submitted(retrying), queued(), dispatched(), started(), completed(1, 1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T2, reason: '' } }, queued(2), dispatched(2)])
        .when(finish(1, 0))
        .thenThrows(StaleAttemptError));
    it('cannot change a job that timed out with a late finish of another attempt', () =>
      given([submitted(), queued(), dispatched(), started(), { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: T2 } }])
        .when(finish(2, 0))
        .thenThrows(StaleAttemptError));
  });

  describe('TimeOutJob', () => {
    it('times out the running attempt', () =>
      given([submitted(retrying), queued(), dispatched(), started()])
        .when({ type: 'TimeOutJob', data: { attempt: 1, now: T2 } })
        .then([{ type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 5, finishedAt: T2 } }]));
    it('ignores a timeout after the job finished', () =>
      given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).when({ type: 'TimeOutJob', data: { attempt: 1, now: T2 } }).thenNothing());
    it('refuses a timeout of a queued job', () => given([submitted(), queued()]).when({ type: 'TimeOutJob', data: { attempt: 1, now: T2 } }).thenThrows(StaleAttemptError));
    const timedOut: JobEvent = { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: T2 } };
    const stopped: JobEvent = {
      type: 'JobAttemptStopped',
      data: { attempt: 1, exitCode: 143, signal: 'SIGTERM', oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 3 },
    };
    it("records the stopped attempt's report (usage, log bytes) after the timeout, changing no status", () =>
      given([submitted(), queued(), dispatched(), started(), timedOut]).when(finish(1, 143, 'SIGTERM')).then([stopped]));
    it('records it once', () => given([submitted(), queued(), dispatched(), started(), timedOut, stopped]).when(finish(1, 143, 'SIGTERM')).thenNothing());
    it('stays timed out once the report is recorded', () =>
      expect(fold([submitted(), queued(), dispatched(), started(), timedOut, stopped])).toMatchObject({ phase: 'timed_out', attemptReported: true }));
    it("ignores a report of an older attempt", () =>
      given([submitted(), queued(), dispatched(), started(), timedOut]).when(finish(2, 0)).thenThrows(StaleAttemptError));
  });

  describe('RequestCancel', () => {
    const cancel: JobCommand = { type: 'RequestCancel', data: { actor: alice, now: T1 } };
    it('cancels a queued job at once', () =>
      given([submitted(), queued()]).when(cancel).then([cancelRequested, { type: 'JobCancelled', data: { attempt: null, finishedAt: T1 } }]));
    it('asks the executor to stop a running job', () => given([submitted(), queued(), dispatched(), started()]).when(cancel).then([cancelRequested]));
    it('is idempotent while the stop is pending', () => given([submitted(), queued(), dispatched(), started(), cancelRequested]).when(cancel).thenNothing());
    it('refuses a finished job', () => given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).when(cancel).thenThrows(IllegalStateError));
    it('refuses an unknown job', () => given([]).when(cancel).thenThrows(NotFoundError));
  });

  describe('who may cancel, purge or re-run (the actor)', () => {
    const running = [submitted(), queued(), dispatched(), started()];
    const finished = [...running, completed(1, 0)];
    const cancelBy = (actor: Actor): JobCommand => ({ type: 'RequestCancel', data: { actor, now: T1 } });
    const purgeBy = (actor: Actor): JobCommand => ({ type: 'PurgeJob', data: { actor, now: T2 } });

    it("refuses another owner's cancel as if the job did not exist", () => {
      given(running).when(cancelBy(bob)).thenThrows(NotOwnerError);
      given(running).when(cancelBy(bob)).thenThrows(NotFoundError);
    });
    it("refuses another owner's cancel of a finished job as not found, not as finished (nothing is told of it)", () =>
      given(finished).when(cancelBy(bob)).thenThrows(NotOwnerError));
    it('records an admin who cancels as the one who asked, not the owner', () =>
      given(running).when(cancelBy(root)).then([{ type: 'JobCancelRequested', data: { requestedBy: 'root', requestedAt: T1 } }]));
    it('keeps the reason an admin gives', () =>
      given(running)
        .when({ type: 'RequestCancel', data: { actor: root, reason: 'runaway', now: T1 } })
        .then([{ type: 'JobCancelRequested', data: { requestedBy: 'root', requestedAt: T1, reason: 'runaway' } }]));

    it("refuses another owner's purge as if the job did not exist", () => given(finished).when(purgeBy(bob)).thenThrows(NotOwnerError));
    it("refuses another owner's purge of a running job as not found (the owner check comes first)", () => given(running).when(purgeBy(bob)).thenThrows(NotOwnerError));
    it('records the admin who purges', () => given(finished).when(purgeBy(root)).then([{ type: 'JobPurged', data: { purgedAt: T2, by: 'root' } }]));
    it('lets a retention policy purge, acting with admin rights', () =>
      given(finished).when(purgeBy({ id: 'retention:global', admin: true })).then([{ type: 'JobPurged', data: { purgedAt: T2, by: 'retention:global' } }]));

    it("refuses another owner's re-run as if the job did not exist", () =>
      expect(() => rerunCommand(fold(finished), { actor: bob, jobId: '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0009', now: T2 })).toThrow(NotOwnerError));
    it("lets an admin re-run another owner's job: the new job is still the owner's", () =>
      expect(rerunCommand(fold(finished), { actor: root, jobId: '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0009', now: T2 }).data).toMatchObject({ owner: 'alice', rerunOf: { jobId } }));
  });

  describe('ForceCancel', () => {
    it('closes a job whose executor never confirmed the stop', () =>
      given([submitted(), queued(), dispatched(), started(), cancelRequested])
        .when({ type: 'ForceCancel', data: { attempt: 1, now: T2 } })
        .then([{ type: 'JobCancelled', data: { attempt: 1, finishedAt: T2, forced: true } }]));
    it("records the executor's late report after a forced cancel, once; a confirmed cancel already carries it", () => {
      const forced: JobEvent = { type: 'JobCancelled', data: { attempt: 1, finishedAt: T2, forced: true } };
      given([submitted(), queued(), dispatched(), started(), cancelRequested, forced])
        .when(finish(1, 143, 'SIGTERM'))
        .then([{ type: 'JobAttemptStopped', data: { attempt: 1, exitCode: 143, signal: 'SIGTERM', oomKilled: false, durationMs: 5, finishedAt: T2, usage: null, logBytes: 3 } }]);
      const confirmed: JobEvent = { type: 'JobCancelled', data: { attempt: 1, finishedAt: T2, exitCode: 143, signal: 'SIGTERM', usage: null, logBytes: 3 } };
      given([submitted(), queued(), dispatched(), started(), cancelRequested, confirmed]).when(finish(1, 143, 'SIGTERM')).thenNothing();
      given([submitted(), queued(), cancelRequested, { type: 'JobCancelled', data: { attempt: null, finishedAt: T1 } }]).when(finish(1, 0)).thenNothing();
    });
    it('needs a cancel request', () =>
      given([submitted(), queued(), dispatched(), started()]).when({ type: 'ForceCancel', data: { attempt: 1, now: T2 } }).thenThrows(IllegalStateError));
  });

  describe('MarkLost', () => {
    const lost: JobCommand = { type: 'MarkLost', data: { attempt: 1, executorId: 'e1', reason: 'executor restarted', now: T2 } };
    const lostEvent: JobEvent = { type: 'JobLost', data: { attempt: 1, executorId: 'e1', reason: 'executor restarted', lostAt: T2 } };
    it('fails the job when no retry is allowed', () =>
      given([submitted(), queued(), dispatched(), started()])
        .when(lost)
        .then([lostEvent, { type: 'JobFailed', data: { attempt: 1, reason: 'executor e1 lost the attempt: executor restarted', finishedAt: T2 } }]));
    it('schedules a retry when allowed', () =>
      expect(given([submitted(retrying), queued(), dispatched()]).when(lost).events().map((e) => e.type)).toEqual(['JobLost', 'JobRetryScheduled']));
    it('cancels when a cancel was pending', () =>
      expect(given([submitted(), queued(), dispatched(), cancelRequested]).when(lost).events().map((e) => e.type)).toEqual(['JobLost', 'JobCancelled']));
    it('fences a stale attempt', () => given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).when(lost).thenThrows(StaleAttemptError));
  });

  describe('RequeueJob', () => {
    const waiting = [submitted(retrying), queued(), dispatched(), started(), completed(1, 1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T2, reason: '' } } as JobEvent];
    it('queues the scheduled retry', () => given(waiting).when({ type: 'RequeueJob', data: { attempt: 2, now: T2 } }).then([{ type: 'JobQueued', data: { attempt: 2, priority: 'normal', queuedAt: T2 } }]));
    it('refuses another attempt', () => given(waiting).when({ type: 'RequeueJob', data: { attempt: 3, now: T2 } }).thenThrows(StaleAttemptError));
    it('refuses a job that is not waiting', () => given([submitted(), queued()]).when({ type: 'RequeueJob', data: { attempt: 1, now: T2 } }).thenThrows(IllegalStateError));
  });

  describe('packaging', () => {
    const withSource = JobSpecSchema.parse({ command: ['make'], source: { archive: true } });
    const sub: JobEvent = { type: 'JobSubmitted', data: { jobId, owner: 'alice', spec: withSource, priority: 'normal', submittedAt: T0 } };
    it('queues once packaged', () =>
      expect(given([sub]).when({ type: 'RecordPackaged', data: { bundleDigest: 'sha256:ab', size: 10, now: T1 } }).events().map((e) => e.type)).toEqual(['JobPackaged', 'JobQueued']));
    it('fails when packaging fails', () =>
      given([sub]).when({ type: 'RecordPackagingFailed', data: { reason: 'no such commit', now: T1 } }).then([{ type: 'JobPackagingFailed', data: { reason: 'no such commit', failedAt: T1 } }]));
  });

  describe('PurgeJob', () => {
    it('purges a finished job once', () => {
      given([submitted(), queued(), dispatched(), started(), completed(1, 0)]).when({ type: 'PurgeJob', data: { actor: alice, now: T2 } }).then([{ type: 'JobPurged', data: { purgedAt: T2, by: 'alice' } }]);
      given([submitted(), queued(), dispatched(), started(), completed(1, 0), { type: 'JobPurged', data: { purgedAt: T2, by: 'alice' } }]).when({ type: 'PurgeJob', data: { actor: alice, now: T2 } }).thenNothing();
    });
    it('refuses a running job', () => given([submitted(), queued(), dispatched()]).when({ type: 'PurgeJob', data: { actor: alice, now: T2 } }).thenThrows(IllegalStateError));
  });
});
