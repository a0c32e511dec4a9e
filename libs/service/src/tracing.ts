import {
  INVALID_SPAN_CONTEXT,
  context,
  propagation,
  trace,
  type Context,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator, setGlobalErrorHandler, loggingErrorHandler } from '@opentelemetry/core';
import { OTLPTraceExporter as OtlpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { JoblineConfig, TracingConfig } from '../../config/src';
import { TRACERS, setTracingActive } from '../../messaging/src/trace-context';
import type { ServiceLogger } from './logger';

export type TracedService = keyof typeof TRACERS;

/** A service's part of the process's tracing; stop() flushes and shuts down its spans' pipeline. */
export interface Tracing {
  readonly enabled: boolean;
  stop(): Promise<void>;
}

const OFF: Tracing = { enabled: false, stop: async () => undefined };

/**
 * Tracer name → the providers registered for it (the newest is used). One process may run
 * several services (`jobline dev`): each gets its own provider, so its spans carry its own
 * service.name, while the context manager and the W3C propagator are the process's.
 */
class RoutingTracerProvider implements TracerProvider {
  readonly providers = new Map<string, BasicTracerProvider[]>();
  private readonly tracers = new Map<string, RoutingTracer>();

  getTracer(name: string): Tracer {
    let t = this.tracers.get(name);
    if (!t) this.tracers.set(name, (t = new RoutingTracer(this, name)));
    return t;
  }

  current(name: string): BasicTracerProvider | undefined {
    return this.providers.get(name)?.at(-1);
  }
}

/** Looks its provider up per span, so a service restarted in the same process (tests, dev) gets the new one. */
class RoutingTracer implements Tracer {
  constructor(
    private readonly router: RoutingTracerProvider,
    private readonly name: string,
  ) {}

  startSpan(name: string, options?: SpanOptions, ctx?: Context): Span {
    const p = this.router.current(this.name);
    return p ? p.getTracer(this.name).startSpan(name, options, ctx) : trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...args: [F] | [SpanOptions, F] | [SpanOptions, Context, F]): ReturnType<F> {
    const fn = args[args.length - 1] as F;
    const options = args.length >= 2 ? (args[0] as SpanOptions) : undefined;
    const parent = args.length === 3 ? (args[1] as Context) : context.active();
    const span = this.startSpan(name, options, parent);
    return context.with(trace.setSpan(parent, span), () => fn(span)) as ReturnType<F>;
  }
}

let router: RoutingTracerProvider | null = null;

function sampler(t: TracingConfig): Sampler {
  const ratio = () => new TraceIdRatioBasedSampler(t.samplerRatio);
  switch (t.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio();
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() });
  }
}

function exporter(t: TracingConfig): SpanExporter {
  if (t.exporter === 'console') return new ConsoleSpanExporter();
  const options = { url: t.endpoint, headers: t.headers, timeoutMillis: t.timeoutMs };
  return t.protocol === 'http/json' ? new OtlpJsonExporter(options) : new OtlpProtoExporter(options);
}

/** The service.name a service's spans carry. */
export function tracingServiceName(config: JoblineConfig, service: TracedService): string {
  return config.tracing.serviceName ?? `jobline-${service}`;
}

/**
 * Starts the OpenTelemetry SDK for one service when the configuration turns tracing on (see
 * TracingConfig: off by default); otherwise starts nothing and returns a handle whose stop()
 * does nothing. Every start function calls it; the last stop() in the process takes the
 * global context manager, propagator and provider down again.
 */
export function startTracing(config: JoblineConfig, service: TracedService, logger?: Pick<ServiceLogger, 'info' | 'warn'>): Tracing {
  const t = config.tracing;
  if (!t.enabled) return OFF;
  if (!router) {
    router = new RoutingTracerProvider();
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    trace.setGlobalTracerProvider(router);
    let lastWarning = 0;
    const fallback = loggingErrorHandler();
    // An unreachable collector must not flood the log: one line a minute.
    setGlobalErrorHandler((err) => {
      if (!logger) return fallback(err);
      const now = Date.now();
      if (now - lastWarning < 60_000) return;
      lastWarning = now;
      logger.warn({ err }, 'tracing: exporting spans failed (further failures are not logged for a minute)');
    });
    setTracingActive(true);
  }
  const name = TRACERS[service];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ ...t.resourceAttributes, [ATTR_SERVICE_NAME]: tracingServiceName(config, service) }),
    sampler: sampler(t),
    spanProcessors: [
      new BatchSpanProcessor(exporter(t), {
        scheduledDelayMillis: t.batch.scheduleDelayMs,
        exportTimeoutMillis: t.batch.exportTimeoutMs,
        maxQueueSize: t.batch.maxQueueSize,
        maxExportBatchSize: t.batch.maxExportBatchSize,
      }),
    ],
  });
  const r = router;
  const list = r.providers.get(name) ?? [];
  list.push(provider);
  r.providers.set(name, list);
  logger?.info({ serviceName: tracingServiceName(config, service), exporter: t.exporter, ...(t.exporter === 'otlp' ? { protocol: t.protocol } : {}) }, `${service}: tracing on`);
  let stopped: Promise<void> | null = null;
  return {
    enabled: true,
    stop: () =>
      (stopped ??= (async () => {
        const at = list.indexOf(provider);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0) r.providers.delete(name);
        // Shutting down exports what is left; an unreachable collector must not hold the service's stop for long.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([provider.shutdown().catch(() => undefined), new Promise((res) => (timer = setTimeout(res, Math.min(5000, t.batch.exportTimeoutMs))))]);
        clearTimeout(timer);
        if (r.providers.size === 0 && router === r) {
          router = null;
          setTracingActive(false);
          trace.disable();
          propagation.disable();
          context.disable();
        }
      })()),
  };
}

/** Whether an SDK runs in this process (for tests and `jobline config`). */
export function tracingStarted(): boolean {
  return router !== null;
}
