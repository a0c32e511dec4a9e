import { isUtf8 } from 'node:buffer';
import { errorMappingOf, type JobView, type WsEndFrame, type WsErrorFrame, type WsLogFrame, type WsStatusFrame } from '../../../../libs/contracts/src';
import type { AttemptPiece } from '../../../../libs/messaging/src/log-reader';
import type { JobChange } from '../projections/jobs.projection';

/** Log data as UTF-8 text when it is valid UTF-8, else base64 (binary-safe). */
export function logFrame(jobId: string, p: AttemptPiece): WsLogFrame {
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const text = isUtf8(buf);
  return {
    type: 'log',
    jobId,
    attempt: p.attempt,
    stream: p.stream,
    offset: p.offset,
    data: text ? buf.toString('utf8') : buf.toString('base64'),
    ...(text ? {} : { encoding: 'base64' as const }),
  };
}

/** Where a piece keeps its encoded frame (see encodeLogFrame). */
const FRAME = Symbol('jobline.ws.logFrame');
type Memo = AttemptPiece & { [FRAME]?: Buffer };

/**
 * The bytes of logFrame(jobId, p) as JSON text, built once per piece: the reader hands
 * every follower of a job the same piece object for a chunk it passes whole, so 10,000
 * followers cost one encoding, not 10,000. Kept on the piece itself, not in a WeakMap: a
 * WeakMap entry (and the chunk's bytes with it) outlives the piece until a full garbage
 * collection. The JSON is written directly (data escaped by JSON.stringify, base64
 * needing none), in the field order of logFrame.
 */
export function encodeLogFrame(jobId: string, p: AttemptPiece): Buffer {
  const memo = p as Memo;
  const hit = memo[FRAME];
  if (hit) return hit;
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const head = `{"type":"log","jobId":${JSON.stringify(jobId)},"attempt":${p.attempt},"stream":"${p.stream}","offset":${p.offset},"data":`;
  const json = isUtf8(buf) ? `${head}${JSON.stringify(buf.toString('utf8'))}}` : `${head}"${buf.toString('base64')}","encoding":"base64"}`;
  const out = Buffer.from(json, 'utf8');
  // Not enumerable: the piece stays what it was for anyone else looking at it.
  Object.defineProperty(memo, FRAME, { value: out, enumerable: false });
  return out;
}

export function statusFrame(view: JobView, change: JobChange): WsStatusFrame {
  return {
    type: 'status',
    jobId: view.id,
    owner: view.owner,
    status: view.status,
    at: change.occurredAt,
    attempt: view.attempt,
    event: change.type,
    position: change.position,
    ...(view.exitCode !== null ? { exitCode: view.exitCode } : {}),
    ...(view.signal !== null ? { signal: view.signal } : {}),
    ...(view.reason !== null ? { reason: view.reason } : {}),
    ...(view.steps ? { steps: view.steps } : {}),
  };
}

export const endFrame = (view: JobView): WsEndFrame => ({ type: 'end', jobId: view.id, status: view.status, exitCode: view.exitCode, attempt: view.attempt });

/** Any error as an error frame, through the one table (ERROR_TABLE); unexpected ones say no more than "internal error". */
export function errorFrame(err: unknown, jobId?: string): WsErrorFrame {
  const m = errorMappingOf(err);
  const message = m.code === 'internal' || !(err instanceof Error) ? 'internal error' : err.message;
  return { type: 'error', code: m.ws, message, ...(jobId !== undefined ? { jobId } : {}) };
}
