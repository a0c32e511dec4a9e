import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import type { JetStreamClient, JetStreamPublishOptions, PubAck } from '@nats-io/jetstream';
import { injectHeaders, tracingActive, type Context } from './trace-context';

export type { PubAck } from '@nats-io/jetstream';

export interface PublishOptions {
  /** Nats-Msg-Id: a re-publish within the stream's duplicate window is acked as `duplicate`, not stored. */
  msgId?: string;
  headers?: Record<string, string>;
  /** Optimistic concurrency: the server rejects the message unless the subject's last sequence is this. */
  expectLastSubjectSequence?: number;
  /** How long to wait for the PubAck (default: the publisher's timeoutMs). */
  timeoutMs?: number;
  /** Trace context carried in the headers (W3C traceparent); default the active one. Nothing when tracing is off. */
  traceContext?: Context;
}

export interface PublishItem {
  subject: string;
  /** Bytes are sent as they are; anything else is JSON-encoded. */
  payload: unknown;
  msgId?: string;
  headers?: Record<string, string>;
  /** See PublishOptions.traceContext. */
  traceContext?: Context;
}

export interface JetStreamPublisherOptions {
  /** PubAck timeout in ms (default 5000). */
  timeoutMs?: number;
  /** publishMany sends at most this many messages before awaiting their acks (default 1024). */
  maxInFlight?: number;
}

/** publishMany failed part-way; `acks` are those of the leading items that were stored, in order. */
export class PublishManyError extends Error {
  constructor(
    readonly acks: PubAck[],
    readonly failedIndex: number,
    override readonly cause: unknown,
  ) {
    super(`publish of item ${failedIndex} failed: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'PublishManyError';
  }
}

const encoder = new TextEncoder();

/** Bytes pass through; everything else becomes UTF-8 JSON. */
export function encodePayload(payload: unknown): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  const json = JSON.stringify(payload);
  if (json === undefined) throw new TypeError(`cannot publish ${typeof payload} as JSON`);
  return encoder.encode(json);
}

/** Publishes to JetStream and waits for the stream's acknowledgement. */
export class JetStreamPublisher {
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;

  constructor(
    private readonly js: JetStreamClient,
    options: JetStreamPublisherOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 1024);
  }

  publish(subject: string, payload: unknown, opts: PublishOptions = {}): Promise<PubAck> {
    const o: Partial<JetStreamPublishOptions> = { timeout: opts.timeoutMs ?? this.timeoutMs };
    if (opts.msgId !== undefined) o.msgID = opts.msgId;
    let h = toHeaders(opts.headers);
    if (tracingActive()) {
      h ??= natsHeaders();
      injectHeaders(h, opts.traceContext);
    }
    if (h) o.headers = h;
    if (opts.expectLastSubjectSequence !== undefined) o.expect = { lastSubjectSequence: opts.expectLastSubjectSequence };
    return this.js.publish(subject, encodePayload(payload), o);
  }

  /**
   * Publishes every item and returns their acks in item order. Requests are pipelined
   * (a window of maxInFlight is written before any ack is awaited): one connection keeps
   * the order of its publishes, so the stream stores them in item order without paying a
   * round trip per message. On failure throws PublishManyError carrying the acks of the
   * leading items that were stored; re-publishing the rest with the same msgIds is safe.
   */
  async publishMany(items: readonly PublishItem[]): Promise<PubAck[]> {
    const acks: PubAck[] = [];
    for (let start = 0; start < items.length; start += this.maxInFlight) {
      const window = items.slice(start, start + this.maxInFlight);
      const pending: Promise<PubAck>[] = [];
      for (let i = 0; i < window.length; i++) {
        const it = window[i];
        let p: Promise<PubAck>;
        try {
          p = this.publish(it.subject, it.payload, { msgId: it.msgId, headers: it.headers, traceContext: it.traceContext });
        } catch (err) {
          p = Promise.reject(err);
        }
        // Settled later in order; this keeps a rejection from being reported as unhandled meanwhile.
        p.catch(() => undefined);
        pending.push(p);
      }
      for (let i = 0; i < pending.length; i++) {
        try {
          acks.push(await pending[i]);
        } catch (err) {
          await Promise.allSettled(pending);
          throw new PublishManyError(acks, start + i, err);
        }
      }
    }
    return acks;
  }
}

function toHeaders(record: Record<string, string> | undefined): MsgHdrs | undefined {
  if (!record) return undefined;
  const keys = Object.keys(record);
  if (keys.length === 0) return undefined;
  const h = natsHeaders();
  for (const k of keys) h.set(k, record[k]);
  return h;
}
