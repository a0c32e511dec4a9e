import { createHash } from 'node:crypto';
import { TERMINAL_STATUSES, type JobView, type StoredJobEvent, type WebhookOrder, type WebhookPayload, type WebhookSource } from '../../../../libs/contracts/src';
import { evolveJobView } from '../../../../libs/domain/src';

/** A job's webhook targets: its own `notify` URLs first, then its owner's configured ones (a URL once). */
export function webhookTargets(view: JobView, ownerUrls: readonly string[] = []): { url: string; source: WebhookSource }[] {
  const out: { url: string; source: WebhookSource }[] = [];
  const seen = new Set<string>();
  for (const [url, source] of [...(view.spec.notify ?? []).map((t) => [t.url, 'job'] as const), ...ownerUrls.map((u) => [u, 'owner'] as const)]) {
    if (seen.has(url)) continue;
    seen.add(url);
    out.push({ url, source });
  }
  return out;
}

/**
 * The job as the event `eventId` left it, or null when that event did not end the job. Events
 * decided together (one command: same causation and time, e.g. a failed JobCompleted and its
 * JobRetryScheduled) are folded together, so a failure that is retried sends nothing.
 */
export function endedBy(events: readonly StoredJobEvent[], eventId: string): JobView | null {
  const i = events.findIndex((e) => e.id === eventId);
  if (i < 0) return null;
  let view: JobView | null = null;
  for (let k = 0; k <= i; k++) view = evolveJobView(view, events[k]);
  const ender = events[i].metadata;
  for (let k = i + 1; k < events.length; k++) {
    const m = events[k].metadata;
    if (m.causationId !== ender.causationId || m.occurredAt !== ender.occurredAt) break;
    view = evolveJobView(view, events[k]);
  }
  return view && TERMINAL_STATUSES.has(view.status) ? view : null;
}

/** Stable across re-plans of the same event (a redelivered event plans the same deliveries). */
export const deliveryIdFor = (eventId: string, url: string): string => createHash('sha256').update(`${eventId}\n${url}`).digest('hex').slice(0, 32);

/** The orders of one ended job: one per target, each with the exact body every try sends. */
export function planDeliveries(view: JobView, eventId: string, targets: { url: string; source: WebhookSource }[], publicUrl: string, now: Date): WebhookOrder[] {
  const job = `${publicUrl}/v1/jobs/${view.id}`;
  return targets.map(({ url, source }) => {
    const deliveryId = deliveryIdFor(eventId, url);
    const payload: WebhookPayload = {
      type: 'job.finished',
      deliveryId,
      eventId,
      jobId: view.id,
      owner: view.owner,
      status: view.status as WebhookPayload['status'],
      exitCode: view.exitCode,
      signal: view.signal,
      reason: view.reason,
      attempt: view.attempt,
      submittedAt: view.submittedAt,
      finishedAt: view.finishedAt,
      links: { job, logs: `${job}/logs`, events: `${job}/events`, webhooks: `${job}/webhooks` },
    };
    return { deliveryId, jobId: view.id, owner: view.owner, url, source, body: JSON.stringify(payload), plannedAt: now.toISOString() };
  });
}

/** Wait before try n+1 after try n failed: base·2^(n-1), at most maxMs. */
export const webhookBackoffMs = (attempt: number, baseMs: number, maxMs = 3_600_000): number => Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
