import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { ROOT_CONTEXT, context, propagation, trace, type TextMapGetter } from '@opentelemetry/api';
import { SpanKind, TRACERS, endSpan, startSpan, tracingActive } from '../../../libs/messaging/src/trace-context';

/**
 * The api's server spans: one per REST request and one per gRPC call, continuing a W3C
 * traceparent the client sent. Inside them the active context is the request's, so the
 * command the request publishes on NATS carries it (JetStreamPublisher injects it). Nothing
 * is recorded but the method, the route pattern and the status: no query string, header or body.
 */

/** Express middleware: `GET /v1/jobs/:id` spans (the route pattern is known once the router has run). */
export function httpTracingMiddleware(): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    if (!tracingActive()) return next();
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const method = req.method ?? 'UNKNOWN';
    const span = startSpan(TRACERS.api, method, parent, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method } })!;
    const ctx = trace.setSpan(parent, span);
    const done = () => {
      const route = (req as IncomingMessage & { route?: { path?: unknown } }).route?.path;
      if (typeof route === 'string') {
        span.updateName(`${method} ${route}`);
        span.setAttribute('http.route', route);
      }
      span.setAttribute('http.response.status_code', res.statusCode);
      endSpan(span, res.statusCode >= 500 ? new Error(`HTTP ${res.statusCode}`) : undefined);
    };
    res.once('finish', done);
    res.once('close', () => {
      if (!res.writableFinished) done();
    });
    // Body streams (JSON, multipart) call back from the socket's context: bound, they run in the request's.
    context.bind(ctx, req);
    context.bind(ctx, res);
    context.with(ctx, next);
  };
}

const metadataGetter: TextMapGetter<grpc.Metadata> = {
  keys: (m) => Object.keys(m.getMap()),
  get: (m, key) => {
    const v = m.get(key)[0];
    return typeof v === 'string' ? v : undefined;
  },
};

type Handler = grpc.handleUnaryCall<unknown, unknown> | grpc.handleServerStreamingCall<unknown, unknown>;

/** Wraps every method of a gRPC service implementation in a `jobline.v1.JobService/<Method>` server span. */
export function tracedGrpcService<T extends Record<string, Handler>>(service: string, impl: T): T {
  const out: Record<string, Handler> = {};
  for (const [method, handler] of Object.entries(impl)) {
    out[method] = (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => {
      if (!tracingActive()) return (handler as (c: unknown, cb?: unknown) => void)(call, callback);
      const parent = propagation.extract(ROOT_CONTEXT, call.metadata, metadataGetter);
      const span = startSpan(TRACERS.api, `${service}/${method}`, parent, {
        kind: SpanKind.SERVER,
        attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method },
      })!;
      const ctx = trace.setSpan(parent, span);
      const finish = (code: number, error?: unknown) => {
        span.setAttribute('rpc.grpc.status_code', code);
        endSpan(span, error);
      };
      if (callback) {
        const cb: grpc.sendUnaryData<unknown> = (err, value) => {
          finish(err ? (err.code ?? 2) : 0, err ?? undefined);
          callback(err, value);
        };
        return context.with(ctx, () => (handler as grpc.handleUnaryCall<unknown, unknown>)(call as grpc.ServerUnaryCall<unknown, unknown>, cb));
      }
      const stream = call as grpc.ServerWritableStream<unknown, unknown>;
      let ended = false;
      const once = (code: number, error?: unknown) => {
        if (ended) return;
        ended = true;
        finish(code, error);
      };
      stream.once('finish', () => once(0));
      stream.once('error', (err: grpc.ServiceError) => once(err.code ?? 2, err));
      stream.once('cancelled', () => once(1));
      stream.once('close', () => once(0));
      return context.with(ctx, () => (handler as grpc.handleServerStreamingCall<unknown, unknown>)(stream));
    };
  }
  return out as T;
}
