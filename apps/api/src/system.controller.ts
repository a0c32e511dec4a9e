import { Controller, Get, Inject, Query, Res, UseGuards } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { API_CONTEXT, type ApiContext } from './api.context';
import type { Caller } from './api-tokens';
import type { ExecutorInfo } from './executors.registry';
import { AuthGuard, CurrentCaller } from './http/auth.guard';
import { parseQuery } from './http/query';
import { ExecutorsQuerySchema, JobsService, type ExecutorsAt, type JobStats, type JobTimeline } from './jobs.service';

@Controller('v1')
@UseGuards(AuthGuard)
export class SystemController {
  constructor(
    @Inject(API_CONTEXT) private readonly ctx: ApiContext,
    @Inject(JobsService) private readonly jobs: JobsService,
  ) {}

  /**
   * Executors heard from (heartbeats); any authenticated caller may see them, with counts, not
   * job ids. With `at`: the executors that had work then, from the history, with the caller's jobs on each.
   */
  @Get('executors')
  async executors(@CurrentCaller() caller: Caller, @Query() query: unknown): Promise<{ items: ExecutorInfo[] } | ExecutorsAt> {
    const { at } = parseQuery(ExecutorsQuerySchema, query);
    if (at === undefined) return { items: this.ctx.executors.list() };
    return this.jobs.executorWork(caller, query);
  }

  /** Jobs per status: the caller's own, or (admins) everyone's or one owner's. */
  @Get('stats')
  stats(@CurrentCaller() caller: Caller, @Query() query: unknown): JobStats {
    return this.jobs.stats(caller, query);
  }

  /** Jobs submitted and finished (by terminal status) per time bucket, for throughput and failure-rate charts. */
  @Get('stats/timeline')
  timeline(@CurrentCaller() caller: Caller, @Query() query: unknown): JobTimeline {
    return this.jobs.timeline(caller, query);
  }

  /** Who the credentials name: the dashboard asks this to sign in (a token, or the client certificate under HTTPS). */
  @Get('me')
  me(@CurrentCaller() caller: Caller): Caller {
    return { owner: caller.owner, admin: caller.admin };
  }
}

export interface Readiness {
  ready: boolean;
  checks: {
    nats: { ok: boolean; rttMs?: number; error?: string };
    projection: { ok: boolean; position: number; live: boolean; error: string | null };
  };
  /** Why it is not ready (empty when ready). */
  reasons: string[];
}

/** Probes, without authentication: liveness says the process answers, readiness that it can serve. */
@Controller()
export class HealthController {
  constructor(@Inject(API_CONTEXT) private readonly ctx: ApiContext) {}

  @Get('healthz')
  healthz(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** 200 when NATS answers a ping and the projection follows the store; 503 with the reasons otherwise. */
  @Get('readyz')
  async readyz(@Res() res: ServerResponse): Promise<void> {
    const r = await this.readiness();
    const body = JSON.stringify(r);
    res.statusCode = r.ready ? 200 : 503;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(body);
  }

  private async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    let nats: Readiness['checks']['nats'];
    if (this.ctx.nc.isClosed()) {
      nats = { ok: false, error: 'connection closed' };
    } else if (!this.ctx.bus.connected) {
      nats = { ok: false, error: this.ctx.bus.reason ?? 'disconnected' };
    } else {
      try {
        nats = { ok: true, rttMs: await withTimeout(this.ctx.nc.rtt(), 2000) };
      } catch (err) {
        nats = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
    }
    if (!nats.ok) reasons.push(`nats: ${nats.error}`);
    const h = this.ctx.projection.health();
    const projection = { ok: h.live, ...h };
    if (!h.live) reasons.push(`projection: ${h.error ?? 'not following the event store (starting, catching up or stopped)'}`);
    return { ready: reasons.length === 0, checks: { nats, projection }, reasons };
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
