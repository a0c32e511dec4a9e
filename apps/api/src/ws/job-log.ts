import { isTerminal, type JobView, type LogStream } from '../../../../libs/contracts/src';
import { readLogChunks, type SequencedLogChunk } from '../../../../libs/messaging/src/logs';
import type { ApiContext } from '../api.context';
import { LogAssembler } from '../logs/log-assembler';

/** A slice of one attempt's output, in log order. */
export interface JobLogPiece {
  attempt: number;
  stream: LogStream;
  /** Offset of data's first byte in the attempt's combined (stdout + stderr) output. */
  offset: number;
  data: Uint8Array;
}

export interface JobLogOptions {
  /** Attempt to start in (default 1). */
  fromAttempt?: number;
  /** Byte offset within fromAttempt (default 0); a chunk straddling it is cut. */
  offset?: number;
  /** Keep reading live output until the job reaches a terminal status (default false). */
  follow?: boolean;
  signal?: AbortSignal;
}

/**
 * A job's output from (fromAttempt, offset) on, each later attempt from its start, put in
 * offset order per attempt (no gap, no duplicate). With follow it ends once the job is
 * terminal and every stored chunk has been delivered: the executor stores every chunk
 * before it reports an attempt finished, so what is in the stream then is the whole log.
 * Reading is pulled: a consumer that stops pulling (a slow follower) stops the read, and
 * only one batch of chunks is held for it.
 */
export async function* readJobLog(ctx: Pick<ApiContext, 'js' | 'projection'>, jobId: string, opts: JobLogOptions = {}): AsyncGenerator<JobLogPiece> {
  const { signal } = opts;
  const feed = createLogFeed(opts.fromAttempt ?? 1, opts.offset ?? 0);
  let lastSeq = 0;
  if (opts.follow) {
    for await (const c of liveLogChunks(ctx, jobId, 1, signal)) {
      lastSeq = c.seq;
      yield* feed.push(c);
    }
    if (signal?.aborted) return;
  }
  for await (const c of readLogChunks(ctx.js, jobId, { startSeq: lastSeq + 1, signal })) yield* feed.push(c);
  if (signal?.aborted) return;
  yield* feed.finish();
}

/**
 * Puts the chunks of a job (in stream order) into pieces from (fromAttempt, offset) on:
 * offset order per attempt, stale attempts dropped. finish() flushes the last attempt.
 */
export function createLogFeed(fromAttemptOption: number, offset: number): { push(c: SequencedLogChunk): Generator<JobLogPiece>; finish(): Generator<JobLogPiece> } {
  const fromAttempt = Math.max(1, fromAttemptOption);
  const assemblers = new Map<number, LogAssembler>();
  let current = 0;
  return {
    *push(c) {
      // Chunks of an attempt that is no longer the newest seen are stale (a lost executor's late output).
      if (c.attempt < fromAttempt || c.attempt < current) return;
      if (c.attempt > current) {
        const previous = assemblers.get(current);
        if (previous) yield* pieces(current, previous.flush());
        assemblers.delete(current);
        current = c.attempt;
        assemblers.set(current, new LogAssembler(current === fromAttempt ? offset : 0));
      }
      yield* pieces(c.attempt, assemblers.get(c.attempt)!.push(c));
    },
    *finish() {
      const last = assemblers.get(current);
      if (last) yield* pieces(current, last.flush());
    },
  };
}

/**
 * The job's chunks from startSeq on, live, until the job is terminal (or signal aborts).
 * Chunks stored after that are not included: read them from the last seq + 1 afterwards.
 */
export async function* liveLogChunks(ctx: Pick<ApiContext, 'js' | 'projection'>, jobId: string, startSeq: number, signal?: AbortSignal): AsyncGenerator<SequencedLogChunk> {
  const live = new AbortController();
  const relay = () => live.abort();
  signal?.addEventListener('abort', relay, { once: true });
  const off = ctx.projection.onChange(jobId, (job) => {
    if (isTerminal(job.status)) live.abort();
  });
  try {
    // Checked after subscribing, so an end that came in between is not missed.
    if (jobOver(ctx.projection.get(jobId)) || signal?.aborted) live.abort();
    yield* readLogChunks(ctx.js, jobId, { follow: true, startSeq, signal: live.signal });
  } finally {
    off();
    signal?.removeEventListener('abort', relay);
  }
}

export const jobOver = (job: JobView | null) => !job || isTerminal(job.status);

function* pieces(attempt: number, list: { stream: LogStream; offset: number; data: Uint8Array }[]): Generator<JobLogPiece> {
  for (const p of list) if (p.data.length > 0) yield { attempt, stream: p.stream, offset: p.offset, data: p.data };
}
