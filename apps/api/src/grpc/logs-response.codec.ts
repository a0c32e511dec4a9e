/**
 * jobline.v1.LogsResponse{chunk} encoded by hand, for the gRPC `Logs` stream.
 *
 * Through protobufjs each chunk cost a fresh Buffer of its size (written from a list of
 * operations built by `fromObject` and `encode`), and grpc-js then copies whatever the
 * serializer returns into the message's frame (a second Buffer of the same size). Buffers
 * that large come from mmap in the api as deployed (MALLOC_MMAP_THRESHOLD_, README "Memory"):
 * each one is page faults on first write and an munmap once collected. Here the message is
 * written into one scratch Buffer that lives as long as the serializer, and the caller (grpc-js's
 * `serializeMessage`) copies it out into the frame before the next message is serialized.
 *
 * The bytes are those protobufjs writes for the same message (every field present, in field
 * order), so any client decodes them as before. Anything else (the `end` item, a value
 * out of range) goes to the generated serializer.
 */

/** What the Logs handler writes for a chunk (the proto-loader object form, enums by name). */
export interface PbLogChunkItem {
  chunk: { attempt: number; stream: 'LOG_STREAM_STDOUT' | 'LOG_STREAM_STDERR'; offset: number; data: Uint8Array };
}

const STREAM_NUMBER: Record<string, number> = { LOG_STREAM_STDOUT: 1, LOG_STREAM_STDERR: 2 };

/** Bytes of `n` as a protobuf varint (n a non-negative safe integer). */
function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/** Scratch Buffers larger than this are not kept between messages (a chunk is at most 128 KiB today). */
const KEEP_BYTES = 1 << 20;

/**
 * A `responseSerialize` for Logs: chunks by hand into a reused scratch Buffer, the rest
 * through `fallback`. The returned Buffer is valid until the next call: grpc-js copies it
 * into the frame at once (`BaseServerInterceptingCall.serializeMessage`), and nothing else
 * may keep it.
 */
export function logsResponseSerializer(fallback: (value: unknown) => Buffer): (value: unknown) => Buffer {
  let scratch = Buffer.allocUnsafeSlow(0);
  return (value) => {
    const c = (value as Partial<PbLogChunkItem> | null)?.chunk;
    if (c === undefined || c === null || (value as { end?: unknown }).end !== undefined) return fallback(value);
    const stream = STREAM_NUMBER[c.stream];
    const { attempt, offset, data } = c;
    if (stream === undefined || !(data instanceof Uint8Array) || !Number.isInteger(attempt) || attempt < 0 || attempt > 0xffffffff || !Number.isSafeInteger(offset) || offset < 0) {
      return fallback(value);
    }
    // LogChunk: attempt (1, varint), stream (2, varint), offset (3, varint), data (4, bytes).
    const inner = 1 + varintLength(attempt) + 2 + 1 + varintLength(offset) + 1 + varintLength(data.byteLength) + data.byteLength;
    // LogsResponse: chunk (1, length-delimited).
    const total = 1 + varintLength(inner) + inner;
    let out = scratch;
    if (out.length < total) {
      out = Buffer.allocUnsafeSlow(Math.max(total, Math.min(KEEP_BYTES, out.length * 2)));
      if (out.length <= KEEP_BYTES) scratch = out;
    }
    let at = 0;
    out[at++] = 0x0a;
    at = writeVarint(out, at, inner);
    out[at++] = 0x08;
    at = writeVarint(out, at, attempt);
    out[at++] = 0x10;
    out[at++] = stream;
    out[at++] = 0x18;
    at = writeVarint(out, at, offset);
    out[at++] = 0x22;
    at = writeVarint(out, at, data.byteLength);
    out.set(data, at);
    at += data.byteLength;
    return out.subarray(0, at);
  };
}
