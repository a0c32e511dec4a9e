import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/nats-core';
import {
  STREAMS,
  WEBHOOK_HEADERS,
  WEBHOOK_TRIGGER_EVENTS,
  WebhookOrderSchema,
  decodeJobEvent,
  jobStreamName,
  parseWith,
  subjects,
  type JobEventMessage,
  type WebhookAttempt,
  type WebhookOutcome,
} from '../../../../libs/contracts/src';
import type { WebhooksFile } from '../../../../libs/config/src';
import type { EventStore } from '../../../../libs/event-store/src/event-store.port';
import { postWebhook, signWebhook, type DeliveryPolicy, type PostResult } from '../../../../libs/webhooks/src';
import type { Logger } from '../logger';
import { endedBy, planDeliveries, webhookBackoffMs, webhookTargets } from './webhook-plan';

export interface WebhookReactorOptions {
  nc: NatsConnection;
  /** Where the job that ended is read from (the orchestrator's store). */
  eventStore: EventStore;
  /** Per-owner secrets and URLs (JOBLINE_WEBHOOKS_FILE); an owner missing here gets no deliveries. */
  owners: WebhooksFile['owners'];
  /** http, private ranges, request timeout. */
  policy: DeliveryPolicy;
  /** Tries per delivery (default 8). */
  maxAttempts?: number;
  /** Wait before the second try, doubled after each (default 2000 ms, at most 1 hour). */
  backoffMs?: number;
  /** Base of the links in payloads, e.g. https://jobline.example.com. */
  publicUrl: string;
  logger: Logger;
  clock?: () => Date;
  /** Deliveries in flight at once, per process (default 64). */
  concurrency?: number;
  /** Told of every recorded attempt (metrics); must not throw. */
  onAttempt?: (attempt: WebhookAttempt) => void;
}

/** Orders the server lets the deliverer hold unsettled, retries waiting out their backoff included: a receiver that is down must not hold up everyone else's. */
export const DELIVERER_MAX_ACK_PENDING = 20_000;

/** Durable consumer names: shared by every orchestrator, so each event and each delivery is handled by one of them. */
export const WEBHOOK_DURABLES = {
  planner: (eventType: string) => `webhooks-plan-${eventType}`,
  deliverer: 'webhooks-deliver',
} as const;

/**
 * The webhook reactor: never in the way of a job's completion. It consumes the terminal
 * events the relay published (one durable consumer per event type: nats-server 2.9 has one
 * filter per consumer), plans one order per target on JOBLINE_HOOK_ORDERS, and delivers
 * each order from its own durable consumer: signed, guarded, retried with exponential
 * backoff (a nak with delay, so the wait is the server's and survives a restart), every
 * attempt's outcome recorded on JOBLINE_HOOK_REC before the order is settled. At least once:
 * a receiver dedupes by the Jobline-Delivery header.
 */
export class WebhookReactor {
  private readonly js: JetStreamClient;
  private readonly maxAttempts: number;
  private readonly backoffMs: number;
  private readonly clock: () => Date;
  private readonly concurrency: number;
  private readonly loops: Promise<void>[] = [];
  private readonly iterators: ConsumerMessages[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly o: WebhookReactorOptions) {
    this.js = jetstream(o.nc);
    this.maxAttempts = o.maxAttempts ?? 8;
    this.backoffMs = o.backoffMs ?? 2000;
    this.clock = o.clock ?? (() => new Date());
    this.concurrency = o.concurrency ?? 64;
  }

  async start(): Promise<void> {
    const jsm = await jetstreamManager(this.o.nc);
    const ackWait = (this.o.policy.timeoutMs ?? 10_000) + 30_000;
    const base: Partial<ConsumerConfig> = { ack_policy: AckPolicy.Explicit, max_deliver: -1, max_ack_pending: 1000 };
    const deliverer = { ...base, max_ack_pending: DELIVERER_MAX_ACK_PENDING };
    for (const type of WEBHOOK_TRIGGER_EVENTS) {
      // New: jobs that ended before webhooks existed in this deployment are not announced on first start.
      await ensureConsumer(jsm, STREAMS.events, { ...base, durable_name: WEBHOOK_DURABLES.planner(type), filter_subject: `jobline.evt.*.${type}`, deliver_policy: DeliverPolicy.New, ack_wait: nanos(30_000) });
    }
    await ensureConsumer(jsm, STREAMS.webhookOrders, { ...deliverer, durable_name: WEBHOOK_DURABLES.deliverer, filter_subject: subjects.webhookOrdersAll, deliver_policy: DeliverPolicy.All, ack_wait: nanos(ackWait) });
    for (const type of WEBHOOK_TRIGGER_EVENTS) this.loops.push((await this.run(STREAMS.events, WEBHOOK_DURABLES.planner(type), (m) => this.plan(m))).loop);
    this.loops.push((await this.run(STREAMS.webhookOrders, WEBHOOK_DURABLES.deliverer, (m) => this.deliver(m))).loop);
  }

