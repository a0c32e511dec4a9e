import { createHash, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import type { WebhookDeliveryView, WebhookPayload } from '../../libs/contracts/src';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { verifyWebhook } from '../../libs/webhooks/src';
import { RestClient, quietLogger } from './support';

const ACME_SECRET = randomUUID() + randomUUID();
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

/** A user's journey: webhooks named in a REST submission, delivered, shown over REST, resumed after a restart. */
describe('webhooks through the whole system (jobline dev composition, REST)', () => {
  let dir: TempDir;
  let nats: RunningNatsServer;
  let stack: DevStack;
  let acme: RestClient;
  let globex: RestClient;
  let receiver: Server;
  let receiverUrl = '';
  const received: { path: string; headers: IncomingMessage['headers']; body: string }[] = [];
  let respond: (path: string, n: number) => number = () => 200;
  const tokens = { acme: randomUUID(), globex: randomUUID() };

  async function start(): Promise<void> {
    stack = await startDevStack({
      dataDir: join(dir.path, 'data'),
      natsUrl: nats.url,
      apiPort: 0,
      executorCapacity: 2,
      packager: false,
      logger: quietLogger,
      extraTokens: [
        { sha256: sha(tokens.acme), owner: 'acme' },
        { sha256: sha(tokens.globex), owner: 'globex' },
      ],
      env: {
        JOBLINE_WEBHOOKS_FILE: join(dir.path, 'webhooks.json'),
        JOBLINE_WEBHOOKS_ALLOW_HTTP: 'true',
        JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: '127.0.0.0/8',
        JOBLINE_WEBHOOKS_BACKOFF_MS: '1500',
        JOBLINE_API_PUBLIC_URL: 'https://jobline.example.com',
        JOBLINE_SANDBOX: 'none',
      },
    });
    acme = new RestClient(stack.apiUrl!, tokens.acme);
    globex = new RestClient(stack.apiUrl!, tokens.globex);
  }

  beforeAll(async () => {
    dir = tempDir('jobline-webhooks-');
    writeFileSync(join(dir.path, 'webhooks.json'), JSON.stringify({ owners: { acme: { secret: ACME_SECRET } } }));
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(respond(req.url ?? '', received.filter((r) => r.path === req.url).length)).end();
      });
    });
    await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', ok));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    nats = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    await start();
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
    receiver?.closeAllConnections();
    await new Promise((ok) => receiver?.close(ok));
    dir?.remove();
  }, 60_000);

  const deliveries = async (client: RestClient, id: string): Promise<WebhookDeliveryView[]> => {
    const res = await client.request(`/v1/jobs/${id}/webhooks`);
    if (res.status !== 200) throw new Error(`webhooks ${id}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { items: WebhookDeliveryView[] }).items;
  };

  it('a job submitted over REST with notify is delivered, signed, and its delivery shown to its owner only', async () => {
    const path = `/done-${randomUUID()}`;
    const job = await acme.submit({ command: 'echo hi', notify: [{ url: `${receiverUrl}${path}` }] });
    expect(job.spec.notify).toEqual([{ url: `${receiverUrl}${path}` }]);
    expect(await deliveries(acme, job.id)).toEqual([]);
    await acme.finished(job.id);
    const [d] = await eventually(async () => {
      const ds = await deliveries(acme, job.id);
      return ds.length === 1 && ds[0].state === 'delivered' ? ds : undefined;
    }, 20_000, 'the delivery over REST');
    expect(d).toMatchObject({ url: `${receiverUrl}${path}`, source: 'job', attempts: [{ attempt: 1, outcome: 'delivered', statusCode: 200 }] });
    const req = received.find((r) => r.path === path)!;
    expect(verifyWebhook(ACME_SECRET, req.headers['jobline-signature'] as string, req.body)).toMatchObject({ ok: true });
    expect(JSON.parse(req.body) as WebhookPayload).toMatchObject({ jobId: job.id, owner: 'acme', status: 'succeeded', exitCode: 0, links: { job: `https://jobline.example.com/v1/jobs/${job.id}` } });
    expect(req.headers['jobline-delivery']).toBe(d.deliveryId);
    // Another owner: exactly as if the job did not exist.
    expect((await globex.request(`/v1/jobs/${job.id}/webhooks`)).status).toBe(404);
    expect((await globex.request(`/v1/jobs/${randomUUID()}/webhooks`)).status).toBe(404);
  });

  it('a bad notify is refused with a problem naming the field, and nothing is submitted', async () => {
    const before = (await (await acme.request('/v1/jobs')).json()) as { total: number };
    const res = await acme.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'true', notify: [{ url: 'ftp://hooks.example.com/' }] }) });
    expect(res.status).toBe(400);
    const problem = (await res.json()) as { errors: { path: string; message: string }[] };
    expect(problem.errors).toEqual([{ path: 'notify.0.url', message: expect.stringMatching(/scheme ftp: is not allowed/) }]);
    expect(((await (await acme.request('/v1/jobs')).json()) as { total: number }).total).toBe(before.total);
  });

  it('the whole stack restarted while a delivery waits for its retry delivers it after the restart', async () => {
    const path = `/restart-${randomUUID()}`;
    respond = (p, n) => (p === path && n === 1 ? 503 : 200);
    const job = await acme.submit({ command: 'exit 4', notify: [{ url: `${receiverUrl}${path}` }] });
    await eventually(async () => (await deliveries(acme, job.id))[0]?.state === 'retrying', 20_000, 'the first, failed try');
    await stack.stop();
    await start();
    const [d] = await eventually(async () => {
      const ds = await deliveries(acme, job.id);
      return ds[0]?.state === 'delivered' ? ds : undefined;
    }, 30_000, 'the delivery after the restart');
    expect(d.attempts.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([
      [1, 'retrying', 503],
      [2, 'delivered', 200],
    ]);
    expect(received.filter((r) => r.path === path).map((r) => r.headers['jobline-attempt'])).toEqual(['1', '2']);
    expect(JSON.parse(received.filter((r) => r.path === path)[1].body)).toMatchObject({ status: 'failed', exitCode: 4 });
    // The restarted orchestrator counted what it recorded.
    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/^jobline_webhook_attempts_total\{outcome="delivered"\} 1$/m);
  });
});
