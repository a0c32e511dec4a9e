import type { JetStreamClient } from '@nats-io/jetstream';
import { STREAMS, WebhookAttemptSchema, parseWith, subjects, type WebhookAttempt } from '../../contracts/src';

/**
 * Every recorded webhook delivery attempt of a job, in the order they were recorded, read
 * with an ordered consumer on the job's one subject of JOBLINE_HOOK_REC (nats-server 2.9).
 * Malformed records are skipped. `limit` bounds the read (default 10,000).
 */
export async function readWebhookAttempts(js: JetStreamClient, jobId: string, limit = 10_000): Promise<WebhookAttempt[]> {
  const out: WebhookAttempt[] = [];
  const consumer = await js.consumers.get(STREAMS.webhookAttempts, { filter_subjects: subjects.webhookAttempts(jobId) });
  try {
    let remaining = Math.min(limit, (await consumer.info(true)).num_pending);
    if (remaining === 0) return out;
    const messages = await consumer.consume({ max_messages: Math.min(remaining, 256) });
    try {
      for await (const m of messages) {
        remaining--;
        let raw: unknown;
        try {
          raw = m.json();
        } catch {
          raw = undefined;
        }
        const parsed = parseWith(WebhookAttemptSchema, raw);
        if (parsed.ok) out.push(parsed.value);
        if (remaining <= 0 || m.info.pending === 0) break;
      }
    } finally {
      await messages.close();
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
  return out;
}
