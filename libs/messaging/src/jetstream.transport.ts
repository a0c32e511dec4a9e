import { Catch, Logger, type ArgumentsHost, type LoggerService, type RpcExceptionFilter } from '@nestjs/common';
import { BaseRpcContext, Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { nanos, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { isObservable, lastValueFrom, throwError, type Observable } from 'rxjs';
import { ValidationError } from '../../contracts/src';
import { connectNats } from './connection';
import { settlementFor, type HandlerOutcome, type Settlement } from './message-settlement';
import { ensureStreams, type StreamOptions } from './streams';
import { SpanKind, TRACERS, contextFromHeaders, endSpan, startSpan, tracingActive, withSpanContext, type TracerName } from './trace-context';
import { context as otelContext } from '@opentelemetry/api';

/** One durable pull consumer feeding one `@EventPattern(pattern)` handler. */
export interface JetStreamConsumerSpec {
  /** NATS filter subject of the consumer (wildcards allowed) and the handler's event pattern. */
  pattern: string;
  stream: string;
  /** Durable name: instances sharing it share the work; it survives restarts. */
  durable: string;
  /**
   * Time the server waits for an ack before redelivering (default 30 s; a running handler keeps
   * extending it, every quarter of it). What a frozen or dead instance had taken comes back to
   * another one after this.
   */
  ackWaitMs?: number;
  /**
   * How long each pull request stays open on the server (default 5 s, at least 1 s): a frozen
   * instance is still handed messages until its open pulls expire. Keep it at most the ack wait,
   * so a message redelivered from a frozen instance cannot land in its open pull again.
   */
  pullExpiresMs?: number;
  /** Deliveries of a failing message before it is terminated (default 20). */
  maxDeliver?: number;
  /** Unacked messages the server lets this consumer hold (default max(1000, concurrency)). */
  maxAckPending?: number;
  /** Handlers running at once for this consumer, per process (default 64). */
  concurrency?: number;
  /**
   * Told of a message's final outcome, e.g. to answer its sender: handled (acked), or
   * refused for good (terminated: a permanent error, a payload that is not JSON, or given up
   * after maxDeliver). Not called for a message that will be redelivered. Must not throw.
   */
  onSettled?: (msg: JsMsg, outcome: SettledOutcome) => void;
}

export type SettledOutcome = { ok: true } | { ok: false; error: unknown };

export interface JetStreamServerOptions {
  /** Use this connection (left open on close). Otherwise one is made from `servers` and closed on close. */
  connection?: NatsConnection;
  servers?: string | string[];
  /** Connection name (default `jobline-jetstream-server`). */
  name?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Passed to ensureStreams, which runs on listen. */
  streams?: StreamOptions;
  consumers: JetStreamConsumerSpec[];
  /** Redelivery backoff: base·2^(n-1) ms capped at max (defaults 100 ms and 5 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Whose spans the handlers' `process <pattern>` spans are (default the orchestrator's). */
  tracer?: TracerName;
}

type JetStreamContextArgs = [JsMsg];

/** What a handler gets as its second argument: the JetStream message and its delivery facts. */
export class JetStreamContext extends BaseRpcContext<JetStreamContextArgs> {
  get msg(): JsMsg {
    return this.args[0];
  }
  get subject(): string {
    return this.args[0].subject;
  }
  get headers(): MsgHdrs | undefined {
    return this.args[0].headers;
  }
  /** 1 on the first delivery. */
  get deliveryCount(): number {
    return this.args[0].info.deliveryCount;
  }
  getMessage(): JsMsg {
    return this.msg;
  }
  getSubject(): string {
    return this.subject;
  }
  getHeaders(): MsgHdrs | undefined {
    return this.headers;
  }
  getHeader(name: string): string | undefined {
    const v = this.args[0].headers?.get(name);
    return v === '' || v === undefined ? undefined : v;
  }
  getDeliveryCount(): number {
    return this.deliveryCount;
  }
}

/**
 * Nest's default RPC exception filter replaces every unknown error with
 * `{status: 'error', message: 'Internal server error'}`, which hides the JoblineError code
 * the transport needs to tell a permanent failure from a transient one. Register this
 * filter (`app.useGlobalFilters(new JetStreamExceptionFilter())`) so handlers' errors
 * reach the transport unchanged.
 */
@Catch()
export class JetStreamExceptionFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => exception);
  }
}

