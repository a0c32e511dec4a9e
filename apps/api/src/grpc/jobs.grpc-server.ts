import * as grpc from '@grpc/grpc-js';
import { tracedGrpcService } from '../api-tracing';
import type { PeerCertificate } from 'node:tls';
import { JoblineError, OwnerSchema, UnavailableError, isTerminal, jobStreamName, type JobView } from '../../../../libs/contracts/src';
import type { ApiContext } from '../api.context';
import type { Caller } from '../api-tokens';
import type { JobsService } from '../jobs.service';
import type { ProvenanceService } from '../provenance.service';
import { comparisonToPb, envelopeToPb } from './provenance.grpc-mapping';
import type { JobChange } from '../projections/jobs.projection';
import { STATUS_TO_PB, fromTimestamp, jobViewToPb, logStreamFromPb, priorityFromPb, specFromPb, statusFromPb, stepsToPb, toGrpcError, toTimestamp, type PbTimestamp } from './jobs.grpc-mapping';
import { jobServiceClient } from './jobs.proto-loader';
import { logsResponseSerializer } from './logs-response.codec';
import { requestIdOf } from '../http/request-id';

export interface GrpcTlsOptions {
  /** PEM of the CA that client certificates must chain to. */
  ca: string | Buffer;
  /** PEM of the server certificate (and chain). */
  cert: string | Buffer;
  /** PEM of its private key. */
  key: string | Buffer;
}

export interface GrpcServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 50051; 0 picks a free port (see the returned port). */
  port?: number;
  tls: GrpcTlsOptions;
  /** Largest message accepted (default 16 MiB). */
  maxMessageBytes?: number;
}

export interface GrpcServerHandle {
  port: number;
  /** Cancels open streams and stops the server. */
  close(): Promise<void>;
}

/**
 * Server credentials that accept TLS 1.3 only and require a client certificate that
 * chains to `ca` (and is within its validity period): anything else fails the handshake.
 */
class Tls13MutualCredentials extends grpc.ServerCredentials {
  constructor(tls: GrpcTlsOptions) {
    super(
      { requestCert: true, rejectUnauthorized: true },
      { ca: toBuffer(tls.ca), cert: toBuffer(tls.cert), key: toBuffer(tls.key), minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' },
    );
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

const toBuffer = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v) : v);

/** The generated service, but `Logs` chunks are encoded by hand (see logs-response.codec.ts): one serializer per server. */
function serviceDefinition(): grpc.ServiceDefinition {
  const generated = jobServiceClient().service;
  const logs = generated.Logs as grpc.MethodDefinition<unknown, unknown>;
  return { ...generated, Logs: { ...logs, responseSerialize: logsResponseSerializer(logs.responseSerialize) } };
}

/** The caller named by the verified client certificate: CN is the owner, OU=admin an admin. */
export function callerFromCertificate(cert: PeerCertificate | undefined): Caller {
  const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);
  const cn = first(cert?.subject?.CN);
  const parsed = OwnerSchema.safeParse(cn);
  if (!parsed.success) throw new JoblineError('unauthenticated', 'the client certificate has no usable CN (1-64 of [A-Za-z0-9_-])');
  const ou = cert?.subject?.OU;
  const units = Array.isArray(ou) ? ou : ou ? [ou] : [];
  return { owner: parsed.data, admin: units.includes('admin') };
}

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

