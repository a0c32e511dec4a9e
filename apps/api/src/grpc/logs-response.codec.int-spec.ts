import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { jobServiceClient } from './jobs.proto-loader';
import { logsResponseSerializer } from './logs-response.codec';

/*
 * The hand-written serializer returns a scratch Buffer that its next call overwrites: right
 * only while grpc-js copies a message into its frame before it serializes the next one. This
 * holds that against the grpc-js installed: a real server and client over loopback, a stream
 * of distinct chunks written without waiting (they queue behind the client's 64 KiB window),
 * every one received intact.
 */
describe('grpc-js and the Logs serializer: every message is taken before the next is written', () => {
  let server: grpc.Server;
  let client: grpc.Client;
  const chunks = Array.from({ length: 48 }, (_, i) => randomBytes(i % 3 === 0 ? 131_072 : 1_000 + i * 997));

  beforeAll(async () => {
    const logs = jobServiceClient().service.Logs as grpc.MethodDefinition<unknown, unknown>;
    server = new grpc.Server();
    server.addService({ Logs: { ...logs, responseSerialize: logsResponseSerializer(logs.responseSerialize) } }, {
      Logs: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        let offset = 0;
        for (const data of chunks) {
          call.write({ chunk: { attempt: 1, stream: 'LOG_STREAM_STDOUT', offset, data } });
          offset += data.length;
        }
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const Client = jobServiceClient();
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  afterAll(() => {
    client?.close();
    server?.forceShutdown();
  });

  it('48 chunks of mixed sizes, queued at once: each arrives with its own bytes and offset', async () => {
    const got = await new Promise<{ offset: number; data: Buffer }[]>((resolve, reject) => {
      const out: { offset: number; data: Buffer }[] = [];
      const stream = (client as unknown as { logs(req: unknown): grpc.ClientReadableStream<{ chunk: { offset: number; data: Buffer } }> }).logs({ jobId: 'x' });
      stream.on('data', (m) => out.push(m.chunk));
      stream.on('error', reject);
      stream.on('end', () => resolve(out));
    });
    expect(got).toHaveLength(chunks.length);
    let offset = 0;
    got.forEach((c, i) => {
      expect({ i, offset: c.offset, same: Buffer.compare(c.data, chunks[i]) === 0 }).toEqual({ i, offset, same: true });
      offset += chunks[i].length;
    });
  });
});
