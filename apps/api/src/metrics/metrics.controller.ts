import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { API_METRICS, METRICS_CONTENT_TYPE, type ApiMetrics } from './api-metrics';

/**
 * Prometheus scrape endpoint, without authentication like the probes: it shows counts and
 * process figures only, never a job, an owner, a command or an executor id.
 */
@Controller()
export class MetricsController {
  constructor(@Inject(API_METRICS) private readonly metrics: ApiMetrics) {}

  @Get('metrics')
  async scrape(@Res() res: ServerResponse): Promise<void> {
    const body = await this.metrics.text();
    res.statusCode = 200;
    res.setHeader('Content-Type', METRICS_CONTENT_TYPE);
    res.setHeader('Cache-Control', 'no-store');
    res.end(body);
  }
}
