import { headers as natsHeaders } from '@nats-io/nats-core';
import { ROOT_CONTEXT, propagation, trace } from '@opentelemetry/api';
import { loadConfig } from '../../config/src';
import { TRACERS, contextFromHeaders, contextFromRecord, endSpan, injectHeaders, startSpan, traceFields, tracingActive, withSpanContext } from '../../messaging/src/trace-context';
import { startTracing, tracingStarted, tracingServiceName } from './tracing';

const silent = { info: () => undefined, warn: () => undefined };
// Nothing listens there: exports fail (quietly), which is what a missing collector does.
const ON = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_BSP_EXPORT_TIMEOUT: '100' });

describe('startTracing', () => {
  it('off: starts nothing, registers no global, and the helpers do nothing', async () => {
    const t = startTracing(loadConfig({ OTEL_SERVICE_NAME: 'x' }), 'api', silent);
    expect(t.enabled).toBe(false);
    expect(tracingStarted()).toBe(false);
    expect(tracingActive()).toBe(false);
    expect(startSpan(TRACERS.api, 'nothing', ROOT_CONTEXT)).toBeNull();
    expect(traceFields()).toBeNull();
    const h = natsHeaders();
    h.set('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(trace.getSpanContext(contextFromHeaders(h))).toBeUndefined();
    expect(propagation.fields()).toEqual([]);
    await t.stop();
  });

  it('on: W3C propagation through headers and stored metadata, one provider per service, all taken down by the last stop', async () => {
    const api = startTracing(ON, 'api', silent);
    const executor = startTracing(ON, 'executor', silent);
    expect(api.enabled && executor.enabled && tracingStarted() && tracingActive()).toBe(true);
    expect(tracingServiceName(ON, 'executor')).toBe('jobline-executor');

    // An integration's traceparent (any header case) is continued: same trace, its span the parent.
    const incoming = natsHeaders();
    incoming.set('Traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    incoming.set('tracestate', 'acme=7');
    const parent = contextFromHeaders(incoming);
    const span = startSpan(TRACERS.executor, 'attempt', parent)!;
    expect(span.isRecording()).toBe(true);
    expect(span.spanContext().traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    const out = natsHeaders();
    injectHeaders(out, withSpanContext(parent, span));
    expect(out.get('traceparent')).toBe(`00-0af7651916cd43dd8448eb211c80319c-${span.spanContext().spanId}-01`);
    expect(out.get('tracestate')).toBe('acme=7');
    const fields = traceFields(withSpanContext(parent, span))!;
    expect(trace.getSpanContext(contextFromRecord(fields))).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: span.spanContext().spanId });
    endSpan(span);

    // No span, nothing injected; a garbage traceparent is no parent.
    const none = natsHeaders();
    injectHeaders(none, ROOT_CONTEXT);
    expect(none.has('traceparent')).toBe(false);
    const bad = natsHeaders();
    bad.set('traceparent', 'not-a-traceparent');
    expect(trace.getSpanContext(contextFromHeaders(bad))).toBeUndefined();

    await executor.stop();
    // The api's provider still serves; the executor's tracer now records nothing.
    expect(tracingStarted()).toBe(true);
    expect(startSpan(TRACERS.executor, 'late', ROOT_CONTEXT)!.isRecording()).toBe(false);
    expect(startSpan(TRACERS.api, 'still', ROOT_CONTEXT)!.isRecording()).toBe(true);
    await api.stop();
    expect(tracingStarted()).toBe(false);
    expect(tracingActive()).toBe(false);
    expect(propagation.fields()).toEqual([]);
  });

  it('a stop bounded when the collector does not answer', async () => {
    const t = startTracing(ON, 'orchestrator', silent);
    for (let i = 0; i < 10; i++) endSpan(startSpan(TRACERS.orchestrator, `s${i}`, ROOT_CONTEXT));
    const started = Date.now();
    await t.stop();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(tracingStarted()).toBe(false);
  });
});
