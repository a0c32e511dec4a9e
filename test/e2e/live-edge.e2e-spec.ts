import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as https from 'node:https';
import * as tls from 'node:tls';
import WebSocket from 'ws';
import { createApiApp, type ApiApp } from '../../apps/api/src/api.module';
import { jobServiceClient } from '../../apps/api/src/grpc/jobs.proto-loader';
import { createCa, issueCertificate, type KeyPairPem } from '../../apps/cli/src/certs/dev-pki';
import { logsCommand, startCommand, statusCommand, stopCommand, type Output } from '../../apps/cli/src/remote/job-commands';
import { EXIT, JobsRemote, exitCodeFor } from '../../apps/cli/src/remote/jobs-remote';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { startDevStack, sha256Hex, type DevStack } from '../../apps/cli/src/dev-stack';
import { RestClient, quietLogger } from './support';

type Frame = Record<string, unknown> & { type: string };

/** A WebSocket client as a script would write one: frames kept in arrival order. */
class WsClient {
  readonly frames: Frame[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(String(data)) as Frame);
      for (const w of this.waiters.splice(0)) w();
    });
    ws.on('close', () => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static open(url: string, token: string): Promise<WsClient> {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('error', reject);
    });
  }

  /** With other client options (e.g. a TLS client certificate instead of a token). */
  static openWith(url: string, options: WebSocket.ClientOptions): Promise<WsClient> {
    const ws = new WebSocket(url, options);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new WsClient(ws)));
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Waits until a frame matches (checking the ones already received first). */
  async until(pred: (f: Frame) => boolean, what: string, timeoutMs = 30_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.find(pred);
      if (hit) return hit;
      if (this.ws.readyState !== WebSocket.OPEN) throw new Error(`connection closed while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 250);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.terminate();
  }
}

const bytesOf = (f: Frame) => Buffer.from(f.data as string, f.encoding === 'base64' ? 'base64' : 'utf8');

/** The log frames of one job, checked contiguous, joined. */
function joined(frames: Frame[], jobId: string, start = 0): Buffer {
  const logs = frames.filter((f) => f.type === 'log' && f.jobId === jobId);
  let next = start;
  for (const f of logs) {
    expect(f.offset).toBe(next);
    next += bytesOf(f).length;
  }
  return Buffer.concat(logs.map(bytesOf));
}

/* eslint-disable @typescript-eslint/no-explicit-any -- gRPC messages as proto-loader gives them */
type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: any) => void) => void;

/** A JobService client as a tool would use it, with promise-returning calls. */
class GrpcJobs {
  readonly client: grpc.Client & Record<string, any>;
  constructor(port: number, ca: KeyPairPem, me: KeyPairPem) {
    const Client = jobServiceClient();
    this.client = new Client(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(ca.certPem), Buffer.from(me.keyPem), Buffer.from(me.certPem)), {
      // The server certificate names localhost and 127.0.0.1; an IP is not a valid TLS server name (SNI).
      'grpc.ssl_target_name_override': 'localhost',
    }) as any;
  }
  call(method: string, req: unknown): Promise<any> {
    return new Promise((resolve, reject) => (this.client[method] as Unary).call(this.client, req, (err, res) => (err ? reject(err) : resolve(res))));
  }
  /** A server stream read to its end (or its error). */
  stream(method: string, req: unknown): Promise<any[]> {
    const call = this.client[method](req) as grpc.ClientReadableStream<any>;
    const items: any[] = [];
    return new Promise((resolve, reject) => {
      call.on('data', (m) => items.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(items));
    });
  }
  close(): void {
    this.client.close();
  }
}

const grpcCode = (p: Promise<unknown>) =>
  p.then(
    () => 'OK',
    (e: grpc.ServiceError) => grpc.status[e.code],
  );

/**
 * What a raw TLS client sees: 'accepted' when the server answers the HTTP/2 preface,
 * else the error that ended the connection (a handshake refusal).
 */
function tlsOutcome(port: number, opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['h2'], ...opts });
    socket.once('secureConnect', () => socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00'));
    socket.once('data', () => {
      resolve('accepted');
      socket.destroy();
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    socket.once('close', () => resolve('closed'));
  });
}
/* eslint-enable @typescript-eslint/no-explicit-any */

describe('live edge: WebSocket /v1/ws and gRPC (jobline dev stack in-process)', () => {
  let dir: TempDir;
  let stack: DevStack;
  let wsUrl: string;
  const aliceToken = `alice-${randomUUID()}`;
  const bobToken = `bob-${randomUUID()}`;
  let alice: RestClient;
  let bob: RestClient;
  let ca: KeyPairPem;
  const certs: Record<string, KeyPairPem> = {};

  const writeTlsDir = (folder: string, pem: { ca: string; cert: string; key: string }) => {
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'ca.crt'), pem.ca);
    writeFileSync(join(folder, 'server.crt'), pem.cert);
    writeFileSync(join(folder, 'server.key'), pem.key, { mode: 0o600 });
    return folder;
  };

  beforeAll(async () => {
    dir = tempDir();
    ca = await createCa();
    const server = await issueCertificate(ca, { commonName: 'localhost', serverNames: ['localhost', '127.0.0.1'] });
    certs.alice = await issueCertificate(ca, { commonName: 'alice' });
    certs.bob = await issueCertificate(ca, { commonName: 'bob' });
    certs.root = await issueCertificate(ca, { commonName: 'root', admin: true });
    certs.expired = await issueCertificate(ca, { commonName: 'alice', notBefore: new Date(Date.now() - 3 * 86400_000), notAfter: new Date(Date.now() - 86400_000) });
    certs.foreign = await issueCertificate(await createCa({ commonName: 'Someone else' }), { commonName: 'alice' });
    stack = await startDevStack({
      dataDir: join(dir.path, 'data'),
      apiPort: 0,
      executorCapacity: 4,
      graceMs: 1000,
      logger: quietLogger,
      extraTokens: [
        { sha256: sha256Hex(aliceToken), owner: 'alice' },
        { sha256: sha256Hex(bobToken), owner: 'bob' },
      ],
      // As deployed: the certificates in a TLS folder, gRPC on a port, both from the environment.
      env: { JOBLINE_TLS_DIR: writeTlsDir(join(dir.path, 'tls'), { ca: ca.certPem, cert: server.certPem, key: server.keyPem }), JOBLINE_GRPC_PORT: '0' },
    });
    wsUrl = `${stack.apiUrl!.replace(/^http/, 'ws')}/v1/ws`;
    alice = new RestClient(stack.apiUrl!, aliceToken);
    bob = new RestClient(stack.apiUrl!, bobToken);
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('a finished "Hello, world!" followed three times: exactly those bytes, then end, each time', async () => {
    const job = await alice.submit({ command: ['printf', 'Hello, world!'] });
    await alice.finished(job.id);
    for (let i = 0; i < 3; i++) {
      const c = await WsClient.open(wsUrl, aliceToken);
      c.send({ op: 'follow', jobId: job.id });
      const end = await c.until((f) => f.type === 'end', 'end');
      expect(end).toEqual({ type: 'end', jobId: job.id, status: 'succeeded', exitCode: 0, attempt: 1 });
      expect(c.frames[c.frames.length - 1]).toBe(end);
      expect(joined(c.frames, job.id).toString('utf8')).toBe('Hello, world!');
      expect(c.frames.every((f) => f.type === 'log' || f.type === 'end')).toBe(true);
      c.close();
    }
  });

  it('a counter 0..1000 followed live, cut and resumed from the last offset: every number exactly once', async () => {
    const job = await alice.submit({ command: 'i=0; while [ $i -le 1000 ]; do echo $i; i=$((i+1)); if [ $((i % 50)) -eq 0 ]; then sleep 0.05; fi; done' });
    const first = await WsClient.open(wsUrl, aliceToken);
    first.send({ op: 'follow', jobId: job.id });
    await first.until((f) => f.type === 'log', 'a first log frame');
    first.close();
    const got = joined(first.frames, job.id);
    const last = first.frames.filter((f) => f.type === 'log').pop()!;
    const resumeFrom = (last.offset as number) + bytesOf(last).length;
    expect(resumeFrom).toBe(got.length);

    const second = await WsClient.open(wsUrl, aliceToken);
    second.send({ op: 'follow', jobId: job.id, attempt: last.attempt, from: resumeFrom });
    await second.until((f) => f.type === 'end', 'end');
    second.close();
    const text = Buffer.concat([got, joined(second.frames, job.id, resumeFrom)]).toString('utf8');
    expect(text).toBe(Array.from({ length: 1001 }, (_, i) => `${i}\n`).join(''));
  });

  it('binary output, all 256 byte values, arrives byte for byte', async () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const job = await alice.submit({ command: [process.execPath, '-e', 'process.stdout.write(Buffer.from(Array.from({length: 256}, (_, i) => i)))'] });
    const c = await WsClient.open(wsUrl, aliceToken);
    c.send({ op: 'follow', jobId: job.id });
    const end = await c.until((f) => f.type === 'end', 'end');
    c.close();
    expect(end).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(joined(c.frames, job.id).equals(all)).toBe(true);
    expect(c.frames.some((f) => f.encoding === 'base64')).toBe(true);
  });

  it('another owner cannot follow, watch or see the job: NOT_FOUND exactly like a missing job', async () => {
    const watchA = await WsClient.open(wsUrl, aliceToken);
    const watchB = await WsClient.open(wsUrl, bobToken);
    watchA.send({ op: 'watch' });
    watchB.send({ op: 'watch' });
    // A watch is registered once its frame is handled; a follow error sent after it proves that.
    for (const c of [watchA, watchB]) {
      c.send({ op: 'unfollow', jobId: 'nothing' });
      await c.until((f) => f.type === 'error', 'the unfollow error');
    }

    const sleeper = await alice.submit({ command: ['sleep', '2'] });
    const missing = randomUUID();
    const follower = await WsClient.open(wsUrl, bobToken);
    follower.send({ op: 'follow', jobId: sleeper.id });
    follower.send({ op: 'follow', jobId: missing });
    const errs = [
      await follower.until((f) => f.type === 'error' && f.jobId === sleeper.id, 'error for A’s job'),
      await follower.until((f) => f.type === 'error' && f.jobId === missing, 'error for a missing job'),
    ];
    expect(errs[0]).toEqual({ type: 'error', code: 'NOT_FOUND', message: `job ${sleeper.id} not found`, jobId: sleeper.id });
    expect(errs[1]).toEqual({ type: 'error', code: 'NOT_FOUND', message: `job ${missing} not found`, jobId: missing });
    expect(follower.ws.readyState).toBe(WebSocket.OPEN);
    follower.close();
    expect((await bob.request(`/v1/jobs/${sleeper.id}`)).status).toBe(404);

    await alice.finished(sleeper.id);
    await watchA.until((f) => f.type === 'status' && f.jobId === sleeper.id && f.status === 'succeeded', 'A sees her job end');
    // Every status the job passed through, from its events (not sampled from the view): pending and queued too.
    const passedThrough = watchA.frames.filter((f) => f.type === 'status' && f.jobId === sleeper.id).map((f) => f.status as string);
    expect(passedThrough.filter((st, i) => st !== passedThrough[i - 1])).toEqual(['pending', 'queued', 'running', 'succeeded']);
    // B's own job, submitted after A's ended: once B sees it end, B's watch has had every chance to show A's.
    const own = await bob.submit({ command: ['true'] });
    await bob.finished(own.id);
    await watchB.until((f) => f.type === 'status' && f.jobId === own.id && f.status === 'succeeded', 'B sees his job end');
    expect(watchB.frames.filter((f) => f.type === 'status').every((f) => f.owner === 'bob')).toBe(true);
    expect(watchB.frames.some((f) => f.jobId === sleeper.id)).toBe(false);
    const statuses = watchA.frames.filter((f) => f.jobId === sleeper.id).map((f) => f.status);
    expect(statuses[statuses.length - 1]).toBe('succeeded');
    expect(watchA.frames.some((f) => f.jobId === own.id)).toBe(false);
    watchA.close();
    watchB.close();
  });

  it('a follower that stops reading is held back, then gets every byte once it reads again', async () => {
    const size = 8_000_000;
    const job = await alice.submit({ command: `head -c ${size} /dev/zero | tr '\\0' x` });
    const c = await WsClient.open(wsUrl, aliceToken);
    c.ws.pause();
    c.send({ op: 'follow', jobId: job.id });
    await alice.finished(job.id);
    c.ws.resume();
    const end = await c.until((f) => f.type === 'end', 'end', 60_000);
    c.close();
    expect(end).toMatchObject({ status: 'succeeded', exitCode: 0 });
    const got = joined(c.frames, job.id);
    expect(got.length).toBe(size);
    expect(got.equals(Buffer.alloc(size, 'x'))).toBe(true);
  });

  it('many followers of one live job, joining early, midway, from offsets or reading slowly: each gets every byte once, then end', async () => {
    // ~8 MB in 100 KB steps every 20 ms, each line numbered: followers share one live reader, a slow one leaves it.
    const script = `let i = 0; const t = setInterval(() => { let s = ''; for (let k = 0; k < 1000; k++) s += String(i * 1000 + k).padStart(99, '.') + '\\n'; process.stdout.write(s); if (++i === 80) clearInterval(t); }, 20);`;
    const job = await alice.submit({ command: [process.execPath, '-e', script] });
    const early = await Promise.all(Array.from({ length: 5 }, () => WsClient.open(wsUrl, aliceToken)));
    for (const c of early) c.send({ op: 'follow', jobId: job.id });
    const slow = await WsClient.open(wsUrl, aliceToken);
    slow.ws.pause();
    slow.send({ op: 'follow', jobId: job.id });
    await early[0].until((f) => f.type === 'log' && (f.offset as number) > 1_000_000, 'output past 1 MB');
    const late = await Promise.all(Array.from({ length: 5 }, () => WsClient.open(wsUrl, aliceToken)));
    const froms = [0, 1, 12_345, 500_000, 2_000_000];
    late.forEach((c, i) => c.send({ op: 'follow', jobId: job.id, from: froms[i] }));
    await alice.finished(job.id);
    slow.ws.resume();
    const full = Buffer.from(await (await alice.request(`/v1/jobs/${job.id}/logs`)).arrayBuffer());
    expect(full.length).toBe(8_000_000);
    for (const [c, from] of [...early.map((c) => [c, 0] as const), [slow, 0] as const, ...late.map((c, i) => [c, froms[i]] as const)]) {
      expect(await c.until((f) => f.type === 'end', 'end', 60_000)).toMatchObject({ status: 'succeeded', exitCode: 0 });
      expect(joined(c.frames, job.id, from).equals(full.subarray(from))).toBe(true);
      c.close();
    }
  });

  it('bad frames get an error frame and the connection stays usable', async () => {
    const c = await WsClient.open(wsUrl, aliceToken);
    c.send('{"op": "follow"');
    const bad = await c.until((f) => f.type === 'error', 'error for bad JSON');
    expect(bad).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'the frame is not valid JSON' });
    c.send({ op: 'dance' });
    await c.until((f) => f.type === 'error' && String(f.message).startsWith('unknown op "dance"'), 'error for an unknown op');
    c.send({ op: 'follow', jobId: 42 });
    await c.until((f) => f.type === 'error' && String(f.message).startsWith('invalid follow frame'), 'error for a bad follow');
    const job = await alice.submit({ command: ['printf', 'still here'] });
    c.send({ op: 'follow', jobId: job.id });
    await c.until((f) => f.type === 'end' && f.jobId === job.id, 'end');
    expect(joined(c.frames, job.id).toString()).toBe('still here');
    c.close();
  });

  it('refuses an upgrade without a valid token with the REST API\'s 401 problem; an unknown path is a 404 problem; ?token= works for browsers', async () => {
    const refusal = (url: string, headers: Record<string, string>) =>
      new Promise<{ status: number; type: string; body: unknown }>((resolve) => {
        const ws = new WebSocket(url, { headers });
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: JSON.parse(body) }));
        });
        ws.once('open', () => resolve({ status: 101, type: '', body: null }));
        ws.once('error', () => undefined);
      });
    for (const headers of [{}, { authorization: 'Bearer nope' }] as Record<string, string>[]) {
      const r = await refusal(wsUrl, headers);
      const rest = await fetch(`${stack.apiUrl}/v1/jobs`, { headers });
      expect(r.status).toBe(401);
      expect(r.type).toBe('application/problem+json');
      expect(r.body).toEqual(await rest.json());
      expect(r.body).toMatchObject({ type: 'urn:jobline:problem:unauthenticated', status: 401, code: 'unauthenticated' });
    }
    const wrongPath = await refusal(wsUrl.replace('/v1/ws', '/v1/nope'), { authorization: `Bearer ${aliceToken}` });
    expect(wrongPath).toMatchObject({ status: 404, type: 'application/problem+json', body: { status: 404, code: 'not_found' } });
    const ws = new WebSocket(`${wsUrl}?token=${encodeURIComponent(bobToken)}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.terminate();
    await eventually(() => ws.readyState === WebSocket.CLOSED, 5000, 'closed');
  });

  describe('gRPC JobService over mTLS', () => {
    const port = () => stack.grpcPort!;

    it('accepts a client certificate of the CA over TLS 1.3', async () => {
      expect(await tlsOutcome(port(), { ca: ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem })).toBe('accepted');
    });

    // No certificate: OpenSSL's alert 116 (certificate_required). TLS 1.2: alert 70 (protocol_version).
    // Another CA / expired: node verifies the chain as the handshake ends and closes the connection
    // before a single HTTP/2 byte (it sends no alert for these; the client sees the connection closed).
    it.each([
      ['no client certificate', () => ({ ca: ca.certPem }), /^ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED$/],
      ['a certificate from another CA', () => ({ ca: ca.certPem, cert: certs.foreign.certPem, key: certs.foreign.keyPem }), /^(closed|ECONNRESET)$/],
      ['an expired certificate', () => ({ ca: ca.certPem, cert: certs.expired.certPem, key: certs.expired.keyPem }), /^(closed|ECONNRESET)$/],
      ['a client limited to TLS 1.2', () => ({ ca: ca.certPem, cert: certs.alice.certPem, key: certs.alice.keyPem, maxVersion: 'TLSv1.2' as const }), /^ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION$/],
    ])('refuses %s at the handshake', async (_what, opts, expected) => {
      expect(await tlsOutcome(port(), opts())).toMatch(expected);
      const client = opts() as { cert?: string; key?: string };
      // And a gRPC client with the same credentials never gets an answer.
      if (client.cert && !('maxVersion' in opts())) {
        const c = new GrpcJobs(port(), ca, { certPem: client.cert, keyPem: client.key! });
        expect(await grpcCode(c.call('List', {}))).toBe('UNAVAILABLE');
        c.close();
      }
    });

    it('owner B gets NOT_FOUND for A’s job on every call, A’s job keeps running, and B never lists or watches it', async () => {
      const a = new GrpcJobs(port(), ca, certs.alice);
      const b = new GrpcJobs(port(), ca, certs.bob);
      const watchB = b.client.Watch({}) as grpc.ClientReadableStream<{ jobId: string; owner: string; status: string }>;
      const seenByB: { jobId: string; owner: string; status: string }[] = [];
      watchB.on('data', (m) => seenByB.push(m));
      watchB.on('error', () => undefined);

      const { job } = await a.call('Start', { spec: { script: 'sleep 2; echo done' } });
      expect(job.owner).toBe('alice');
      await eventually(async () => (await a.call('Status', { jobId: job.id })).job.status === 'JOB_STATUS_RUNNING', 15_000, 'running');
      const missing = randomUUID();
      for (const id of [job.id, missing]) {
        expect(await grpcCode(b.call('Status', { jobId: id }))).toBe('NOT_FOUND');
        expect(await grpcCode(b.call('Stop', { jobId: id }))).toBe('NOT_FOUND');
        expect(await grpcCode(b.stream('Logs', { jobId: id }))).toBe('NOT_FOUND');
        expect(await grpcCode(b.stream('History', { jobId: id }))).toBe('NOT_FOUND');
        expect(await grpcCode(b.stream('Watch', { jobId: id }).then(() => undefined))).toBe('NOT_FOUND');
      }
      const list = await b.call('List', {});
      expect((list.items ?? []).every((j: { owner: string }) => j.owner === 'bob')).toBe(true);
      expect((list.items ?? []).some((j: { id: string }) => j.id === job.id)).toBe(false);
      expect(await grpcCode(b.call('List', { owner: 'alice' }))).toBe('PERMISSION_DENIED');

      const done = await eventually(async () => {
        const s = (await a.call('Status', { jobId: job.id })).job;
        return s.status === 'JOB_STATUS_RUNNING' || s.status === 'JOB_STATUS_QUEUED' ? undefined : s;
      }, 20_000, 'alice’s job to end');
      expect(done.status).toBe('JOB_STATUS_SUCCEEDED');
      expect(done.cancelRequested ?? false).toBe(false);
      const history = await a.stream('History', { jobId: job.id });
      expect(history.map((e) => e.type)).not.toContain('JobCancelRequested');
      expect(history[0]).toMatchObject({ type: 'JobSubmitted', streamRevision: 0 });

      // B's own job, after A's ended: once B's watch shows it, it has had every chance to show A's.
      const own = (await b.call('Start', { spec: { argv: { args: ['true'] } } })).job;
      await eventually(() => seenByB.some((m) => m.jobId === own.id && m.status === 'JOB_STATUS_SUCCEEDED'), 20_000, 'B to watch his job end');
      expect(seenByB.every((m) => m.owner === 'bob')).toBe(true);
      // The admin sees everyone's.
      const root = new GrpcJobs(port(), ca, certs.root);
      expect((await root.call('Status', { jobId: job.id })).job.owner).toBe('alice');
      watchB.cancel();
      for (const c of [a, b, root]) c.close();
    });

    it('Watch shows every status a job passes through, pending and queued included (from its events)', async () => {
      const a = new GrpcJobs(port(), ca, certs.alice);
      const watch = a.client.Watch({}) as grpc.ClientReadableStream<{ jobId: string; status: string; eventType: string }>;
      const seen: { jobId: string; status: string; eventType: string }[] = [];
      watch.on('data', (m) => seen.push(m));
      watch.on('error', () => undefined);
      // The watch is registered once it shows a job: start probes (one at a time) until it does.
      const probes: string[] = [];
      await eventually(async () => {
        if (seen.some((m) => probes.includes(m.jobId))) return true;
        const last = probes.at(-1);
        if (last === undefined || (await a.call('Status', { jobId: last })).job.status === 'JOB_STATUS_SUCCEEDED') {
          probes.push((await a.call('Start', { spec: { argv: { args: ['true'] } } })).job.id);
        }
        return undefined;
      }, 20_000, 'the watch to show a probe');

      const { job } = await a.call('Start', { spec: { argv: { args: ['true'] } } });
      await eventually(() => seen.some((m) => m.jobId === job.id && m.status === 'JOB_STATUS_SUCCEEDED'), 20_000, 'the job to end');
      const statuses = seen.filter((m) => m.jobId === job.id).map((m) => m.status);
      expect(statuses.filter((s, i) => s !== statuses[i - 1])).toEqual(['JOB_STATUS_PENDING', 'JOB_STATUS_QUEUED', 'JOB_STATUS_RUNNING', 'JOB_STATUS_SUCCEEDED']);
      expect(seen.filter((m) => m.jobId === job.id)[0].eventType).toBe('JobSubmitted');
      watch.cancel();
      a.close();
    });

    it('Logs follows a job byte for byte (all 256 byte values), then end; finished jobs follow the same way', async () => {
      const a = new GrpcJobs(port(), ca, certs.alice);
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const { job } = await a.call('Start', { spec: { argv: { args: [process.execPath, '-e', 'setTimeout(() => process.stdout.write(Buffer.from(Array.from({length: 256}, (_, i) => i))), 300)'] } } });
      for (let i = 0; i < 3; i++) {
        const items = await a.stream('Logs', { jobId: job.id, follow: true });
        const chunks = items.filter((m) => m.chunk).map((m) => m.chunk);
        expect(Buffer.concat(chunks.map((c) => c.data as Buffer)).equals(all)).toBe(true);
        expect(items[items.length - 1].end).toMatchObject({ status: 'JOB_STATUS_SUCCEEDED', exitCode: 0, attempt: 1 });
      }
      // From an offset: the rest, cut exactly there.
      const rest = await a.stream('Logs', { jobId: job.id, offset: 200 });
      expect(Buffer.concat(rest.map((m) => m.chunk.data as Buffer)).equals(all.subarray(200))).toBe(true);
      expect(rest[0].chunk.offset).toBe(200);
      a.close();
    });

    it('status codes: INVALID_ARGUMENT for a bad spec, FAILED_PRECONDITION for stopping a finished job', async () => {
      const a = new GrpcJobs(port(), ca, certs.alice);
      expect(await grpcCode(a.call('Start', { spec: { argv: { args: [] } } }))).toBe('INVALID_ARGUMENT');
      expect(await grpcCode(a.call('Start', {}))).toBe('INVALID_ARGUMENT');
      const { job } = await a.call('Start', { spec: { script: 'true' } });
      await eventually(async () => (await a.call('Status', { jobId: job.id })).job.status === 'JOB_STATUS_SUCCEEDED', 20_000, 'succeeded');
      expect(await grpcCode(a.call('Stop', { jobId: job.id }))).toBe('FAILED_PRECONDITION');
      a.close();
    });

    it('the CLI commands: start, logs -f (exits with the job\'s code, stdout and stderr apart), status, stop', async () => {
      const files = join(dir.path, 'cli');
      mkdirSync(files, { recursive: true });
      const paths = { ca: join(files, 'ca.crt'), cert: join(files, 'alice.crt'), key: join(files, 'alice.key') };
      writeFileSync(paths.ca, ca.certPem);
      writeFileSync(paths.cert, certs.alice.certPem);
      writeFileSync(paths.key, certs.alice.keyPem);
      const remote = new JobsRemote({ address: `127.0.0.1:${port()}`, ...paths });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const io: Output = { out: (d) => void out.push(Buffer.from(d)), err: (d) => void err.push(Buffer.from(d)) };
      expect(await startCommand(remote, ['echo out; echo err >&2; exit 7'], {}, false, io)).toBe(EXIT.ok);
      const id = Buffer.concat(out.splice(0)).toString().trim();
      expect(await logsCommand(remote, id, true, false, io)).toBe(7);
      expect(Buffer.concat(out.splice(0)).toString()).toBe('out\n');
      expect(Buffer.concat(err.splice(0)).toString()).toBe('err\n');
      expect(await statusCommand(remote, id, false, io)).toBe(EXIT.ok);
      expect(Buffer.concat(out.splice(0)).toString()).toMatch(/^status +failed$/m);
      expect(await stopCommand(remote, id, false, io).catch(exitCodeFor)).toBe(EXIT.failedPrecondition);
      expect(await statusCommand(remote, randomUUID(), false, io).catch(exitCodeFor)).toBe(EXIT.notFound);
      remote.close();
    });
  });

  describe('REST and WebSocket over HTTPS: a verified client certificate names the caller', () => {
    let api: ApiApp;
    let base: string;
    let tlsCa: string;

    /** An HTTPS GET as curl --cacert [--cert --key] makes it: no connection or TLS session shared between calls. */
    const get = (path: string, o: { cert?: KeyPairPem; token?: string; maxVersion?: tls.SecureVersion } = {}) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request(`${base}${path}`, {
          agent: false,
          ca: tlsCa,
          servername: 'localhost',
          ...(o.cert ? { cert: o.cert.certPem, key: o.cert.keyPem } : {}),
          ...(o.maxVersion ? { maxVersion: o.maxVersion } : {}),
          headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
        });
        req.once('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        });
        req.once('error', reject);
        req.end();
      });
    const owners = (body: string) => (JSON.parse(body) as { items: { id: string; owner: string }[] }).items;
    const wssUrl = () => `${base.replace(/^https/, 'wss')}/v1/ws`;
    const upgradeStatus = (opts: WebSocket.ClientOptions) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(wssUrl(), { ca: tlsCa, ...opts });
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.once('open', () => {
          resolve(101);
          ws.terminate();
        });
        ws.once('error', () => resolve(-1));
      });

    beforeAll(async () => {
      // A second api instance on the same stack (the design runs many), this one over HTTPS.
      const server = await issueCertificate(ca, { commonName: 'localhost', serverNames: ['localhost', '127.0.0.1'] });
      tlsCa = ca.certPem;
      api = await createApiApp({
        nc: stack.nc,
        eventStore: stack.eventStore,
        projection: stack.projection,
        tokens: [
          { sha256: sha256Hex(aliceToken), owner: 'alice' },
          { sha256: sha256Hex(bobToken), owner: 'bob' },
        ],
        port: 0,
        logger: false,
        ensureStreams: false,
        tls: { ca: ca.certPem, cert: server.certPem, key: server.keyPem },
      });
      base = api.url;
    });
    afterAll(async () => {
      await api?.close();
    });

    it('GET /v1/jobs with alice’s certificate and no token: 200, alice’s jobs only; OU=admin sees everyone’s', async () => {
      expect(base).toMatch(/^https:\/\//);
      const mine = await alice.submit({ command: ['true'] });
      const theirs = await bob.submit({ command: ['true'] });
      const res = await get('/v1/jobs?limit=100', { cert: certs.alice });
      expect(res.status).toBe(200);
      const items = owners(res.body);
      expect(items.map((j) => j.id)).toContain(mine.id);
      expect(items.every((j) => j.owner === 'alice')).toBe(true);
      expect((await get(`/v1/jobs/${theirs.id}`, { cert: certs.alice })).status).toBe(404);
      expect((await get(`/v1/jobs/${mine.id}`, { cert: certs.alice })).status).toBe(200);
      const all = owners((await get('/v1/jobs?limit=100', { cert: certs.root })).body).map((j) => j.id);
      expect(all).toEqual(expect.arrayContaining([mine.id, theirs.id]));
    });

    it('a certificate from another CA or an expired one grants nothing: 401, unless a bearer token names the caller', async () => {
      for (const cert of [certs.foreign, certs.expired]) {
        const res = await get('/v1/jobs', { cert });
        expect(res.status).toBe(401);
        expect(JSON.parse(res.body)).toMatchObject({ status: 401, code: 'unauthenticated' });
        const withToken = await get('/v1/jobs?limit=100', { cert, token: bobToken });
        expect(withToken.status).toBe(200);
        expect(owners(withToken.body).every((j) => j.owner === 'bob')).toBe(true);
      }
      expect((await get('/v1/jobs')).status).toBe(401);
      expect((await get('/v1/jobs', { token: 'nope' })).status).toBe(401);
      expect((await get('/v1/jobs', { token: aliceToken })).status).toBe(200);
    });

    it('refuses a client limited to TLS 1.2 at the handshake', async () => {
      await expect(get('/healthz', { maxVersion: 'TLSv1.2' })).rejects.toMatchObject({ code: 'EPROTO', message: expect.stringMatching(/alert protocol version/i) });
    });

    it('WebSocket upgrade with a client certificate: follows the owner’s jobs, not another owner’s; a foreign certificate is 401', async () => {
      const mine = await alice.submit({ command: ['printf', 'over wss'] });
      const theirs = await bob.submit({ command: ['true'] });
      const client = await WsClient.openWith(wssUrl(), { ca: tlsCa, cert: certs.alice.certPem, key: certs.alice.keyPem });
      client.send({ op: 'follow', jobId: mine.id });
      client.send({ op: 'follow', jobId: theirs.id });
      await client.until((f) => f.type === 'end' && f.jobId === mine.id, 'the end of alice’s job');
      expect(joined(client.frames, mine.id).toString()).toBe('over wss');
      expect(await client.until((f) => f.type === 'error' && f.jobId === theirs.id, 'NOT_FOUND for bob’s job')).toMatchObject({ code: 'NOT_FOUND' });
      client.close();
      expect(await upgradeStatus({ cert: certs.foreign.certPem, key: certs.foreign.keyPem })).toBe(401);
      expect(await upgradeStatus({ cert: certs.expired.certPem, key: certs.expired.keyPem })).toBe(401);
      expect(await upgradeStatus({})).toBe(401);
      expect(await upgradeStatus({ headers: { authorization: `Bearer ${bobToken}` } })).toBe(101);
    });
  });
});