/**
 * `pullExpiresMs`: how long each pull request stays open on the server. A frozen (SIGSTOPped)
 * instance cannot renew its pulls, so once they expire the server stops handing it messages: what
 * it already held comes back after the ack wait and goes to a live instance, not into the frozen
 * one's still-open pull again (with the client's default of 30 s, a redelivery could, a second
 * ack wait later).
 */
export const CONSUMER_DEFAULTS = { ackWaitMs: 30_000, maxDeliver: 20, concurrency: 64, maxAckPending: 1000, pullExpiresMs: 5_000 } as const;

/** The server-side config of a spec's durable pull consumer. */
export function consumerConfigFor(spec: JetStreamConsumerSpec): Partial<ConsumerConfig> & { durable_name: string } {
  const concurrency = spec.concurrency ?? CONSUMER_DEFAULTS.concurrency;
  return {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: spec.pattern,
    ack_wait: nanos(spec.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs),
    max_deliver: spec.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver,
    max_ack_pending: spec.maxAckPending ?? Math.max(CONSUMER_DEFAULTS.maxAckPending, concurrency),
  };
}

/**
 * Creates the durable pull consumer of a spec, or brings an existing one's mutable settings
 * (ack wait, max deliver, max ack pending, filter where the server allows) up to date.
 * Safe to run from every instance at start-up.
 */
export async function provisionConsumer(jsm: JetStreamManager, spec: JetStreamConsumerSpec): Promise<ConsumerInfo> {
  const wanted = consumerConfigFor(spec);
  let existing: ConsumerInfo;
  try {
    existing = await jsm.consumers.info(spec.stream, spec.durable);
  } catch (err) {
    if (!isConsumerNotFound(err)) throw err;
    // Two instances racing here is fine: creating with an identical config is idempotent.
    return jsm.consumers.add(spec.stream, wanted);
  }
  const c = existing.config;
  if (c.ack_policy !== AckPolicy.Explicit || c.deliver_subject) {
    throw new Error(`consumer ${spec.stream}/${spec.durable} exists but is not an explicit-ack pull consumer; delete it to re-provision`);
  }
  const same =
    c.filter_subject === wanted.filter_subject &&
    c.ack_wait === wanted.ack_wait &&
    c.max_deliver === wanted.max_deliver &&
    c.max_ack_pending === wanted.max_ack_pending;
  if (same) return existing;
  const { ack_wait, max_deliver, max_ack_pending, filter_subject } = wanted;
  return jsm.consumers.update(spec.stream, spec.durable, { ack_wait, max_deliver, max_ack_pending, filter_subject });
}

function isConsumerNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError ? err.code === JetStreamApiCodes.ConsumerNotFound : /consumer not found/i.test(String(err));
}

type JetStreamServerEvents = {
  error: (err: unknown) => void;
  disconnect: (server: string) => void;
  reconnect: (server: string) => void;
};
export type JetStreamServerStatus = 'connected' | 'disconnected' | 'reconnecting';

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * A NestJS custom transport: `@EventPattern(subject)` handlers consume commands from
 * durable JetStream pull consumers. A message is acked only after its handler's promise
 * or observable completes; failures are settled by `settlementFor` (permanent codes →
 * term, anything else → nak with backoff, up to maxDeliver). Messages reach handlers in
 * stream order, up to `concurrency` at once per consumer.
 */
export class JetStreamServer extends Server<JetStreamServerEvents, JetStreamServerStatus> implements CustomTransportStrategy {
  protected override readonly logger: LoggerService = new Logger(JetStreamServer.name);
  private nc: NatsConnection | null = null;
  private ownsConnection = false;
  private closing = false;
  private readonly running: { messages: ConsumerMessages; loop: Promise<void> }[] = [];
  private readonly listeners: { event: keyof JetStreamServerEvents; callback: (arg: unknown) => void }[] = [];
  private warnedAboutFilter = false;

