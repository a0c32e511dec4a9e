import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postWebhook, urlRefusal } from './http-delivery';

/** A loopback receiver (these tests allow 127.0.0.0/8 where they mean to reach it). */
describe('postWebhook against a loopback receiver', () => {
  let server: Server;
  let port = 0;
  const hits: string[] = [];
  let answer: (path: string) => { status: number; delayMs?: number; headers?: Record<string, string> } = () => ({ status: 200 });

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '');
      req.resume();
      req.on('end', () => {
        const a = answer(req.url ?? '');
        setTimeout(() => res.writeHead(a.status, a.headers).end('x'), a.delayMs ?? 0);
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((ok) => server.close(ok));
  });
  beforeEach(() => {
    hits.length = 0;
    answer = () => ({ status: 200 });
  });

  const allowed = { allowHttp: true, allowedRanges: ['127.0.0.0/8'], timeoutMs: 2000 };

  it('delivers to an allowed range, and names the status', async () => {
    expect(await postWebhook(`http://127.0.0.1:${port}/a`, '{}', {}, allowed)).toMatchObject({ kind: 'response', statusCode: 200, retryable: false });
    expect(hits).toEqual(['/a']);
  });

  it('refuses a name that resolves to a refused address before connecting (the receiver sees nothing)', async () => {
    const r = await postWebhook(`http://localhost:${port}/b`, '{}', {}, { allowHttp: true, timeoutMs: 2000 });
    expect(r).toMatchObject({ kind: 'refused', retryable: false });
    expect(r.kind === 'refused' && r.error).toMatch(/localhost resolves to .* is a private, loopback, link-local or reserved address/);
    expect(hits).toEqual([]);
  });

  it('refuses an IP literal of a refused range, and http where only https is allowed', async () => {
    expect(await postWebhook(`http://127.0.0.1:${port}/c`, '{}', {}, { allowHttp: true })).toMatchObject({ kind: 'refused' });
    expect(await postWebhook(`http://127.0.0.1:${port}/c`, '{}', {}, { allowedRanges: ['127.0.0.0/8'] })).toMatchObject({ kind: 'refused', error: expect.stringMatching(/http:\/\/ webhooks are not allowed/) });
    expect(urlRefusal('http://[::ffff:169.254.169.254]/', { allowHttp: true, allowedRanges: ['127.0.0.0/8'] })).toMatch(/169\.254\.169\.254 is a private/);
    expect(hits).toEqual([]);
  });

  it('does not follow a redirect; 5xx, 408 and 429 are retryable, other 4xx not', async () => {
    answer = (p) => (p === '/moved' ? { status: 302, headers: { location: 'http://169.254.169.254/' } } : { status: Number(p.slice(1)) });
    expect(await postWebhook(`http://127.0.0.1:${port}/moved`, '{}', {}, allowed)).toMatchObject({ kind: 'response', statusCode: 302, retryable: false });
    for (const [s, retryable] of [[500, true], [503, true], [408, true], [429, true], [400, false], [404, false]] as const) {
      expect(await postWebhook(`http://127.0.0.1:${port}/${s}`, '{}', {}, allowed)).toMatchObject({ statusCode: s, retryable });
    }
    expect(hits.filter((h) => h === '/moved')).toHaveLength(1);
  });

  it('a timeout and a refused connection are retryable network errors', async () => {
    answer = () => ({ status: 200, delayMs: 1500 });
    const started = Date.now();
    expect(await postWebhook(`http://127.0.0.1:${port}/slow`, '{}', {}, { ...allowed, timeoutMs: 300 })).toMatchObject({ kind: 'network', retryable: true, error: 'no response within 300 ms' });
    expect(Date.now() - started).toBeLessThan(1200);
    const closed = createServer();
    await new Promise<void>((ok) => closed.listen(0, '127.0.0.1', ok));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((ok) => closed.close(ok));
    expect(await postWebhook(`http://127.0.0.1:${freePort}/`, '{}', {}, allowed)).toMatchObject({ kind: 'network', retryable: true, error: expect.stringMatching(/ECONNREFUSED/) });
  });
});
