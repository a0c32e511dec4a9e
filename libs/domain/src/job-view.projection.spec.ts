import { JobSpecSchema, type JobEvent, type JobView } from '../../contracts/src';
import { evolveJobView } from './job-view.projection';

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:01.000Z';
const T2 = '2026-01-01T00:00:02.000Z';
const jobId = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0001';
const spec = JobSpecSchema.parse({ command: 'exit 1', retry: { maxAttempts: 2, backoffSeconds: 1 } });
const usage = { cpuMs: 12, maxRssBytes: 4096 };

const submitted: JobEvent = { type: 'JobSubmitted', data: { jobId, owner: 'alice', spec, priority: 'normal', submittedAt: T0 } };
const queued = (attempt = 1): JobEvent => ({ type: 'JobQueued', data: { attempt, priority: 'normal', queuedAt: T0 } });
const dispatched = (attempt = 1): JobEvent => ({ type: 'JobDispatched', data: { attempt, executorId: 'e1', dispatchedAt: T0 } });
const started = (attempt = 1): JobEvent => ({ type: 'JobStarted', data: { attempt, executorId: 'e1', startedAt: T1, sandbox: 'none' } });
const cancelRequested = (reason?: string): JobEvent => ({ type: 'JobCancelRequested', data: { requestedBy: 'alice', requestedAt: T1, ...(reason ? { reason } : {}) } });
const failedAttempt: JobEvent = {
  type: 'JobCompleted',
  data: { attempt: 1, exitCode: 1, signal: null, oomKilled: false, durationMs: 5, finishedAt: T2, usage, logBytes: 3 },
};

const view = (events: JobEvent[]): JobView => events.reduce<JobView | null>((v, e) => evolveJobView(v, e), null)!;

describe('job view fold', () => {
  it("shows a cancel's reason once cancelled, and while the cancel is pending", () => {
    const running = [submitted, queued(), dispatched(), started()];
    expect(view([...running, cancelRequested('superseded')])).toMatchObject({ status: 'running', reason: 'cancel requested: superseded' });
    expect(view([...running, cancelRequested('superseded'), { type: 'JobCancelled', data: { attempt: 1, finishedAt: T2 } }])).toMatchObject({
      status: 'cancelled',
      reason: 'cancelled: superseded',
    });
    expect(view([...running, cancelRequested('superseded'), { type: 'JobCancelled', data: { attempt: 1, finishedAt: T2, forced: true } }]).reason).toBe(
      'cancelled (executor did not confirm the stop): superseded',
    );
    expect(view([submitted, queued(), cancelRequested(), { type: 'JobCancelled', data: { attempt: null, finishedAt: T1 } }]).reason).toBe('cancelled');
  });

  it("a timed-out job's view has the stopped attempt's usage and log bytes, still timed out", () => {
    const timedOut: JobEvent = { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: T2 } };
    const stopped: JobEvent = {
      type: 'JobAttemptStopped',
      data: { attempt: 1, exitCode: 143, signal: 'SIGTERM', oomKilled: false, durationMs: 1005, finishedAt: T2, usage, logBytes: 2048 },
    };
    expect(view([submitted, queued(), dispatched(), started(), timedOut, stopped])).toMatchObject({
      status: 'timed_out',
      reason: 'timed out after 1s',
      exitCode: 143,
      signal: 'SIGTERM',
      usage,
      logBytes: 2048,
    });
  });

  it('keeps the cancel reason when the executor is lost while the cancel is pending', () => {
    const lost: JobEvent = { type: 'JobLost', data: { attempt: 1, executorId: 'e1', reason: 'heartbeat lease expired', lostAt: T2 } };
    expect(view([submitted, queued(), dispatched(), cancelRequested('stop it'), lost, { type: 'JobCancelled', data: { attempt: 1, finishedAt: T2 } }]).reason).toBe(
      'cancelled: stop it',
    );
  });

  it("a retried job waiting says why; running again it shows none of the old attempt's failure", () => {
    const retry: JobEvent = { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T2, reason: 'exit code 1' } };
    const history = [submitted, queued(), dispatched(), started(), failedAttempt, retry];
    expect(view(history)).toMatchObject({ status: 'queued', attempt: 2, reason: 'exit code 1' });
    expect(view([...history, dispatched(2)])).toMatchObject({ status: 'running', attempt: 2, reason: null, exitCode: null, signal: null });
    expect(view([...history, dispatched(2), started(2)])).toMatchObject({ status: 'running', attempt: 2, reason: null, exitCode: null });
  });
});