  constructor(private readonly options: JetStreamServerOptions) {
    super();
  }

  listen(callback: (err?: unknown, ...optionalParams: unknown[]) => void): void {
    this.start().then(
      () => callback(),
      (err) => callback(err),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    // Stop pulling first; messages already buffered are nak'ed by the loops so another
    // instance gets them at once instead of after the ack wait.
    await Promise.all(this.running.map((r) => r.messages.close()));
    await Promise.all(this.running.map((r) => r.loop));
    this.running.length = 0;
    const nc = this.nc;
    this.nc = null;
    if (nc && this.ownsConnection && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }

  on<EventKey extends keyof JetStreamServerEvents = keyof JetStreamServerEvents, EventCallback extends JetStreamServerEvents[EventKey] = JetStreamServerEvents[EventKey]>(
    event: EventKey,
    callback: EventCallback,
  ): void {
    this.listeners.push({ event, callback: callback as (arg: unknown) => void });
  }

  unwrap<T>(): T {
    if (!this.nc) throw new Error('JetStreamServer is not listening: call listen() first');
    return this.nc as T;
  }

  private async start(): Promise<void> {
    this.closing = false;
    const o = this.options;
    const handlers = o.consumers.map((spec) => {
      const handler = this.getHandlerByPattern(spec.pattern);
      if (!handler) throw new Error(`no @EventPattern('${spec.pattern}') handler for JetStream consumer ${spec.stream}/${spec.durable}`);
      return handler;
    });
    if (!o.connection && !o.servers) throw new Error('JetStreamServer needs either a connection or servers');
    const nc =
      o.connection ?? (await connectNats({ servers: o.servers!, name: o.name ?? 'jobline-jetstream-server', user: o.user, pass: o.pass, token: o.token }));
    this.nc = nc;
    this.ownsConnection = !o.connection;
    void this.watchStatus(nc);
    try {
      await this.consumeAll(nc, handlers);
    } catch (err) {
      await this.close().catch(() => undefined);
      throw err;
    }
    this._status$.next('connected');
  }

  private async consumeAll(nc: NatsConnection, handlers: MessageHandler[]): Promise<void> {
    const o = this.options;
    const jsm = await jetstreamManager(nc);
    await ensureStreams(jsm, o.streams);
    const js = jetstream(nc);
    for (let i = 0; i < o.consumers.length; i++) {
      const spec = o.consumers[i];
      await provisionConsumer(jsm, spec);
      const consumer = await js.consumers.get(spec.stream, spec.durable);
      const concurrency = Math.max(1, spec.concurrency ?? CONSUMER_DEFAULTS.concurrency);
      // Buffered messages age against the ack wait too, so fetch no more than can run soon.
      const messages = await consumer.consume({ max_messages: concurrency, expires: Math.max(1000, spec.pullExpiresMs ?? CONSUMER_DEFAULTS.pullExpiresMs) });
      this.running.push({ messages, loop: this.dispatch(spec, handlers[i], messages, concurrency) });
    }
  }

  private async dispatch(spec: JetStreamConsumerSpec, handler: MessageHandler, messages: ConsumerMessages, concurrency: number): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    try {
      for await (const msg of messages) {
        if (this.closing) {
          msg.nak();
          continue;
        }
        const p: Promise<void> = this.handle(spec, handler, msg).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= concurrency) await Promise.race(inFlight);
      }
    } catch (err) {
      this.logger.error(`consumer ${spec.stream}/${spec.durable} stopped: ${String(err)}`);
      this.emit('error', err);
    } finally {
      await Promise.all(inFlight);
    }
  }

