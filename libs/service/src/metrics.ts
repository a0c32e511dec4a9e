import { Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

/**
 * Process metrics (CPU, memory, event loop, GC) describe the process, not one service, and
 * collectDefaultMetrics installs observers that cannot be removed; so they live in one
 * registry per process, created on first use, never in prom-client's global registry.
 * Services register their own metrics in registries of their own (names prefixed by what
 * they count), so `jobline dev` can serve all of them from one endpoint without clashes.
 */
let processRegistry: Registry | null = null;
export function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, prefix: 'jobline_' });
  }
  return processRegistry;
}

/** The process metrics followed by each registry's, as one scrape body. */
export async function metricsText(registries: readonly Registry[]): Promise<string> {
  const parts = await Promise.all([processMetrics(), ...registries].map((r) => r.metrics()));
  return parts.filter((p) => p !== '').map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}
