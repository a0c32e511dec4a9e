/**
 * The follower side of the log benchmarks, in a process of its own so that its parsing does
 * not share the api's event loop: follows jobs over WebSocket or gRPC, checks that every
 * follower's bytes are contiguous from offset 0 (and, when asked, their sha256), and prints
 * one JSON report once every follower has its end (or an error). Started by
 * runLogFollowers(); argv[2] is the JSON of FollowersConfig.
 */
import * as grpc from '@grpc/grpc-js';
import { createHash, type Hash } from 'node:crypto';
import WebSocket from 'ws';
import { CLIENT_CHANNEL_OPTIONS, jobServiceClient } from '../apps/api/src/grpc/jobs.proto-loader';

export interface FollowersConfig {
  kind: 'ws' | 'grpc';
  /** ws(s)://…/v1/ws, or host:port for gRPC. */
  url: string;
  token?: string;
  /** PEM: CA, client certificate and key (gRPC). */
  ca?: string;
  cert?: string;
  key?: string;
  jobs: { jobId: string; followers: number }[];
  /** Hash every follower's bytes (sha256), to compare with what the job printed. */
  hash?: boolean;
  /** Give up after this long (default 10 minutes). */
  timeoutMs?: number;
}

export interface FollowerReport {
  jobId: string;
  bytes: number;
  frames: number;
  /** ms since the child's start: first log byte, last log byte, end. */
  firstAtMs: number | null;
  lastAtMs: number | null;
  endAtMs: number | null;
  /** Date.now() at the end (to set against server timestamps). */
  endWallMs: number | null;
  ended: boolean;
  error: string | null;
  /** An offset that did not continue the previous frame (a gap or a duplicate). */
  discontinuity: string | null;
  sha256: string | null;
}

export interface FollowersReport {
  connectMs: number;
  followers: FollowerReport[];
}

const t0 = performance.now();
const now = () => performance.now() - t0;

class Tracker {
  readonly r: FollowerReport;
  private next = 0;
  private readonly hash: Hash | null;

  constructor(jobId: string, hash: boolean) {
    this.r = { jobId, bytes: 0, frames: 0, firstAtMs: null, lastAtMs: null, endAtMs: null, endWallMs: null, ended: false, error: null, discontinuity: null, sha256: null };
    this.hash = hash ? createHash('sha256') : null;
  }

  data(attempt: number, offset: number, bytes: number, raw: () => Buffer): void {
    const at = now();
    this.r.firstAtMs ??= at;
    this.r.lastAtMs = at;
    this.r.frames++;
    if (attempt !== 1 || offset !== this.next) this.r.discontinuity ??= `attempt ${attempt} offset ${offset} where ${this.next} was due`;
    this.next = offset + bytes;
    this.r.bytes += bytes;
    this.hash?.update(raw());
  }

  end(): void {
    this.r.ended = true;
    this.r.endAtMs = now();
    this.r.endWallMs = Date.now();
    if (this.hash) this.r.sha256 = this.hash.digest('hex');
  }
}

function followWs(c: FollowersConfig, jobId: string, t: Tracker, onOpen: () => void): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(c.url, { headers: { authorization: `Bearer ${c.token}` }, perMessageDeflate: false, maxPayload: 256 << 20 });
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      if (error && !t.r.ended) t.r.error ??= error;
      ws.terminate();
      resolve();
    };
    ws.on('open', () => {
      ws.send(JSON.stringify({ op: 'follow', jobId }));
      onOpen();
    });
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as { type: string; attempt: number; offset: number; data: string; encoding?: string; code?: string; message?: string };
      if (f.type === 'log') {
        const enc = f.encoding === 'base64' ? 'base64' : 'utf8';
        t.data(f.attempt, f.offset, Buffer.byteLength(f.data, enc), () => Buffer.from(f.data, enc));
      } else if (f.type === 'end') {
        t.end();
        finish();
      } else if (f.type === 'error') finish(`${f.code}: ${f.message}`);
    });
    ws.on('error', (e) => finish(e.message));
    ws.on('close', () => finish('closed without end'));
  });
}

function followGrpc(c: FollowersConfig, client: grpc.Client & Record<string, unknown>, jobId: string, t: Tracker, onOpen: () => void): Promise<void> {
  return new Promise((resolve) => {
    const call = (client.Logs as (req: unknown) => grpc.ClientReadableStream<{ chunk?: { attempt: number; offset: number; data: Buffer }; end?: unknown }>).call(client, { jobId, follow: true });
    onOpen();
    call.on('data', (m) => {
      if (m.chunk) t.data(m.chunk.attempt, m.chunk.offset ?? 0, m.chunk.data.length, () => m.chunk!.data);
      else if (m.end) t.end();
    });
    call.on('error', (e: Error) => {
      t.r.error ??= e.message;
      resolve();
    });
    call.on('end', () => {
      if (!t.r.ended) t.r.error ??= 'the stream ended without LogEnd';
      resolve();
    });
  });
}

async function main(c: FollowersConfig): Promise<void> {
  const total = c.jobs.reduce((n, j) => n + j.followers, 0);
  let open = 0;
  let connectMs = 0;
  const onOpen = () => {
    if (++open === total) {
      connectMs = now();
      process.stderr.write(`followers: ${total} following\n`);
    }
  };
  const trackers: Tracker[] = [];
  const runs: Promise<void>[] = [];
  let client: (grpc.Client & Record<string, unknown>) | null = null;
  if (c.kind === 'grpc') {
    const Client = jobServiceClient();
    client = new Client(c.url, grpc.credentials.createSsl(Buffer.from(c.ca!), Buffer.from(c.key!), Buffer.from(c.cert!)), {
      ...CLIENT_CHANNEL_OPTIONS,
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.max_receive_message_length': 64 << 20,
    }) as grpc.Client & Record<string, unknown>;
  }
  for (const j of c.jobs) {
    for (let i = 0; i < j.followers; i++) {
      const t = new Tracker(j.jobId, c.hash ?? false);
      trackers.push(t);
      runs.push(c.kind === 'ws' ? followWs(c, j.jobId, t, onOpen) : followGrpc(c, client!, j.jobId, t, onOpen));
    }
  }
  const timeout = setTimeout(() => {
    for (const t of trackers) if (!t.r.ended) t.r.error ??= 'timed out';
    report();
  }, c.timeoutMs ?? 600_000);
  const report = () => {
    clearTimeout(timeout);
    const out: FollowersReport = { connectMs, followers: trackers.map((t) => t.r) };
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  };
  await Promise.all(runs);
  report();
}

if (require.main === module) {
  main(JSON.parse(process.argv[2] ?? '{}') as FollowersConfig).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
