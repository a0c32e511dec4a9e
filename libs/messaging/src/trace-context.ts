import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, propagation, trace, type Attributes, type Context, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import type { MsgHdrs } from '@nats-io/nats-core';

/**
 * Trace context across the bus: W3C `traceparent` / `tracestate` in NATS headers (and in a
 * stored event's metadata, so the relay, publishing later from the store, continues the trace
 * of the command that caused the event). Runtime-neutral (@opentelemetry/api only: the
 * executor core uses it under Deno too). Everything here is a no-op, allocating nothing,
 * until a tracing SDK has been started (libs/service startTracing sets `tracingActive`).
 */

export { SpanKind } from '@opentelemetry/api';
export type { Context, Span } from '@opentelemetry/api';

/** Instrumentation scope of each service; startTracing gives each its own resource (service.name). */
export const TRACERS = {
  api: 'jobline-api',
  orchestrator: 'jobline-orchestrator',
  packager: 'jobline-packager',
  executor: 'jobline-executor',
} as const;
export type TracerName = (typeof TRACERS)[keyof typeof TRACERS];

let active = false;

/** Set by the tracing SDK's start and stop only. */
export function setTracingActive(on: boolean): void {
  active = on;
}

/** A tracing SDK runs in this process. */
export function tracingActive(): boolean {
  return active;
}

const IGNORE_CASE = 'insensitive' as const;
const headersGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (h) => (h ? h.keys() : []),
  // Integrations may write Traceparent: header names on NATS are case-sensitive, W3C's are not.
  get: (h, key) => h?.get(key, IGNORE_CASE) || undefined,
};
const headersSetter: TextMapSetter<MsgHdrs> = { set: (h, key, value) => h.set(key, value) };
const recordGetter: TextMapGetter<Readonly<Record<string, unknown>> | undefined> = {
  keys: (r) => (r ? Object.keys(r) : []),
  get: (r, key) => {
    const v = r?.[key];
    return typeof v === 'string' ? v : undefined;
  },
};
const recordSetter: TextMapSetter<Record<string, string>> = { set: (r, key, value) => (r[key] = value) };

/** Whether `ctx` carries a valid span context (one worth propagating). */
export function hasSpan(ctx: Context): boolean {
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && trace.isSpanContextValid(sc);
}

/** The context a message's headers carry (ROOT when none, or when tracing is off). */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  if (!active || !h) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, h, headersGetter);
}

/** The context stored with an event (its metadata's traceparent/tracestate), ROOT when none. */
export function contextFromRecord(r: Readonly<Record<string, unknown>> | undefined): Context {
  if (!active || !r || typeof r.traceparent !== 'string') return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, r, recordGetter);
}

/** Writes `ctx`'s traceparent (and tracestate) into headers; nothing when there is no span or tracing is off. */
export function injectHeaders(h: MsgHdrs, ctx: Context = context.active()): void {
  if (!active || !hasSpan(ctx)) return;
  propagation.inject(ctx, h, headersSetter);
}

/** `ctx` as `{traceparent, tracestate?}`, for headers sent many times or for an event's metadata; null when there is nothing to carry. */
export function traceFields(ctx: Context = context.active()): Record<string, string> | null {
  if (!active || !hasSpan(ctx)) return null;
  const out: Record<string, string> = {};
  propagation.inject(ctx, out, recordSetter);
  return out.traceparent ? out : null;
}

export interface SpanOptions {
  kind?: SpanKind;
  attributes?: Attributes;
}

/** Starts a span of `tracer` under `parent`; null (and no allocation) when tracing is off. */
export function startSpan(tracer: TracerName, name: string, parent: Context, options: SpanOptions = {}): Span | null {
  if (!active) return null;
  return trace.getTracer(tracer).startSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) }, parent);
}

/** Ends a span, marking it failed when given an error. */
export function endSpan(span: Span | null, error?: unknown): void {
  if (!span) return;
  if (error !== undefined) {
    span.recordException(error instanceof Error ? error : String(error));
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
  }
  span.end();
}

/** The context with `span` as its current span (`parent` itself when there is none). */
export function withSpanContext(parent: Context, span: Span | null): Context {
  return span ? trace.setSpan(parent, span) : parent;
}

/**
 * Runs `fn` in a span (the active context inside it, so what it publishes carries it); when
 * tracing is off just runs `fn`. A throw marks the span failed and is rethrown.
 */
export async function inSpan<T>(tracer: TracerName, name: string, parent: Context, options: SpanOptions, fn: (span: Span | null) => Promise<T>): Promise<T> {
  if (!active) return fn(null);
  const span = startSpan(tracer, name, parent, options)!;
  try {
    const result = await context.with(trace.setSpan(parent, span), () => fn(span));
    endSpan(span);
    return result;
  } catch (err) {
    endSpan(span, err);
    throw err;
  }
}

/** The active span, if tracing is on and there is one (to add attributes at the edge that knows them). */
export function activeSpan(): Span | undefined {
  return active ? trace.getActiveSpan() : undefined;
}
