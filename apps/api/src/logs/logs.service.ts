import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { NotFoundError, isTerminal, type JobView, type LogStream } from '../../../../libs/contracts/src';
import { readLogChunks, type SequencedLogChunk } from '../../../../libs/messaging/src/logs';
import { API_CONTEXT, type ApiContext } from '../api.context';
import type { Caller } from '../api-tokens';
import { boolParam, intParam, parseQuery } from '../http/query';
import { JobsService } from '../jobs.service';
import { LogAssembler, type LogPiece } from './log-assembler';

// Exported: the OpenAPI document is generated from it.
export const LogQuerySchema = z.strictObject({
  attempt: intParam(1, 1_000_000).optional(),
  stream: z.enum(['stdout', 'stderr']).optional(),
  offset: intParam(0, Number.MAX_SAFE_INTEGER).optional(),
  follow: boolParam.optional(),
});

/** The attempt will produce no more output: the job ended, or moved on to a later attempt. */
const attemptOver = (job: JobView | null, attempt: number) => !job || isTerminal(job.status) || job.attempt > attempt;

/**
 * GET /v1/jobs/{id}/logs: one attempt's output as raw bytes, read from the logs stream.
 * Without follow it sends what is stored now; with follow it keeps sending live chunks
 * until the attempt is over, then sends what is left and ends. A client that goes away
 * stops the read (its consumer is deleted).
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

    const stop = new AbortController();
    let gone = false;
    const onClose = () => {
      gone = !res.writableFinished;
      stop.abort();
    };
    res.once('close', onClose);
    this.active.set(stop, res);
    try {
      res.statusCode = 200;
      res.setHeader('Content-Type', 'text/plain; charset=utf-8');
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Jobline-Attempt', String(attempt));
      const out = new PieceWriter(res, q.stream);
      const assembler = new LogAssembler(q.offset ?? 0);
      const feed = async (c: SequencedLogChunk) => {
        if (c.attempt === attempt) await out.write(assembler.push(c));
      };
      if (q.follow && !attemptOver(job, attempt)) {
        res.setHeader('X-Accel-Buffering', 'no');
        res.flushHeaders();
        await this.follow(job.id, attempt, feed, stop.signal);
      } else {
        for await (const c of readLogChunks(this.ctx.js, job.id, { signal: stop.signal })) await feed(c);
      }
      if (gone) return;
      await out.write(assembler.flush());
      res.end();
    } finally {
      res.off('close', onClose);
      this.active.delete(stop);
    }
  }

  private async follow(jobId: string, attempt: number, feed: (c: SequencedLogChunk) => Promise<void>, signal: AbortSignal): Promise<void> {
    const live = new AbortController();
    const relay = () => live.abort();
    signal.addEventListener('abort', relay, { once: true });
    const off = this.ctx.projection.onChange(jobId, (job) => {
      if (attemptOver(job, attempt)) live.abort();
    });
    let lastSeq = 0;
    try {
      // Checked after subscribing, so an end that came in between is not missed.
      if (attemptOver(this.ctx.projection.get(jobId), attempt)) live.abort();
      for await (const c of readLogChunks(this.ctx.js, jobId, { follow: true, signal: live.signal })) {
        lastSeq = c.seq;
        await feed(c);
      }
    } finally {
      off();
      signal.removeEventListener('abort', relay);
    }
    if (signal.aborted) return;
    // The executor stores every chunk before it reports the attempt finished, so what is in
    // the stream now is the rest of the log: read it from after the last chunk handled.
    for await (const c of readLogChunks(this.ctx.js, jobId, { startSeq: lastSeq + 1, signal })) await feed(c);
  }
}

/** Writes pieces of the chosen stream (or both), waiting for the socket when it is full. */
class PieceWriter {
  constructor(
    private readonly res: ServerResponse,
    private readonly stream: LogStream | undefined,
  ) {}

  async write(pieces: LogPiece[]): Promise<void> {
    for (const p of pieces) {
      if (this.res.destroyed || this.res.writableEnded) return;
      if (this.stream !== undefined && p.stream !== this.stream) continue;
      if (p.data.length === 0) continue;
      if (!this.res.write(p.data)) await this.drained();
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }
}
