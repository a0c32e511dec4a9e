import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { NotFoundError } from '../../../../libs/contracts/src';
import { API_CONTEXT, type ApiContext } from '../api.context';
import type { Caller } from '../api-tokens';
import { boolParam, intParam, parseQuery } from '../http/query';
import { JobsService } from '../jobs.service';

// Exported: the OpenAPI document is generated from it.
export const LogQuerySchema = z.strictObject({
  attempt: intParam(1, 1_000_000).optional(),
  stream: z.enum(['stdout', 'stderr']).optional(),
  offset: intParam(0, Number.MAX_SAFE_INTEGER).optional(),
  follow: boolParam.optional(),
});

/**
 * GET /v1/jobs/{id}/logs: one attempt's output as raw bytes, through the api's LogReader.
 * Without follow it sends what is stored now; with follow it streams until the attempt's
 * log is complete (its recorded length), then ends. Bytes that cannot be delivered (the
 * retention discarded them) are a 410 problem when nothing was sent yet, else a cut
 * connection (never a clean end over a gap). A client that goes away stops the read.
 */
@Injectable()
export class LogsService implements OnModuleDestroy {
  private readonly active = new Map<AbortController, ServerResponse>();

  constructor(
    @Inject(API_CONTEXT) private readonly ctx: ApiContext,
    @Inject(JobsService) private readonly jobs: JobsService,
  ) {}

  /**
   * Cuts every log response still open, so the server can close. Cut, not ended: a clean
   * end tells a follower the job's log is complete, which it is not; a cut connection tells
   * it to come back (to another instance) with ?offset= the bytes it has.
   */
  onModuleDestroy(): void {
    for (const [stop, res] of this.active) {
      stop.abort();
      res.destroy();
    }
  }

  async send(caller: Caller, id: string, query: unknown, res: ServerResponse): Promise<void> {
    const job = this.jobs.visible(caller, id);
    const q = parseQuery(LogQuerySchema, query);
    const latest = Math.max(1, job.attempt);
    const attempt = q.attempt ?? latest;
    if (attempt > latest) throw new NotFoundError(`job ${job.id} has no attempt ${attempt} (the latest is ${latest})`);

    const start = () => {
      if (res.headersSent) return;
      res.statusCode = 200;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Jobline-Attempt', String(attempt));
      if (q.follow) {
        res.setHeader('X-Accel-Buffering', 'no');
        res.flushHeaders();
      }
    };
    if (job.purged) {
      // JobPurged is recorded before the logs are deleted: a purged job's log is empty from that moment.
      start();
      res.end();
      return;
    }
    const stop = new AbortController();
    const onClose = () => stop.abort();
    res.once('close', onClose);
    this.active.set(stop, res);
    const read = this.ctx.logs.attempt(job.id, { attempt, offset: q.offset ?? 0, follow: q.follow ?? false, signal: stop.signal });
    try {
      // A follower hears at once that its follow is on; a plain read answers 200 only once it knows it has bytes to send.
      if (q.follow) start();
      for (let r = await read.next(); ; r = await read.next()) {
        if (r.done) {
          if (r.value.reason === 'aborted') return void res.destroy();
          start();
          res.end();
          return;
        }
        start();
        const p = r.value;
        if (q.stream !== undefined && p.stream !== q.stream) continue;
        if (res.destroyed) return;
        if (!res.write(p.data)) await drained(res);
      }
    } finally {
      await read.return({ reason: 'aborted' });
      res.off('close', onClose);
      this.active.delete(stop);
    }
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
