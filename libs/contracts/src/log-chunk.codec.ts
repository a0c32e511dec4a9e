import { LOG_HEADERS, subjects, type LogChunk } from './subjects';

/**
 * The one codec of log chunks on `jobline.logs.<jobId>`, used by the executors that publish
 * them and the readers that follow them: the raw bytes as payload (never decoded, so
 * binary-safe), the metadata in headers, and a message id that makes a re-sent chunk a
 * no-op within JetStream's duplicate window. Runtime-neutral: no NATS client types here,
 * the publisher turns `headers` into its own header object.
 */
export interface EncodedLogChunk {
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string>;
  /** `<jobId>.<attempt>.<offset>`, for Nats-Msg-Id. */
  msgId: string;
}

export function encodeLogChunk(chunk: LogChunk): EncodedLogChunk {
  return {
    subject: subjects.logs(chunk.jobId),
    payload: chunk.data,
    headers: {
      [LOG_HEADERS.attempt]: String(chunk.attempt),
      [LOG_HEADERS.stream]: chunk.stream,
      [LOG_HEADERS.offset]: String(chunk.offset),
    },
    msgId: logChunkMsgId(chunk.jobId, chunk.attempt, chunk.offset),
  };
}

export const logChunkMsgId = (jobId: string, attempt: number, offset: number) => `${jobId}.${attempt}.${offset}`;

/** What decodeLogChunk needs of a message (a JsMsg, a stored message, a core Msg). */
export interface LogMessage {
  subject: string;
  data: Uint8Array;
  headers?: { get(key: string): string } | undefined;
}

const LOGS_PREFIX = subjects.logs('');
const OWNER_LOGS = /^jobline\.owner\.[A-Za-z0-9_-]{1,64}\.logs\.([^.*> ]+)$/;

/**
 * The chunk carried by a message on `jobline.logs.<jobId>` or its owner's copy on
 * `jobline.owner.<owner>.logs.<jobId>` (same payload and headers); null when the subject or
 * any header is malformed.
 */
export function decodeLogChunk(msg: LogMessage): LogChunk | null {
  let jobId: string;
  if (msg.subject.startsWith(LOGS_PREFIX)) jobId = msg.subject.slice(LOGS_PREFIX.length);
  else jobId = OWNER_LOGS.exec(msg.subject)?.[1] ?? '';
  if (!jobId || /[.*> ]/.test(jobId)) return null;
  const h = msg.headers;
  if (!h) return null;
  const attempt = parseNonNegativeInt(h.get(LOG_HEADERS.attempt));
  const offset = parseNonNegativeInt(h.get(LOG_HEADERS.offset));
  const stream = h.get(LOG_HEADERS.stream);
  if (attempt === null || attempt < 1 || offset === null || (stream !== 'stdout' && stream !== 'stderr')) return null;
  return { jobId, attempt, stream, offset, data: msg.data };
}

function parseNonNegativeInt(s: string | undefined): number | null {
  if (!s || !/^\d{1,16}$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}
