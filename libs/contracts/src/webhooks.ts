import { z } from 'zod';
import { JobIdSchema, OwnerSchema } from './ids';

/**
 * Completion webhooks (README "Webhooks"): what Jobline POSTs when a job ends, how it signs
 * it, and the bus messages of the reactor that delivers it (orders and attempt records).
 * Runtime-neutral: zod only; the HMAC is computed in libs/webhooks.
 */

/** Headers of every delivery. */
export const WEBHOOK_HEADERS = {
  /** `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`; more v1= entries may follow during a secret rotation. */
  signature: 'Jobline-Signature',
  /** The delivery's id: the same on every retry of one delivery, for dedupe by the receiver. */
  delivery: 'Jobline-Delivery',
  /** 1 on the first try. */
  attempt: 'Jobline-Attempt',
  /** The payload's type, `job.finished`. */
  event: 'Jobline-Event',
} as const;

/** Terminal job events a webhook is sent for (when they end the job: not a failure followed by a retry). */
export const WEBHOOK_TRIGGER_EVENTS = ['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut', 'JobPackagingFailed'] as const;

const Iso = z.string().datetime({ offset: true });

/** Where a target came from: the job's `notify`, or its owner's configured URLs. */
export const WebhookSourceSchema = z.enum(['job', 'owner']);
export type WebhookSource = z.infer<typeof WebhookSourceSchema>;

/** The JSON body POSTed to a webhook when a job ends. */
export const WebhookPayloadSchema = z
  .strictObject({
    type: z.literal('job.finished'),
    deliveryId: z.string().describe('Same as the Jobline-Delivery header'),
    eventId: z.string().describe('The id of the stored event that ended the job'),
    jobId: JobIdSchema,
    owner: OwnerSchema,
    status: z.enum(['succeeded', 'failed', 'cancelled', 'timed_out']),
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    reason: z.string().nullable(),
    attempt: z.number().int().min(0),
    submittedAt: Iso,
    finishedAt: Iso.nullable(),
    links: z.strictObject({
      job: z.string().describe('GET: the JobView over REST'),
      logs: z.string().describe('GET: the log as text'),
      events: z.string().describe("GET: the job's history"),
      webhooks: z.string().describe('GET: the delivery attempts of this job'),
    }),
  })
  .describe('The body of a completion webhook (Jobline → the receiver)');
export type WebhookPayload = z.infer<typeof WebhookPayloadSchema>;

/** `jobline.hook.order.<jobId>`: one delivery to make, planned from the event that ended the job. */
export const WebhookOrderSchema = z
  .strictObject({
    deliveryId: z.string().min(1).max(128),
    jobId: JobIdSchema,
    owner: OwnerSchema,
    url: z.string().min(1).max(2048),
    source: WebhookSourceSchema,
    /** The exact body sent on every try (only the signature's timestamp changes). */
    body: z.string(),
    plannedAt: Iso,
  })
  .describe('A webhook delivery to make (orchestrator → its webhook reactor)');
export type WebhookOrder = z.infer<typeof WebhookOrderSchema>;

/**
 * delivered: 2xx. retrying: a network error, a timeout, 408, 429 or 5xx; tried again later.
 * failed: gave up (another status, or the last attempt failed). refused: never requested
 * (the address guard, http not allowed, no secret for the owner).
 */
export const WebhookOutcomeSchema = z.enum(['delivered', 'retrying', 'failed', 'refused']);
export type WebhookOutcome = z.infer<typeof WebhookOutcomeSchema>;

/** `jobline.hook.rec.<jobId>`: the outcome of one delivery attempt, kept on the JOBLINE_HOOK_REC stream. */
export const WebhookAttemptSchema = z
  .strictObject({
    deliveryId: z.string(),
    jobId: JobIdSchema,
    url: z.string(),
    source: WebhookSourceSchema,
    attempt: z.number().int().min(1),
    maxAttempts: z.number().int().min(1),
    outcome: WebhookOutcomeSchema,
    statusCode: z.number().int().nullable().describe('The HTTP status received; null when none was (refused, network error, timeout)'),
    error: z.string().nullable(),
    at: Iso.describe('When the attempt ended'),
    durationMs: z.number().int().min(0),
    nextAttemptAt: Iso.nullable().describe('When it is tried again (outcome retrying)'),
  })
  .describe('The outcome of one webhook delivery attempt');
export type WebhookAttempt = z.infer<typeof WebhookAttemptSchema>;

/** One delivery as GET /v1/jobs/{id}/webhooks shows it: its latest state and every attempt. */
export interface WebhookDeliveryView {
  deliveryId: string;
  url: string;
  source: WebhookSource;
  state: WebhookOutcome;
  attempts: WebhookAttempt[];
}

/** The deliveries of a job, in the order their first attempt was recorded. */
export function webhookDeliveries(attempts: readonly WebhookAttempt[]): WebhookDeliveryView[] {
  const byId = new Map<string, WebhookDeliveryView>();
  for (const a of attempts) {
    let d = byId.get(a.deliveryId);
    if (!d) {
      d = { deliveryId: a.deliveryId, url: a.url, source: a.source, state: a.outcome, attempts: [] };
      byId.set(a.deliveryId, d);
    }
    // At-least-once records: the same attempt may be recorded twice; the later copy wins.
    const same = d.attempts.findIndex((x) => x.attempt === a.attempt);
    if (same >= 0) d.attempts[same] = a;
    else d.attempts.push(a);
    d.attempts.sort((x, y) => x.attempt - y.attempt);
    d.state = d.attempts[d.attempts.length - 1].outcome;
  }
  return [...byId.values()];
}
