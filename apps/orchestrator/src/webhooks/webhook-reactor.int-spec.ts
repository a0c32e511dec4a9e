import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { STREAMS, decodeJobEvent, jobStreamName, subjects, webhookDeliveries, type JobEvent, type JobSpecInput, type WebhookAttempt, type WebhookPayload } from '../../../../libs/contracts/src';
import type { SqliteEventStore } from '../../../../libs/event-store/src';
import type { JetStreamPublisher } from '../../../../libs/messaging/src/publisher';
import { readWebhookAttempts } from '../../../../libs/messaging/src/webhook-attempts';
import { eventually, startTestBus, type TempDir, type TestBus } from '../../../../libs/testing/src';
import { verifyWebhook } from '../../../../libs/webhooks/src';
import { startNodeExecutor, type NodeExecutorHandle } from '../../../executor/src/node/main';
import { startTestOrchestrator, type TestOrchestrator } from '../testing/test-orchestrator';
import { WebhookReactor, type WebhookReactorOptions } from './webhook-reactor';

const quiet = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };

const SECRET = 'acme-webhook-secret-0123456789abcdef';
const OWNER_URL_PATH = '/owner-hook';

interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  at: number;
}

/** A loopback receiver: records every request; `respond` decides each answer (status, or a held promise). */
class Receiver {
  readonly requests: Received[] = [];
  respond: (r: Received, n: number) => Promise<number> | number = () => 200;
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const r: Received = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
        this.requests.push(r);
        const status = await this.respond(r, this.requests.filter((x) => x.path === r.path).length);
        res.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
      });
    });
    await new Promise<void>((ok) => this.server.listen(0, '127.0.0.1', ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  on(path: string): Received[] {
    return this.requests.filter((r) => r.path === path);
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((ok) => this.server.close(() => ok()));
  }
}

describe('webhook reactor with a real nats-server, SQLite store, Node executor and a loopback receiver', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let dir: TempDir;
  let nc: NatsConnection;
  let store: SqliteEventStore;
  let executor: NodeExecutorHandle;
  let publisher: JetStreamPublisher;
  let reactor: WebhookReactor;
  const receiver = new Receiver();

  const reactorOptions = (): WebhookReactorOptions => ({
    nc,
    eventStore: store,
    owners: { acme: { secret: SECRET, urls: [`${receiver.url}${OWNER_URL_PATH}`] }, bob: { secret: 'bob-secret-bob-secret-bob-secret-bob!' } },
    // The receiver is on loopback: this configuration allows 127.0.0.0/8 and http, nothing else private.
    policy: { allowHttp: true, allowedRanges: ['127.0.0.0/8'], timeoutMs: 10_000 },
    maxAttempts: 4,
    backoffMs: 300,
    publicUrl: 'https://jobline.example.com',
    logger: quiet,
  });

  beforeAll(async () => {
    ({ dir, nc, publisher, store } = bus = await startTestBus('webhooks-test'));
    await receiver.start();
    orch = await startTestOrchestrator(bus);
    reactor = new WebhookReactor(reactorOptions());
    await reactor.start();
    executor = await startNodeExecutor({ nc, executorId: 'hooks', capacity: 2, workRoot: join(dir.path, 'work'), graceMs: 500, heartbeatMs: 200, logger: quietExecutor });
  });

  afterAll(async () => {
    await executor?.stop();
    await reactor?.stop();
    await orch?.stop();
    await bus?.stop();
    await receiver.stop();
  });

  beforeEach(() => {
    receiver.respond = () => 200;
  });

  async function submit(spec: JobSpecInput, owner = 'bob'): Promise<string> {
    const jobId = randomUUID();
    await publisher.publish(subjects.submit(owner), { jobId, spec }, { msgId: jobId });
    return jobId;
  }
  const history = async (jobId: string): Promise<JobEvent[]> => (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  const ended = (jobId: string) =>
    eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => ['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut'].includes(e.type)) ? h : undefined;
    }, 20_000, `job ${jobId} to end`);
  const attempts = (jobId: string) => readWebhookAttempts(jetstream(nc), jobId);
  const attemptsUntil = (jobId: string, ok: (a: WebhookAttempt[]) => boolean, what: string, timeoutMs = 20_000) =>
    eventually(async () => {
      const a = await attempts(jobId);
      return ok(a) ? a : undefined;
    }, timeoutMs, what, 50);

  it('POSTs a signed payload to the job’s URL and the owner’s, and records each delivery', async () => {
    const path = `/ok-${randomUUID()}`;
    const jobId = await submit({ command: 'exit 0', notify: [{ url: `${receiver.url}${path}` }] }, 'acme');
    await ended(jobId);
    const recorded = await attemptsUntil(jobId, (a) => a.filter((x) => x.outcome === 'delivered').length === 2, 'both deliveries recorded');
    const [req] = receiver.on(path);
    const ownerReq = receiver.on(OWNER_URL_PATH).find((r) => (JSON.parse(r.body) as WebhookPayload).jobId === jobId);
    expect(ownerReq).toBeDefined();

    // The receiver's check, as the README tells receivers to do it.
    expect(verifyWebhook(SECRET, req.headers['jobline-signature'] as string, req.body)).toMatchObject({ ok: true });
    expect(verifyWebhook('another-secret-another-secret-1234', req.headers['jobline-signature'] as string, req.body)).toMatchObject({ ok: false });
    expect(verifyWebhook(SECRET, req.headers['jobline-signature'] as string, req.body.replace('"succeeded"', '"failed"'))).toMatchObject({ ok: false });
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['jobline-attempt']).toBe('1');
    expect(req.headers['jobline-event']).toBe('job.finished');
    const body = JSON.parse(req.body) as WebhookPayload;
    expect(body).toMatchObject({
      type: 'job.finished',
      jobId,
      owner: 'acme',
      status: 'succeeded',
      exitCode: 0,
      attempt: 1,
      deliveryId: req.headers['jobline-delivery'],
      links: { job: `https://jobline.example.com/v1/jobs/${jobId}`, logs: `https://jobline.example.com/v1/jobs/${jobId}/logs` },
    });
    expect(Date.parse(body.finishedAt!)).toBeGreaterThan(0);
    const deliveries = webhookDeliveries(recorded);
    expect(deliveries.map((d) => [d.source, d.state, d.attempts.length, d.attempts[0].statusCode])).toEqual([
      ['job', 'delivered', 1, 200],
      ['owner', 'delivered', 1, 200],
    ]);
    expect(new Set(deliveries.map((d) => d.deliveryId)).size).toBe(2);
  });

  it('retries a 500 with backoff, then records the 200 (same delivery id, next attempt)', async () => {
    const path = `/flaky-${randomUUID()}`;
    receiver.respond = (r, n) => (r.path === path && n === 1 ? 500 : 200);
    const jobId = await submit({ command: 'exit 3', notify: [{ url: `${receiver.url}${path}` }] });
    await ended(jobId);
    const recorded = await attemptsUntil(jobId, (a) => a.some((x) => x.outcome === 'delivered'), 'the retried delivery');
    expect(recorded.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([
      [1, 'retrying', 500],
      [2, 'delivered', 200],
    ]);
    expect(recorded[0].error).toBe('HTTP 500');
    expect(Date.parse(recorded[0].nextAttemptAt!) - Date.parse(recorded[0].at)).toBe(300);
    const reqs = receiver.on(path);
    expect(reqs.map((r) => r.headers['jobline-attempt'])).toEqual(['1', '2']);
    expect(reqs[0].headers['jobline-delivery']).toBe(reqs[1].headers['jobline-delivery']);
    // The same body on every try; only the signature's timestamp may change.
    expect(reqs[1].body).toBe(reqs[0].body);
    expect(reqs[1].at - reqs[0].at).toBeGreaterThanOrEqual(300);
    expect(JSON.parse(reqs[1].body)).toMatchObject({ status: 'failed', exitCode: 3 });
  });

  it('gives up after the last attempt and does not retry a 4xx', async () => {
    const down = `/down-${randomUUID()}`;
    const gone = `/gone-${randomUUID()}`;
    receiver.respond = (r) => (r.path === down ? 503 : r.path === gone ? 410 : 200);
    const jobId = await submit({ command: 'true', notify: [{ url: `${receiver.url}${down}` }, { url: `${receiver.url}${gone}` }] });
    const recorded = await attemptsUntil(jobId, (a) => a.filter((x) => x.outcome === 'failed').length === 2, 'both given up', 30_000);
    const [d503, d410] = webhookDeliveries(recorded);
    expect(d503.attempts.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'retrying'],
      [2, 'retrying'],
      [3, 'retrying'],
      [4, 'failed'],
    ]);
    expect(d503.attempts[3].error).toBe('HTTP 503; gave up after 4 tries');
    expect(d410.attempts.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([[1, 'failed', 410]]);
    expect(receiver.on(down)).toHaveLength(4);
    expect(receiver.on(gone)).toHaveLength(1);
  });

  it('refuses the metadata address (169.254.169.254) without requesting it, and records the refusal', async () => {
    const jobId = await submit({ command: 'true', notify: [{ url: 'http://169.254.169.254/latest/meta-data/' }, { url: 'http://10.0.0.1/hook' }] });
    const recorded = await attemptsUntil(jobId, (a) => a.length === 2, 'two refusals');
    for (const a of recorded) {
      expect(a).toMatchObject({ outcome: 'refused', attempt: 1, statusCode: null, durationMs: 0 });
      expect(a.error).toMatch(/is a private, loopback, link-local or reserved address \(JOBLINE_WEBHOOKS_ALLOW_ADDRESSES\)/);
    }
    expect(recorded.map((a) => a.error)).toEqual(expect.arrayContaining([expect.stringContaining('169.254.169.254'), expect.stringContaining('10.0.0.1')]));
    // Refused for good: never tried again.
    await new Promise((r) => setTimeout(r, 800));
    expect(await attempts(jobId)).toHaveLength(2);
  });

  it('refuses every delivery of an owner without a secret (never unsigned)', async () => {
    const path = `/nosecret-${randomUUID()}`;
    const jobId = await submit({ command: 'true', notify: [{ url: `${receiver.url}${path}` }] }, 'carol');
    const [a] = await attemptsUntil(jobId, (x) => x.length === 1, 'the refusal');
    expect(a).toMatchObject({ outcome: 'refused', statusCode: null });
    expect(a.error).toMatch(/no webhook secret is configured for owner carol/);
    expect(receiver.on(path)).toHaveLength(0);
  });

  it('sends nothing for a failure that is retried, and once for the attempt that ends the job', async () => {
    const path = `/retried-${randomUUID()}`;
    const jobId = await submit({ command: 'exit 1', retry: { maxAttempts: 2, backoffSeconds: 0 }, notify: [{ url: `${receiver.url}${path}` }] });
    await attemptsUntil(jobId, (a) => a.some((x) => x.outcome === 'delivered'), 'the delivery');
    await new Promise((r) => setTimeout(r, 500));
    const reqs = receiver.on(path);
    expect(reqs).toHaveLength(1);
    expect(JSON.parse(reqs[0].body)).toMatchObject({ status: 'failed', exitCode: 1, attempt: 2 });
    expect((await history(jobId)).filter((e) => e.type === 'JobCompleted')).toHaveLength(2);
  });

  it('a slow receiver does not delay the job’s completion nor the next job', async () => {
    const path = `/slow-${randomUUID()}`;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    receiver.respond = async (r) => {
      if (r.path === path) await held;
      return 200;
    };
    try {
      const slow = await submit({ command: 'true', notify: [{ url: `${receiver.url}${path}` }] });
      await eventually(() => receiver.on(path).length === 1, 20_000, 'the slow request');
      // The job ended before its webhook was even sent, and the request is still open.
      const completedAt = Date.parse((await history(slow)).find((e) => e.type === 'JobCompleted')!.data.finishedAt);
      expect(completedAt).toBeLessThanOrEqual(receiver.on(path)[0].at);
      const next = await submit({ command: 'true' });
      await ended(next);
      expect(await attempts(slow)).toEqual([]);
    } finally {
      release();
    }
    const slowId = (JSON.parse(receiver.on(path)[0].body) as WebhookPayload).jobId;
    await attemptsUntil(slowId, (a) => a.some((x) => x.outcome === 'delivered'), 'the slow delivery');
  });

  it('a reactor restarted while a delivery waits for its retry resumes it', async () => {
    const path = `/restart-${randomUUID()}`;
    receiver.respond = (r, n) => (r.path === path && n === 1 ? 502 : 200);
    await reactor.stop();
    reactor = new WebhookReactor({ ...reactorOptions(), backoffMs: 2000 });
    await reactor.start();
    const jobId = await submit({ command: 'true', notify: [{ url: `${receiver.url}${path}` }] });
    const [first] = await attemptsUntil(jobId, (a) => a.length === 1, 'the failed first try');
    expect(first).toMatchObject({ attempt: 1, outcome: 'retrying', statusCode: 502 });
    await reactor.stop();
    const stoppedAt = Date.now();
    expect(stoppedAt).toBeLessThan(Date.parse(first.nextAttemptAt!));
    reactor = new WebhookReactor(reactorOptions());
    await reactor.start();
    const recorded = await attemptsUntil(jobId, (a) => a.some((x) => x.outcome === 'delivered'), 'the resumed delivery');
    expect(recorded.map((a) => [a.attempt, a.outcome])).toEqual([
      [1, 'retrying'],
      [2, 'delivered'],
    ]);
    const reqs = receiver.on(path);
    expect(reqs.map((r) => r.headers['jobline-attempt'])).toEqual(['1', '2']);
    expect(reqs[1].headers['jobline-delivery']).toBe(reqs[0].headers['jobline-delivery']);
    // The server kept the backoff: the retry came no earlier than planned, across the restart.
    expect(reqs[1].at).toBeGreaterThanOrEqual(Date.parse(first.nextAttemptAt!) - 50);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info(STREAMS.webhookOrders)).state.messages).toBe(0);
  });
});
