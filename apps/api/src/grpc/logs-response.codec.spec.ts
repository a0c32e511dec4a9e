import { randomBytes } from 'node:crypto';
import { jobServiceClient } from './jobs.proto-loader';
import { logsResponseSerializer } from './logs-response.codec';

const logs = jobServiceClient().service.Logs;
const generated = (v: unknown) => logs.responseSerialize(v);
const decode = (b: Buffer) => logs.responseDeserialize(b) as Record<string, unknown>;

const chunk = (attempt: number, stream: 'LOG_STREAM_STDOUT' | 'LOG_STREAM_STDERR', offset: number, data: Uint8Array) => ({ chunk: { attempt, stream, offset, data } });

describe('LogsResponse chunks encoded by hand', () => {
  it.each([
    ['empty data, offset 0', chunk(1, 'LOG_STREAM_STDOUT', 0, Buffer.alloc(0))],
    ['one byte', chunk(1, 'LOG_STREAM_STDERR', 1, Buffer.from('x'))],
    ['127 / 128 bytes at varint edges', chunk(127, 'LOG_STREAM_STDOUT', 128, randomBytes(127))],
    ['128 bytes', chunk(128, 'LOG_STREAM_STDOUT', 16_383, randomBytes(128))],
    ['a 128 KiB chunk far into the log', chunk(3, 'LOG_STREAM_STDOUT', 5 * 2 ** 30 + 17, randomBytes(128 * 1024))],
    ['offset above 2^32, attempt at uint32 max', chunk(0xffffffff, 'LOG_STREAM_STDERR', 2 ** 40 + 5, randomBytes(300))],
    ['offset at 2^53 - 1', chunk(2, 'LOG_STREAM_STDOUT', Number.MAX_SAFE_INTEGER, randomBytes(20))],
    ['a view into a larger buffer', chunk(1, 'LOG_STREAM_STDOUT', 9, randomBytes(4096).subarray(100, 3000))],
  ])('%s: the bytes protobufjs writes, and they decode to the same chunk', (_, value) => {
    const ours = logsResponseSerializer(generated)(value);
    expect(Buffer.compare(ours, generated(value))).toBe(0);
    const back = decode(Buffer.from(ours)) as { item: string; chunk: { attempt: number; stream: string; offset: number; data: Buffer } };
    expect(back.item).toBe('chunk');
    expect(back.chunk.attempt).toBe(value.chunk.attempt);
    expect(back.chunk.stream).toBe(value.chunk.stream);
    expect(back.chunk.offset).toBe(value.chunk.offset);
    expect(Buffer.compare(back.chunk.data, Buffer.from(value.chunk.data))).toBe(0);
  });

  it('one serializer, messages of growing and shrinking sizes in turn: each result is exact when taken', () => {
    const serialize = logsResponseSerializer(generated);
    for (const size of [10, 200_000, 5, 131_072, 0, 1_500_000, 64]) {
      const value = chunk(1, 'LOG_STREAM_STDOUT', size, randomBytes(size));
      // Copied out at once, as grpc-js does into its frame.
      const taken = Buffer.from(serialize(value));
      expect(Buffer.compare(taken, generated(value))).toBe(0);
    }
  });

  it('the end item and values outside the hand-written form go to the generated serializer', () => {
    const calls: unknown[] = [];
    const serialize = logsResponseSerializer((v) => {
      calls.push(v);
      return generated(v);
    });
    const end = { end: { status: 'JOB_STATUS_SUCCEEDED', attempt: 1, exitCode: 0 } };
    expect(Buffer.compare(serialize(end), generated(end))).toBe(0);
    const odd = [
      { chunk: { attempt: 1, stream: 'LOG_STREAM_UNSPECIFIED', offset: 0, data: Buffer.from('a') } },
      { chunk: { attempt: 1.5, stream: 'LOG_STREAM_STDOUT', offset: 0, data: Buffer.from('a') } },
      { chunk: { attempt: 1, stream: 'LOG_STREAM_STDOUT', offset: -1, data: Buffer.from('a') } },
      { chunk: { attempt: 1, stream: 'LOG_STREAM_STDOUT', offset: 2 ** 53, data: Buffer.from('a') } },
      { chunk: { attempt: 2 ** 32, stream: 'LOG_STREAM_STDOUT', offset: 0, data: Buffer.from('a') } },
      { chunk: { attempt: 1, stream: 'LOG_STREAM_STDOUT', offset: 0, data: 'a' } },
    ];
    for (const v of odd) {
      try {
        serialize(v);
      } catch {
        // the generated serializer's own verdict
      }
    }
    expect(calls).toEqual([end, ...odd]);
  });
});