  /** Stops pulling, hands back what was pulled but not started, waits for the requests in flight (each bounded by the timeout). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const it of this.iterators) await it.close();
    await Promise.allSettled(this.loops);
    await Promise.allSettled([...this.inFlight]);
  }

  private async run(stream: string, durable: string, handle: (m: JsMsg) => Promise<void>): Promise<{ loop: Promise<void> }> {
    const consumer = await this.js.consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: Math.min(this.concurrency, 256) });
    this.iterators.push(messages);
    const loop = (async () => {
      for await (const m of messages) {
        if (this.stopped) {
          m.nak();
          continue;
        }
        while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
        const p: Promise<void> = handle(m)
          .catch((err: unknown) => {
            const why = err instanceof Error ? err.message : String(err);
            // A transient failure (the store, the bus): again later, backing off; a message that never works is dropped, loudly.
            if (m.info.deliveryCount >= 50) {
              this.o.logger.error(`webhooks: ${m.subject} dropped after ${m.info.deliveryCount} failures: ${why}`);
              m.term();
            } else {
              this.o.logger.warn(`webhooks: ${m.subject} will be tried again: ${why}`);
              m.nak(Math.min(30_000, 500 * 2 ** Math.min(m.info.deliveryCount, 6)));
            }
          })
          .finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
    })();
    return { loop };
  }

  /** A terminal event: when it ended the job, one order per target (Nats-Msg-Id: the delivery id, so a re-plan is dropped). */
  private async plan(m: JsMsg): Promise<void> {
    let event: JobEventMessage;
    try {
      event = m.json<JobEventMessage>();
    } catch {
      this.o.logger.warn(`webhooks: ignored a malformed event on ${m.subject}`);
      m.term();
      return;
    }
    const events = (await this.o.eventStore.readStream(jobStreamName(event.jobId))).map(decodeJobEvent);
    if (!events.some((e) => e.id === event.id)) {
      // Store first, bus second: an event on the bus is in the store. Not there: another store, or not readable yet.
      if (m.info.deliveryCount >= 5) {
        this.o.logger.warn(`webhooks: event ${event.id} of job ${event.jobId} is not in the store; no webhook planned`);
        m.term();
      } else m.nak(1000);
      return;
    }
    const view = endedBy(events, event.id);
    const targets = view ? webhookTargets(view, this.o.owners[view.owner]?.urls) : [];
    if (view && targets.length) {
      for (const order of planDeliveries(view, event.id, targets, this.o.publicUrl, this.clock())) {
        await this.js.publish(subjects.webhookOrder(order.jobId), JSON.stringify(order), { msgID: order.deliveryId });
      }
    }
    m.ack();
  }

  /** One try of one order; the outcome is recorded before the order is acked (done) or nak'ed with the backoff (retry). */
  private async deliver(m: JsMsg): Promise<void> {
    let raw: unknown;
    try {
      raw = m.json();
    } catch {
      raw = undefined;
    }
    const parsed = parseWith(WebhookOrderSchema, raw);
    if (!parsed.ok) {
      this.o.logger.warn(`webhooks: dropped a malformed order on ${m.subject}: ${parsed.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
      m.term();
      return;
    }
    const order = parsed.value;
    const attempt = m.info.deliveryCount;
    const secret = this.o.owners[order.owner]?.secret;
    let result: PostResult;
    if (attempt > this.maxAttempts) {
      // Tries interrupted by a crash or a restart count too: never more than maxAttempts requests.
      result = { kind: 'network', error: `gave up: ${attempt - 1} tries made`, retryable: true, durationMs: 0 };
    } else if (!secret) {
      result = { kind: 'refused', error: `no webhook secret is configured for owner ${order.owner} (JOBLINE_WEBHOOKS_FILE): deliveries are always signed`, retryable: false, durationMs: 0 };
    } else {
      const t = Math.floor(this.clock().getTime() / 1000);
      result = await postWebhook(
        order.url,
        order.body,
        {
          [WEBHOOK_HEADERS.signature]: signWebhook(secret, order.body, t),
          [WEBHOOK_HEADERS.delivery]: order.deliveryId,
          [WEBHOOK_HEADERS.attempt]: String(attempt),
          [WEBHOOK_HEADERS.event]: 'job.finished',
        },
        this.o.policy,
      );
    }
    const now = this.clock();
    const again = result.retryable && attempt < this.maxAttempts;
    const delayMs = webhookBackoffMs(attempt, this.backoffMs);
    const outcome: WebhookOutcome =
      result.kind === 'refused' ? 'refused' : result.kind === 'response' && result.statusCode >= 200 && result.statusCode < 300 ? 'delivered' : again ? 'retrying' : 'failed';
    const record: WebhookAttempt = {
      deliveryId: order.deliveryId,
      jobId: order.jobId,
      url: order.url,
      source: order.source,
      attempt: Math.min(attempt, this.maxAttempts),
      maxAttempts: this.maxAttempts,
      outcome,
      statusCode: result.kind === 'response' ? result.statusCode : null,
      error:
        result.kind === 'response'
          ? outcome === 'delivered'
            ? null
            : `HTTP ${result.statusCode}${result.statusCode >= 300 && result.statusCode < 400 ? ' (redirects are not followed)' : ''}${outcome === 'failed' && result.retryable ? `; gave up after ${attempt} tries` : ''}`
          : result.error,
      at: now.toISOString(),
      durationMs: result.durationMs,
      nextAttemptAt: outcome === 'retrying' ? new Date(now.getTime() + delayMs).toISOString() : null,
    };
    await this.js.publish(subjects.webhookAttempts(order.jobId), JSON.stringify(record), { msgID: `${order.deliveryId}.${attempt}` });
    this.o.onAttempt?.(record);
    if (outcome === 'retrying') m.nak(delayMs);
    else m.ack();
    if (outcome !== 'delivered' && outcome !== 'retrying') this.o.logger.warn(`webhooks: delivery ${order.deliveryId} of job ${order.jobId} to ${order.url} ${outcome}: ${record.error}`);
  }
}

async function ensureConsumer(jsm: Awaited<ReturnType<typeof jetstreamManager>>, stream: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  try {
    const info = await jsm.consumers.info(stream, config.durable_name);
    if (info.config.ack_wait !== config.ack_wait || info.config.max_ack_pending !== config.max_ack_pending) {
      await jsm.consumers.update(stream, config.durable_name, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending });
    }
  } catch (err) {
    if (!/not found/i.test(String(err))) throw err;
    await jsm.consumers.add(stream, config);
  }
}
