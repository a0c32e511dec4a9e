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
 * collection. Written straight from the chunk's bytes into one Buffer (escaped as
 * JSON.stringify would, see writeJsonStringBytes), in the field order of logFrame: no
 * JavaScript string of the data is made, so a log at full speed puts nothing of its bytes
 * on the V8 heap (profiled: the strings' garbage collection was a fifth of the api's time).
 */
export function encodeLogFrame(jobId: string, p: AttemptPiece): Buffer {
  const memo = p as Memo;
  const hit = memo[FRAME];
  if (hit) return hit;
  const buf = Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength);
  const head = `{"type":"log","jobId":${JSON.stringify(jobId)},"attempt":${p.attempt},"stream":"${p.stream}","offset":${p.offset},"data":"`;
  let out: Buffer;
  if (isUtf8(buf)) {
    const headLen = Buffer.byteLength(head);
    const n = scanSpecials(buf);
    let extra = 0;
    for (let k = 0; k < n; k++) extra += ESCAPE_EXTRA[buf[specials[k]]];
    out = Buffer.allocUnsafe(headLen + buf.length + extra + 2);
    out.write(head, 0, 'utf8');
    const at = writeScanned(buf, out, headLen, n);
    out[at] = 0x22; // "
    out[at + 1] = 0x7d; // }
  } else {
    out = Buffer.from(`${head}${buf.toString('base64')}","encoding":"base64"}`, 'utf8');
  }
  // Not enumerable: the piece stays what it was for anyone else looking at it.
  Object.defineProperty(memo, FRAME, { value: out, enumerable: false });
  return out;
}

/**
 * Bytes added by JSON escaping, per byte value: `"` and `\` take a backslash, the control
 * characters \b \t \n \f \r a backslash too, the other ones below 0x20 become \u00XX.
 * Every other byte of valid UTF-8 stands as it is (JSON text is UTF-8; valid UTF-8 has no
 * lone surrogates for JSON.stringify to escape).
 */
const ESCAPE_EXTRA = (() => {
  const t = new Uint8Array(256);
  for (let b = 0; b < 0x20; b++) t[b] = 5;
  for (const b of [0x08, 0x09, 0x0a, 0x0c, 0x0d, 0x22, 0x5c]) t[b] = 1;
  return t;
})();
/** The letter after the backslash of a short escape (0: none, \\u00XX). */
const SHORT_ESCAPE = (() => {
  const t = new Uint8Array(256);
  for (const [b, c] of [[0x08, 'b'], [0x09, 't'], [0x0a, 'n'], [0x0c, 'f'], [0x0d, 'r'], [0x22, '"'], [0x5c, '\\']] as const) t[b] = c.charCodeAt(0);
  return t;
})();
const HEX = '0123456789abcdef';

/** Positions of the bytes to escape, found by the last scan (grown as needed, reused). */
let specials = new Int32Array(1024);

/**
 * Finds the bytes of `src` that JSON escaping changes, four at a time (a word is looked at
 * byte by byte only when it holds one: below 0x20, `"` or `\\`); their positions go to
 * `specials`. Returns how many there are.
 */
function scanSpecials(src: Buffer): number {
  let n = 0;
  const note = (i: number) => {
    if (n === specials.length) {
      const grown = new Int32Array(specials.length * 2);
      grown.set(specials);
      specials = grown;
    }
    specials[n++] = i;
  };
  const len = src.length;
  let i = 0;
  // Bytes up to a 4-byte boundary of the underlying memory, then whole words, then the rest.
  const lead = Math.min(len, (4 - (src.byteOffset & 3)) & 3);
  for (; i < lead; i++) if (ESCAPE_EXTRA[src[i]] !== 0) note(i);
  const words = (len - i) >>> 2;
  if (words > 0) {
    const w32 = new Uint32Array(src.buffer, src.byteOffset + i, words);
    for (let k = 0; k < words; k++) {
      const w = w32[k];
      const q = w ^ 0x22222222;
      const s = w ^ 0x5c5c5c5c;
      // Any byte below 0x20, any byte equal to 0x22 or 0x5c (exact tests, Bit Twiddling Hacks' hasless/haszero).
      if ((((w - 0x20202020) & ~w) | ((q - 0x01010101) & ~q) | ((s - 0x01010101) & ~s)) & 0x80808080) {
        const at = i + (k << 2);
        for (let j = at; j < at + 4; j++) if (ESCAPE_EXTRA[src[j]] !== 0) note(j);
      }
    }
    i += words << 2;
  }
  for (; i < len; i++) if (ESCAPE_EXTRA[src[i]] !== 0) note(i);
  return n;
}

/** Length of the JSON string body (no quotes) for these UTF-8 bytes. */
export function jsonStringBytesLength(src: Buffer): number {
  const n = scanSpecials(src);
  let extra = 0;
  for (let k = 0; k < n; k++) extra += ESCAPE_EXTRA[src[specials[k]]];
  return src.length + extra;
}

/**
 * Writes valid UTF-8 bytes into `out` at `at` as the body of a JSON string (no quotes),
 * exactly as JSON.stringify escapes the string they decode to; returns the end position.
 * Runs that need no escaping are copied whole. `out` must have room for
 * jsonStringBytesLength(src) bytes.
 */
export function writeJsonStringBytes(src: Buffer, out: Buffer, at: number): number {
  return writeScanned(src, out, at, scanSpecials(src));
}

/** writeJsonStringBytes with the positions of the last scanSpecials(src) (n of them). */
function writeScanned(src: Buffer, out: Buffer, at: number, n: number): number {
  let run = 0;
  for (let k = 0; k < n; k++) {
    const i = specials[k];
    const b = src[i];
    // Buffer#copy, not set(subarray()): a view per run costs more than the copy of a line.
    if (i > run) at += src.copy(out, at, run, i);
    run = i + 1;
    out[at++] = 0x5c; // \
    const short = SHORT_ESCAPE[b];
    if (short !== 0) out[at++] = short;
    else {
      out[at++] = 0x75; // u
      out[at++] = 0x30;
      out[at++] = 0x30;
      out[at++] = HEX.charCodeAt(b >> 4);
      out[at++] = HEX.charCodeAt(b & 15);
    }
  }
  if (src.length > run) at += src.copy(out, at, run, src.length);
  return at;
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