  private async handle(spec: JetStreamConsumerSpec, handler: MessageHandler, msg: JsMsg): Promise<void> {
    let data: unknown;
    try {
      data = JSON.parse(decoder.decode(msg.data));
    } catch (err) {
      const reason = `payload is not JSON: ${err instanceof Error ? err.message : String(err)}`;
      this.apply(msg, { action: 'term', reason, level: 'warn' });
      this.tell(spec, msg, { ok: false, error: new ValidationError(reason, [{ path: '(payload)', message: 'not JSON' }]) });
      return;
    }
    const ackWaitMs = spec.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs;
    // A handler that outlives the ack wait must not see its message redelivered meanwhile (a
    // quarter of it: a short ack wait still survives a busy event loop of most of it).
    const keepAlive = setInterval(() => msg.working(), Math.max(250, ackWaitMs / 4));
    let outcome: HandlerOutcome;
    // The sender's trace (W3C traceparent header) continues in the handler: what it stores and publishes carries it.
    const parent = tracingActive() ? contextFromHeaders(msg.headers) : null;
    const span = parent
      ? startSpan(this.options.tracer ?? TRACERS.orchestrator, `process ${spec.pattern}`, parent, {
          kind: SpanKind.CONSUMER,
          attributes: {
            'messaging.system': 'nats',
            'messaging.operation.type': 'process',
            'messaging.destination.name': msg.subject,
            'messaging.consumer.group.name': spec.durable,
            'messaging.message.id': msg.headers?.get('Nats-Msg-Id') || undefined,
            'messaging.nats.delivery_count': msg.info.deliveryCount,
          },
        })
      : null;
    try {
      const run = () => handler(data, new JetStreamContext([msg]));
      const result: unknown = await (parent ? otelContext.with(withSpanContext(parent, span), run) : run());
      if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
      outcome = { ok: true };
    } catch (error) {
      outcome = { ok: false, error };
      this.warnIfErrorWasMasked(error);
    } finally {
      clearInterval(keepAlive);
    }
    endSpan(span, outcome.ok ? undefined : outcome.error);
    const settlement = settlementFor(outcome, msg.info.deliveryCount, {
      maxDeliver: spec.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver,
      backoffBaseMs: this.options.backoffBaseMs,
      backoffMaxMs: this.options.backoffMaxMs,
    });
    this.apply(msg, settlement);
    if (settlement.action !== 'nak') this.tell(spec, msg, outcome);
  }

  private tell(spec: JetStreamConsumerSpec, msg: JsMsg, outcome: SettledOutcome): void {
    if (!spec.onSettled) return;
    try {
      spec.onSettled(msg, outcome);
    } catch (err) {
      this.logger.error(`onSettled of ${spec.stream}/${spec.durable} failed: ${String(err)}`);
    }
  }

  private apply(msg: JsMsg, s: Settlement): void {
    const where = `${msg.subject} (stream seq ${msg.seq}, delivery ${msg.info.deliveryCount})`;
    switch (s.action) {
      case 'ack':
        msg.ack();
        return;
      case 'nak':
        this.logger.debug?.(`retrying ${where} in ${s.delayMs} ms: ${s.reason}`);
        msg.nak(s.delayMs);
        return;
      case 'term':
        if (s.level === 'error') this.logger.error(`dropped ${where}: ${s.reason}`);
        else this.logger.warn(`rejected ${where}: ${s.reason}`);
        // A bare +TERM: nats-server before 2.10.4 does not recognise `+TERM <reason>` and
        // would leave the message pending until its ack wait, then redeliver it. The reason is logged above.
        msg.term();
        return;
    }
  }

  private warnIfErrorWasMasked(error: unknown): void {
    if (this.warnedAboutFilter) return;
    const e = error as { status?: unknown; message?: unknown } | null;
    if (e && typeof e === 'object' && !(e instanceof Error) && e.status === 'error') {
      this.warnedAboutFilter = true;
      this.logger.warn('a handler error reached the transport without its code; register JetStreamExceptionFilter as a global filter');
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this._status$.next('disconnected');
          this.emit('disconnect', s.server);
          break;
        case 'reconnecting':
          this._status$.next('reconnecting');
          break;
        case 'reconnect':
          this._status$.next('connected');
          this.emit('reconnect', s.server);
          break;
        case 'error':
          this.emit('error', s.error);
          break;
        default:
      }
    }
  }

  private emit(event: keyof JetStreamServerEvents, arg: unknown): void {
    for (const l of this.listeners) {
      if (l.event !== event) continue;
      try {
        l.callback(arg);
      } catch (err) {
        this.logger.error(`${event} listener failed: ${String(err)}`);
      }
    }
  }
}
