/**
 * The api's side of a gRPC `Logs` stream alone (issue 12 item 4): a grpc-js server in this
 * process over mutual TLS sends `--bytes` of 128 KiB chunks (views into one Buffer, as the bus
 * hands them over) to one grpc-js client in a child process, with the Logs handler's
 * backpressure (wait for drain). CPU time of this process per MiB sent, for protobufjs's
 * generated serializer and the hand-written one of apps/api/src/grpc/logs-response.codec.ts,
 * in alternating runs (ABAB, `--rounds` pairs), every byte and offset checked at the client.
 * Without the NATS client, the log reader and the rest of the api: what the serializer and
 * grpc-js/HTTP/2/TLS cost. Run it with MALLOC_MMAP_THRESHOLD_=32768 in the environment to
 * allocate as the api does when deployed (README, "Memory"); the result says which.
 *
 *   MALLOC_MMAP_THRESHOLD_=32768 npm run -s bench -- grpc-send --bytes=268435456 --rounds=3
 */
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { CLIENT_CHANNEL_OPTIONS, jobServiceClient } from '../apps/api/src/grpc/jobs.proto-loader';
import { logsResponseSerializer } from '../apps/api/src/grpc/logs-response.codec';
import { createCa, issueCertificate } from '../apps/cli/src/certs/dev-pki';
import { progress, withDefaults } from './bench-kit';

const CHUNK = 128 * 1024;

export interface GrpcSendBenchOptions {
  bytes: number;
  rounds: number;
}

export const GRPC_SEND_DEFAULTS: GrpcSendBenchOptions = { bytes: 256 << 20, rounds: 3 };

export interface GrpcSendRun {
  serializer: 'generated' | 'hand';
  cpuMsPerMiB: number;
  userMsPerMiB: number;
  systemMsPerMiB: number;
  mbps: number;
  complete: boolean;
}

export interface GrpcSendBenchResult {
  bench: 'grpc-send';
  mallocMmapThreshold: string | null;
  runs: GrpcSendRun[];
  /** Medians of the runs of each serializer. */
  medianCpuMsPerMiB: { generated: number; hand: number };
}

interface ClientConfig {
  port: number;
  ca: string;
  cert: string;
  key: string;
}

/** In the child: read one Logs stream to its end, print the bytes and whether the offsets ran on. */
function clientMain(c: ClientConfig): void {
  const Client = jobServiceClient();
  const client = new Client(`127.0.0.1:${c.port}`, grpc.credentials.createSsl(Buffer.from(c.ca), Buffer.from(c.key), Buffer.from(c.cert)), { ...CLIENT_CHANNEL_OPTIONS, 'grpc.ssl_target_name_override': 'localhost' });
  let bytes = 0;
  let next = 0;
  let gaps = 0;
  const stream = (client as unknown as { logs(req: unknown): grpc.ClientReadableStream<{ chunk: { offset: number; data: Buffer } }> }).logs({ jobId: 'bench', follow: true });
  stream.on('data', (m) => {
    if (m.chunk.offset !== next) gaps++;
    next = m.chunk.offset + m.chunk.data.length;
    bytes += m.chunk.data.length;
  });
  stream.on('end', () => {
    process.stdout.write(`${JSON.stringify({ bytes, gaps })}\n`);
    process.exit(0);
  });
  stream.on('error', (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  });
}

async function oneRun(serializer: 'generated' | 'hand', bytes: number, pki: { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string }, source: Buffer): Promise<GrpcSendRun> {
  const logs = jobServiceClient().service.Logs as grpc.MethodDefinition<unknown, unknown>;
  const definition = { Logs: serializer === 'hand' ? { ...logs, responseSerialize: logsResponseSerializer(logs.responseSerialize) } : logs };
  const server = new grpc.Server({ 'grpc.max_send_message_length': 16 << 20 });
  let cpu0 = process.cpuUsage();
  let t0 = performance.now();
  server.addService(definition, {
    Logs: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      void (async () => {
        cpu0 = process.cpuUsage();
        t0 = performance.now();
        for (let offset = 0; offset < bytes; offset += CHUNK) {
          const at = offset % (source.length - CHUNK + 1);
          const data = Buffer.from(source.buffer, source.byteOffset + at, Math.min(CHUNK, bytes - offset));
          if (!call.write({ chunk: { attempt: 1, stream: 'LOG_STREAM_STDOUT', offset, data } })) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
        }
        call.end();
      })();
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(Buffer.from(pki.ca), [{ cert_chain: Buffer.from(pki.serverCert), private_key: Buffer.from(pki.serverKey) }], true);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))));
  try {
    const config: ClientConfig = { port, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
    const child = spawn(process.execPath, [__filename, '--grpc-send-client', JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    const cpu = process.cpuUsage(cpu0);
    const ms = performance.now() - t0;
    const got = code === 0 ? (JSON.parse(out.trim()) as { bytes: number; gaps: number }) : { bytes: 0, gaps: -1 };
    const mib = bytes / (1 << 20);
    const round2 = (v: number) => Math.round(v * 100) / 100;
    const r: GrpcSendRun = {
      serializer,
      cpuMsPerMiB: round2((cpu.user + cpu.system) / 1000 / mib),
      userMsPerMiB: round2(cpu.user / 1000 / mib),
      systemMsPerMiB: round2(cpu.system / 1000 / mib),
      mbps: Math.round((mib / (ms / 1000)) * 10) / 10,
      complete: got.bytes === bytes && got.gaps === 0,
    };
    progress('grpc-send', `${serializer}: ${r.cpuMsPerMiB} ms of CPU per MiB sent (user ${r.userMsPerMiB}, system ${r.systemMsPerMiB}), ${r.mbps} MB/s${r.complete ? '' : ' — INCOMPLETE'}`);
    return r;
  } finally {
    server.forceShutdown();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function runGrpcSendBench(options: Partial<GrpcSendBenchOptions> = {}): Promise<GrpcSendBenchResult> {
  const o = withDefaults(GRPC_SEND_DEFAULTS, options);
  const ca = await createCa();
  const server = await issueCertificate(ca, { commonName: 'localhost', serverNames: ['localhost', '127.0.0.1'] });
  const client = await issueCertificate(ca, { commonName: 'bench', admin: true });
  const pki = { ca: ca.certPem, serverCert: server.certPem, serverKey: server.keyPem, clientCert: client.certPem, clientKey: client.keyPem };
  // Log-like text (printable bytes), 8 MiB of it, sent over and over.
  const source = Buffer.alloc(8 << 20);
  for (let i = 0; i < source.length; i++) source[i] = i % 64 === 63 ? 10 : 32 + (i % 90);
  const runs: GrpcSendRun[] = [];
  for (let k = 0; k < o.rounds; k++) for (const s of ['generated', 'hand'] as const) runs.push(await oneRun(s, o.bytes, pki, source));
  const of = (s: 'generated' | 'hand') => median(runs.filter((r) => r.serializer === s).map((r) => r.cpuMsPerMiB));
  return { bench: 'grpc-send', mallocMmapThreshold: process.env.MALLOC_MMAP_THRESHOLD_ ?? null, runs, medianCpuMsPerMiB: { generated: of('generated'), hand: of('hand') } };
}

if (process.argv[2] === '--grpc-send-client') clientMain(JSON.parse(process.argv[3]) as ClientConfig);