/** jobline.v1.JobService on @grpc/grpc-js, over the same JobsService as REST. */
export async function startGrpcServer(ctx: ApiContext, jobs: JobsService, options: GrpcServerOptions, provenance: ProvenanceService): Promise<GrpcServerHandle> {
  const maxBytes = options.maxMessageBytes ?? 16 << 20;
  const server = new grpc.Server({ 'grpc.max_receive_message_length': maxBytes, 'grpc.max_send_message_length': maxBytes });
  const streams = new Set<AbortController>();

  const caller = (call: grpc.ServerUnaryCall<any, any> | grpc.ServerWritableStream<any, any>) => callerFromCertificate(call.getAuthContext().sslPeerCertificate);
  // x-request-id metadata, as REST's X-Request-Id: validated (INVALID_ARGUMENT), made up when absent, echoed in the initial metadata.
  const requestIdOfCall = (call: grpc.ServerUnaryCall<any, any>): string => {
    const given = call.metadata.get('x-request-id').map((v) => (typeof v === 'string' ? v : v.toString('utf8')));
    const id = requestIdOf(given.length === 0 ? undefined : given, 'x-request-id');
    const echo = new grpc.Metadata();
    echo.set('x-request-id', id);
    call.sendMetadata(echo);
    return id;
  };
  const unary =
    (fn: (c: Caller, req: any, requestId: string) => Promise<unknown> | unknown) =>
    (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
      Promise.resolve()
        .then(() => fn(caller(call), call.request, requestIdOfCall(call)))
        .then(
          (res) => cb(null, res),
          (err: unknown) => cb(toGrpcError(err)),
        );
    };
  const streaming =
    (fn: (c: Caller, req: any, write: (msg: unknown) => Promise<void>, signal: AbortSignal) => Promise<void>) => (call: grpc.ServerWritableStream<any, any>) => {
      const stop = new AbortController();
      streams.add(stop);
      call.on('cancelled', () => stop.abort());
      call.on('close', () => stop.abort());
      const write = async (msg: unknown) => {
        if (stop.signal.aborted) return;
        // Held back while the client is slow: the log read is pulled, so it pauses too.
        if (!call.write(msg)) await new Promise<void>((resolve) => {
          const done = () => {
            call.off('drain', done);
            stop.signal.removeEventListener('abort', done);
            resolve();
          };
          call.on('drain', done);
          stop.signal.addEventListener('abort', done, { once: true });
        });
      };
      Promise.resolve()
        .then(() => fn(caller(call), call.request, write, stop.signal))
        .then(
          () => {
            if (!stop.signal.aborted) call.end();
          },
          (err: unknown) => {
            if (!stop.signal.aborted) call.emit('error', toGrpcError(err));
          },
        )
        .finally(() => streams.delete(stop));
    };

  server.addService(serviceDefinition(), tracedGrpcService('jobline.v1.JobService', {
    Start: unary(async (c, req, requestId) => {
      const { created, job } = await jobs.submit(c, specFromPb(req.spec), req.idempotencyKey || undefined, undefined, requestId);
      return { job: jobViewToPb(job), created };
    }),
    Stop: unary(async (c, req, requestId) => {
      await jobs.cancel(c, req.jobId ?? '', req.reason ? { reason: req.reason } : undefined, requestId);
      return { job: jobViewToPb({ ...jobs.visible(c, req.jobId ?? ''), cancelRequested: true }) };
    }),
    Status: unary(async (c, req) => ({ job: jobViewToPb(await jobs.get(c, req.jobId ?? '', req.at ? { at: fromTimestamp(req.at as PbTimestamp) } : {})) })),
    List: unary(async (c, req) => {
      const status = statusFromPb(req.status);
      const priority = priorityFromPb(req.priority);
      const page = await jobs.list(c, {
        ...(status ? { status } : {}),
        ...(priority ? { priority } : {}),
        ...(req.owner ? { owner: req.owner } : {}),
        ...(req.limit ? { limit: String(req.limit) } : {}),
        ...(req.cursor ? { cursor: req.cursor } : {}),
        ...(req.order ? { order: req.order } : {}),
        ...(req.at ? { at: fromTimestamp(req.at as PbTimestamp) } : {}),
      });
      return { items: page.items.map(jobViewToPb), total: page.total, nextCursor: page.nextCursor ?? '' };
    }),
    Executors: unary(async (c, req) => {
      const r = await jobs.executorWork(c, req.at ? { at: fromTimestamp(req.at as PbTimestamp) } : {});
      return {
        at: toTimestamp(r.at),
        position: r.position,
        queued: r.queued,
        items: r.items.map((e) => ({ id: e.id, running: e.running, jobs: e.jobs.map(jobViewToPb) })),
      };
    }),
    Logs: streaming(async (c, req, write, signal) => {
      const job = jobs.visible(c, req.jobId ?? '');
      const only = logStreamFromPb(req.stream);
      const follow = Boolean(req.follow);
      const read = ctx.logs.job(job.id, { fromAttempt: req.fromAttempt || 1, offset: req.offset ?? 0, follow, signal });
      try {
        let r = await read.next();
        for (; !r.done; r = await read.next()) {
          const p = r.value;
          if (only && p.stream !== only) continue;
          // The bytes as they came off the bus: no copy.
          const data = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
          await write({ chunk: { attempt: p.attempt, stream: p.stream === 'stdout' ? 'LOG_STREAM_STDOUT' : 'LOG_STREAM_STDERR', offset: p.offset, data } });
        }
        if (!follow || signal.aborted) return;
        const end = r.value;
        if (!end) throw new UnavailableError('the log is no longer read here (the api is stopping); follow again from the last offset');
        if (isTerminal(end.status)) {
          await write({
            end: { status: STATUS_TO_PB[end.status], attempt: end.attempt, ...(end.exitCode !== null ? { exitCode: end.exitCode } : {}), ...(end.signal !== null ? { signal: end.signal } : {}) },
          });
        }
      } finally {
        await read.return(null);
      }
    }),
    History: streaming(async (c, req, write) => {
      const { items } = await jobs.events(c, req.jobId ?? '');
      const records = await ctx.eventStore.readStream(jobStreamName(String(req.jobId).toLowerCase()));
      const byId = new Map(records.map((r) => [r.id, r]));
      for (const e of items) {
        const r = byId.get(e.id);
        const meta = (r?.metadata ?? {}) as { causationId?: unknown; correlationId?: unknown };
        await write({
          position: e.position,
          id: e.id,
          type: e.type,
          version: e.version,
          occurredAt: toTimestamp(e.occurredAt),
          actor: e.actor,
          dataJson: JSON.stringify(e.data),
          streamRevision: r?.revision ?? 0,
          causationId: typeof meta.causationId === 'string' ? meta.causationId : '',
          correlationId: typeof meta.correlationId === 'string' ? meta.correlationId : '',
        });
      }
    }),
    Watch: streaming(async (c, req, write, signal) => {
      let match: (v: JobView) => boolean;
      if (req.jobId) {
        const id = jobs.visible(c, req.jobId).id;
        match = (v) => v.id === id;
      } else if (req.owner && !c.admin && req.owner !== c.owner) {
        throw new JoblineError('permission_denied', 'the owner filter is for admins; without it you get your own jobs');
      } else {
        const owner = c.admin ? req.owner || undefined : c.owner;
        match = (v) => owner === undefined || v.owner === owner;
      }
      const queue: { view: JobView; change: JobChange }[] = [];
      let wake: (() => void) | null = null;
      const off = ctx.projection.onAnyChange((view, change) => {
        if (!match(view)) return;
        // Status changes are small, but a client that never reads must not grow this forever.
        if (queue.length >= 10_000) return stopSlow();
        queue.push({ view, change });
        wake?.();
      });
      let slow = false;
      const stopSlow = () => {
        slow = true;
        wake?.();
      };
      const onAbort = () => wake?.();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        while (!signal.aborted && !slow) {
          const next = queue.shift();
          if (!next) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = null;
            continue;
          }
          const { view: v, change } = next;
          await write({
            jobId: v.id,
            owner: v.owner,
            status: STATUS_TO_PB[v.status],
            at: toTimestamp(change.occurredAt),
            attempt: v.attempt,
            eventType: change.type,
            position: change.position,
            ...(v.exitCode !== null ? { exitCode: v.exitCode } : {}),
            ...(v.signal !== null ? { signal: v.signal } : {}),
            ...(v.reason !== null ? { reason: v.reason } : {}),
            ...(v.steps ? { steps: stepsToPb(v.steps) } : {}),
          });
        }
        if (slow) throw new JoblineError('unavailable', 'the client read too slowly; watch again');
      } finally {
        off();
        signal.removeEventListener('abort', onAbort);
      }
    }),
    Rerun: unary(async (c, req, requestId) => {
      const { created, job } = await jobs.rerun(c, req.jobId ?? '', req.idempotencyKey || undefined, requestId);
      return { job: jobViewToPb(job), created };
    }),
    Compare: unary(async (c, req) => comparisonToPb(await jobs.compare(c, req.jobId ?? '', req.otherJobId ?? ''))),
    GetAttestation: unary(async (c, req) => ({ envelope: envelopeToPb(await provenance.attestation(c, req.jobId ?? '')) })),
  }));

  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 50051;
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(address, new Tls13MutualCredentials(options.tls), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    port: bound,
    close: async () => {
      for (const s of streams) s.abort();
      // Open streams are cut, not ended: a follower resumes elsewhere from its last offset.
      server.forceShutdown();
    },
  };
}

/* eslint-enable @typescript-eslint/no-explicit-any */
