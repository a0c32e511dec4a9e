import type { IncomingMessage, ServerResponse } from 'node:http';
import { Gauge, Histogram, Registry } from 'prom-client';
import { metricsText } from '../../../../libs/service/src/metrics';
import { JOB_STATUSES } from '../../../../libs/contracts/src';
import type { ExecutorsRegistry } from '../executors.registry';
import type { JobsProjection } from '../projections/jobs.projection';

export const API_METRICS = Symbol('ApiMetrics');

export { METRICS_CONTENT_TYPE } from '../../../../libs/service/src/metrics';

/** Label `route` of a request that matched no route (404s, probes of random paths): keeps cardinality bounded. */
export const UNMATCHED_ROUTE = 'unmatched';

export interface ApiMetricsSources {
  projection: JobsProjection;
  executors: ExecutorsRegistry;
  /** Served on the same /metrics after the api's own (`jobline dev`: the other services' registries). */
  extraRegistries?: readonly Registry[];
}

/**
 * One api app's metrics, in a registry of its own so several apps in one process (tests) do
 * not clash. Gauges are read at scrape time; the only state kept is the request histogram.
 * Nothing here names a job, an owner or an executor: counts only.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  private readonly extra: readonly Registry[];

  constructor(sources: ApiMetricsSources) {
    const { projection, executors } = sources;
    this.extra = sources.extraRegistries ?? [];
    const registers = [this.registry];
    new Gauge({
      name: 'jobline_jobs',
      help: 'Jobs per status, from the jobs projection (all owners).',
      labelNames: ['status'],
      registers,
      collect() {
        const counts = projection.countByStatus();
        for (const status of JOB_STATUSES) this.set({ status }, counts[status]);
      },
    });
    new Gauge({
      name: 'jobline_projection_position',
      help: 'Last event store position applied by the jobs projection (-1 before the first event).',
      registers,
      collect() {
        this.set(projection.position);
      },
    });
    new Gauge({
      name: 'jobline_projection_live',
      help: '1 while the jobs projection follows the event store, 0 while starting, catching up, failed or stopped.',
      registers,
      collect() {
        this.set(projection.health().live ? 1 : 0);
      },
    });
    // Totals, not one series per executor: executor ids are shown only to authenticated callers (GET /v1/executors).
    const alive = () => executors.list().filter((e) => e.alive);
    new Gauge({
      name: 'jobline_executors',
      help: 'Executors heard from by this api: alive (a heartbeat within aliveMs) or silent.',
      labelNames: ['state'],
      registers,
      collect() {
        const all = executors.list();
        const n = all.filter((e) => e.alive).length;
        this.set({ state: 'alive' }, n);
        this.set({ state: 'silent' }, all.length - n);
      },
    });
    new Gauge({
      name: 'jobline_executor_capacity',
      help: 'Attempt slots of the alive executors, summed.',
      registers,
      collect() {
        this.set(alive().reduce((sum, e) => sum + e.capacity, 0));
      },
    });
    new Gauge({
      name: 'jobline_executor_running',
      help: 'Attempts running on the alive executors at their last heartbeat, summed.',
      registers,
      collect() {
        this.set(alive().reduce((sum, e) => sum + e.running, 0));
      },
    });
    this.httpDuration = new Histogram({
      name: 'jobline_http_request_duration_seconds',
      help: 'HTTP requests by method, route pattern (not the raw path) and status code.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
  }

  /** Process metrics followed by this app's (and the extra registries'), in the text format. */
  text(): Promise<string> {
    return metricsText([this.registry, ...this.extra]);
  }

  /**
   * Express middleware timing each request until its response is finished. The route label
   * is the matched route's pattern (`/v1/jobs/:id`), known once the router has run.
   */
  httpMiddleware(): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
    return (req, res, next) => {
      const end = this.httpDuration.startTimer();
      res.once('finish', () => {
        const route = (req as IncomingMessage & { route?: { path?: unknown } }).route?.path;
        end({ method: req.method ?? 'UNKNOWN', route: typeof route === 'string' ? route : UNMATCHED_ROUTE, status: String(res.statusCode) });
      });
      next();
    };
  }
}
