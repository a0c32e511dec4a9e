import { join } from 'node:path';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger } from './support';

/**
 * Issue 17, item 5: while the bus is down the api answers at once (503 with Retry-After,
 * readiness false), and accepts again as soon as the bus is back, without a restart.
 */
describe('the api while NATS is down', () => {
  let dir: TempDir;
  let nats: RunningNatsServer;
  let stack: DevStack;
  let api: RestClient;

  beforeAll(async () => {
    dir = tempDir();
    nats = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), natsUrl: nats.url, apiPort: 0, executorCapacity: 1, packager: false, logger: quietLogger });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
    dir?.remove();
  });

  it('refuses submits at once with 503 and Retry-After, says not ready, and accepts again when NATS is back', async () => {
    const before = await api.submit({ command: ['true'] });
    await api.finished(before.id);
    const ready = await fetch(`${stack.apiUrl}/readyz`);
    expect(ready.status).toBe(200);

    await nats.stop();
    await eventually(async () => (await fetch(`${stack.apiUrl}/readyz`)).status === 503, 10_000, 'readiness to turn false');
    const readyz = (await (await fetch(`${stack.apiUrl}/readyz`)).json()) as { reasons: string[] };
    expect(readyz.reasons.join(' ')).toMatch(/nats/);

    const t0 = performance.now();
    const refused = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: ['true'] }) });
    const tookMs = performance.now() - t0;
    expect(refused.status).toBe(503);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { code: string }).code).toBe('unavailable');
    // "At once": well under the 10 s submit timeout the api would otherwise wait.
    expect(tookMs).toBeLessThan(1000);
    // A cancel is refused the same way (the job is not touched).
    const cancel = await api.request(`/v1/jobs/${before.id}/cancel`, { method: 'POST' });
    expect(cancel.status).toBe(409); // finished already: decided from the read model, nothing to send

    nats = await startNatsServer({ storeDir: join(dir.path, 'nats'), port: nats.port });
    const after = await eventually(async () => {
      const res = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: ['true'] }) });
      return res.status === 201 ? ((await res.json()) as { id: string }) : undefined;
    }, 20_000, 'a submit to be accepted again');
    await expect(api.finished(after.id)).resolves.toMatchObject({ status: 'succeeded' });
    expect((await fetch(`${stack.apiUrl}/readyz`)).status).toBe(200);
  });
});
