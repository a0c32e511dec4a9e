import type { JobEvent } from '../../contracts/src';
import { attemptLogEnd } from './log-end';

const at = '2026-01-01T00:00:00.000Z';
const queued = (attempt: number): JobEvent => ({ type: 'JobQueued', data: { attempt, priority: 'normal', queuedAt: at } });
const dispatched = (attempt: number): JobEvent => ({ type: 'JobDispatched', data: { attempt, executorId: 'x', dispatchedAt: at } });
const completed = (attempt: number, logBytes: number, exitCode = 0): JobEvent => ({
  type: 'JobCompleted',
  data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 1, finishedAt: at, usage: null, logBytes },
});

describe('attemptLogEnd: where an attempt’s log ends, from its job’s history', () => {
  it('a running attempt is not over', () => {
    expect(attemptLogEnd([queued(1), dispatched(1)], 1)).toEqual({ over: false, recordedBytes: null, purged: false });
  });

  it('JobCompleted records the length; a confirmed cancel too; a forced one does not', () => {
    expect(attemptLogEnd([queued(1), dispatched(1), completed(1, 42)], 1)).toEqual({ over: true, recordedBytes: 42, purged: false });
    expect(attemptLogEnd([dispatched(1), { type: 'JobCancelled', data: { attempt: 1, finishedAt: at, logBytes: 7 } }], 1).recordedBytes).toBe(7);
    expect(attemptLogEnd([dispatched(1), { type: 'JobCancelled', data: { attempt: 1, finishedAt: at, forced: true } }], 1)).toEqual({ over: true, recordedBytes: null, purged: false });
  });

  it('timed out, lost or failed: over without a length (unless the event carries one)', () => {
    expect(attemptLogEnd([dispatched(1), { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: at } }], 1)).toEqual({ over: true, recordedBytes: null, purged: false });
    expect(attemptLogEnd([dispatched(1), { type: 'JobLost', data: { attempt: 1, executorId: 'x', reason: 'r', lostAt: at } }], 1).over).toBe(true);
    const timedOutWithLength = { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: at, logBytes: 5 } } as unknown as JobEvent;
    expect(attemptLogEnd([dispatched(1), timedOutWithLength], 1).recordedBytes).toBe(5);
  });

  it("timed out, then the stopped attempt's report: its log length is known", () => {
    const stopped: JobEvent = {
      type: 'JobAttemptStopped',
      data: { attempt: 1, exitCode: 143, signal: 'SIGTERM', oomKilled: false, durationMs: 1, finishedAt: at, usage: null, logBytes: 7 },
    };
    const timedOut: JobEvent = { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: at } };
    expect(attemptLogEnd([dispatched(1), timedOut, stopped], 1)).toEqual({ over: true, recordedBytes: 7, purged: false });
  });

  it('a later attempt supersedes an earlier one; events of other attempts do not end it', () => {
    const history = [dispatched(1), completed(1, 10, 1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: at, reason: 'exit 1' } } as JobEvent, queued(2), dispatched(2)];
    expect(attemptLogEnd(history, 1)).toEqual({ over: true, recordedBytes: 10, purged: false });
    expect(attemptLogEnd(history, 2).over).toBe(false);
    expect(attemptLogEnd([dispatched(1), { type: 'JobLost', data: { attempt: 1, executorId: 'x', reason: 'r', lostAt: at } }, queued(2)], 1)).toEqual({ over: true, recordedBytes: null, purged: false });
  });

  it('a job cancelled or failed before any attempt ran, or failed packaging, ends every attempt; a purge leaves nothing', () => {
    expect(attemptLogEnd([queued(1), { type: 'JobCancelled', data: { attempt: null, finishedAt: at } }], 1).over).toBe(true);
    expect(attemptLogEnd([{ type: 'JobPackagingFailed', data: { reason: 'x', failedAt: at } }], 1).over).toBe(true);
    expect(attemptLogEnd([dispatched(1), completed(1, 3), { type: 'JobPurged', data: { purgedAt: at, by: 'me' } }], 1)).toEqual({ over: true, recordedBytes: 3, purged: true });
  });
});
