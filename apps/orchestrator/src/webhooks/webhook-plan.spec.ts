import { randomUUID } from 'node:crypto';
import type { JobEvent, StoredJobEvent } from '../../../../libs/contracts/src';
import { deliveryIdFor, endedBy, planDeliveries, webhookBackoffMs, webhookTargets } from './webhook-plan';

const jobId = randomUUID();
let position = 0;
/** Events as the store returns them; `cause` groups the events one command decided. */
function stored(event: JobEvent, cause: string, at: string): StoredJobEvent {
  const p = position++;
  return { ...event, id: `e${p}`, streamRevision: p, position: p, metadata: { version: 1, jobId, occurredAt: at, actor: 'test', causationId: cause, correlationId: jobId } } as StoredJobEvent;
}

const T = '2026-01-01T00:00:00.000Z';
const submitted = stored({ type: 'JobSubmitted', data: { jobId, owner: 'acme', spec: { command: 'x', priority: 'normal', notify: [{ url: 'https://a.example/h' }] }, priority: 'normal', submittedAt: T } }, 'c0', T);
const queued = stored({ type: 'JobQueued', data: { attempt: 1, priority: 'normal', queuedAt: T } }, 'c0', T);
const completed = (attempt: number, exitCode: number, cause: string) =>
  stored({ type: 'JobCompleted', data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 1, finishedAt: T, usage: { cpuMs: 1, maxRssBytes: 1 }, logBytes: 0 } } as JobEvent, cause, T);

describe('webhook planning', () => {
  it('a failure followed (in the same decision) by a retry ends nothing; the last attempt does', () => {
    const failed = completed(1, 1, 'r1');
    const retry = stored({ type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T, reason: 'exit code 1' } }, 'r1', T);
    const last = completed(2, 1, 'r2');
    const events = [submitted, queued, failed, retry, stored({ type: 'JobQueued', data: { attempt: 2, priority: 'normal', queuedAt: T } }, 'q2', T), last];
    expect(endedBy(events, failed.id)).toBeNull();
    expect(endedBy(events, last.id)).toMatchObject({ status: 'failed', exitCode: 1, attempt: 2 });
    expect(endedBy(events, 'unknown')).toBeNull();
  });

  it("targets the job's URLs first, then the owner's, each URL once", () => {
    const view = endedBy([submitted, queued, completed(1, 0, 'c1')], `e${position - 1}`)!;
    expect(webhookTargets(view, ['https://o.example/h', 'https://a.example/h'])).toEqual([
      { url: 'https://a.example/h', source: 'job' },
      { url: 'https://o.example/h', source: 'owner' },
    ]);
    const [order] = planDeliveries(view, 'ev1', webhookTargets(view), 'https://jobline.example.com', new Date(T));
    expect(order.deliveryId).toBe(deliveryIdFor('ev1', 'https://a.example/h'));
    expect(JSON.parse(order.body)).toMatchObject({ type: 'job.finished', jobId, owner: 'acme', status: 'succeeded', exitCode: 0, attempt: 1, finishedAt: T, links: { job: `https://jobline.example.com/v1/jobs/${jobId}` } });
  });

  it('delivery ids are stable per event and URL, different otherwise', () => {
    expect(deliveryIdFor('e', 'u')).toBe(deliveryIdFor('e', 'u'));
    expect(deliveryIdFor('e', 'u')).not.toBe(deliveryIdFor('e', 'v'));
    expect(deliveryIdFor('e', 'u')).toMatch(/^[0-9a-f]{32}$/);
  });

  it('backs off exponentially, capped', () => {
    expect([1, 2, 3, 4].map((n) => webhookBackoffMs(n, 2000))).toEqual([2000, 4000, 8000, 16000]);
    expect(webhookBackoffMs(30, 2000)).toBe(3_600_000);
  });
});
