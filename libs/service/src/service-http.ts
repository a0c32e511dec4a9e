import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { METRICS_CONTENT_TYPE, metricsText } from './metrics';

/** What a service says about itself on /readyz: ready, or why not. */
export interface Readiness {
  ready: boolean;
  reasons: string[];
  checks?: Record<string, unknown>;
}

export interface ServiceHttpOptions {
  service: string;
  host: string;
  /** 0: a free port. */
  port: number;
  registries: readonly Registry[];
  readiness: () => Promise<Readiness> | Readiness;
}

export interface ServiceHttp {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * The probes and metrics of a service without a REST api of its own (orchestrator, packager,
 * executor): GET /healthz (the process answers), /readyz (200 or 503 with reasons), /metrics
 * (Prometheus). No authentication, no job data: counts and states only, as on the api.
 */
export async function startServiceHttp(o: ServiceHttpOptions): Promise<ServiceHttp> {
  const server: Server = createServer((req, res) => {
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'application/json', JSON.stringify({ error: 'GET only' }));
    if (path === '/healthz') return send(200, 'application/json', JSON.stringify({ status: 'ok', service: o.service }));
    if (path === '/readyz') {
      void Promise.resolve()
        .then(() => o.readiness())
        .then(
          (r) => send(r.ready ? 200 : 503, 'application/json', JSON.stringify({ service: o.service, ...r })),
          (err: unknown) => send(503, 'application/json', JSON.stringify({ service: o.service, ready: false, reasons: [String(err)] })),
        );
      return;
    }
    if (path === '/metrics') {
      void metricsText(o.registries).then(
        (body) => send(200, METRICS_CONTENT_TYPE, body),
        (err: unknown) => send(500, 'text/plain', String(err)),
      );
      return;
    }
    send(404, 'application/json', JSON.stringify({ error: 'not found', paths: ['/healthz', '/readyz', '/metrics'] }));
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
