import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../libs/testing/src';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { RestClient, quietLogger } from './support';

/** A local data server on loopback that counts what it is asked for. */
async function dataServer(files: Record<string, Buffer>): Promise<{ server: Server; url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = files[req.url ?? ''];
    if (body) res.end(body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const types = (events: { type: string }[]) => events.map((e) => e.type);

/**
 * Issue 15, item 4: a job with `data` and no `source` goes through the packager like any other,
 * so its data URLs meet every guard before the command runs, and the command finds its data.
 */
describe('data-only jobs are packaged (data served from loopback, private addresses allowed for the test)', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: RestClient;
  let data: Awaited<ReturnType<typeof dataServer>>;
  const input = Buffer.from('a,b\n1,2\n');
  const big = Buffer.alloc(8192, 'x');

  beforeAll(async () => {
    data = await dataServer({ '/in.csv': input, '/big.bin': big });
    dir = tempDir();
    chmodSync(dir.path, 0o711);
    stack = await startDevStack({
      dataDir: join(dir.path, 'data'),
      apiPort: 0,
      executorCapacity: 2,
      graceMs: 1000,
      logger: quietLogger,
      // Loopback is refused by default (the second describe shows it); this stack serves its data from 127.0.0.1.
      packager: { allowPrivateAddresses: true },
      env: { JOBLINE_PACKAGER_MAX_DATA_BYTES: '4096' },
    });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise((r) => data?.server.close(r));
    dir?.remove();
  });

  it('fetches the data into the bundle, records its digest, and the command reads it from its workspace', async () => {
    const spec = { command: 'cat inputs/in.csv; ls -A', data: [{ url: `${data.url}/in.csv`, path: 'inputs/in.csv', sha256: sha(input) }] };
    const job = await api.submit(spec);
    expect(job.status).toBe('pending');
    const done = await api.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(done.bundleDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await api.log(job.id)).toBe('a,b\n1,2\n.jobline\ninputs\n');
    const events = await api.events(job.id);
    expect(types(events)).toEqual(['JobSubmitted', 'JobPackaged', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(events[1].data).toMatchObject({ bundleDigest: done.bundleDigest, dataDigests: { 'inputs/in.csv': sha(input) } });
    expect(events[1].data.commit).toBeUndefined();

    // The bundle: the data at its path and a manifest naming its URL and digest, no source.
    const res = await api.request(`/v1/jobs/${job.id}/bundle`);
    expect(res.status).toBe(200);
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(`sha256:${sha(bytes)}`).toBe(done.bundleDigest);
    const file = join(dir.path, `${job.id}.tar.gz`);
    writeFileSync(file, bytes);
    expect(execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n').filter(Boolean).sort()).toEqual(
      ['.jobline/', '.jobline/Dockerfile', '.jobline/manifest.json', '.jobline/run.sh', 'inputs/', 'inputs/in.csv'].sort(),
    );
    const out = join(dir.path, job.id);
    execFileSync('mkdir', ['-p', out]);
    execFileSync('tar', ['-xzf', file, '-C', out]);
    expect(readFileSync(join(out, 'inputs/in.csv'))).toEqual(input);
    const manifest = JSON.parse(readFileSync(join(out, '.jobline/manifest.json'), 'utf8')) as { source?: unknown; data: unknown[] };
    expect(manifest.source).toBeUndefined();
    expect(manifest.data).toEqual([{ path: 'inputs/in.csv', url: `${data.url}/in.csv`, sha256: sha(input) }]);

    // Deterministic: the same spec again gives the same bundle digest.
    const again = await api.finished((await api.submit(spec)).id, 60_000);
    expect(again.status).toBe('succeeded');
    expect(again.bundleDigest).toBe(done.bundleDigest);
  });

  it('without a pinned sha256 the fetched digest is recorded all the same', async () => {
    const done = await api.finished((await api.submit({ command: ['cat', 'in.csv'], data: [{ url: `${data.url}/in.csv`, path: 'in.csv' }] })).id, 60_000);
    expect(done.status).toBe('succeeded');
    expect(await api.log(done.id)).toBe(input.toString());
    const packaged = (await api.events(done.id)).find((e) => e.type === 'JobPackaged');
    expect(packaged?.data.dataDigests).toEqual({ 'in.csv': sha(input) });
  });

  it('a sha256 that does not match fails the job before it runs, naming both digests', async () => {
    const wrong = 'e'.repeat(64);
    const done = await api.finished((await api.submit({ command: 'touch ran', data: [{ url: `${data.url}/in.csv`, path: 'in.csv', sha256: wrong }] })).id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toContain(wrong);
    expect(done.reason).toContain(sha(input));
    expect(done.bundleDigest).toBeNull();
    expect(types(await api.events(done.id))).toEqual(['JobSubmitted', 'JobPackagingFailed']);
    expect((await api.request(`/v1/jobs/${done.id}/bundle`)).status).toBe(404);
  });

  it('a data file over the size cap fails the job before it runs', async () => {
    const done = await api.finished((await api.submit({ command: 'true', data: [{ url: `${data.url}/big.bin`, path: 'big.bin' }] })).id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toMatch(/4096/);
    expect(types(await api.events(done.id))).toEqual(['JobSubmitted', 'JobPackagingFailed']);
  });

  it('a data URL that answers 404 fails the job, saying so', async () => {
    const done = await api.finished((await api.submit({ command: 'true', data: [{ url: `${data.url}/missing`, path: 'm' }] })).id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toMatch(/404/);
    expect(types(await api.events(done.id))).toEqual(['JobSubmitted', 'JobPackagingFailed']);
  });
});

describe('data-only jobs meet the default guards (private addresses refused, a data host allowlist)', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: RestClient;
  let data: Awaited<ReturnType<typeof dataServer>>;
  let port: number;

  beforeAll(async () => {
    data = await dataServer({ '/in.csv': Buffer.from('secret\n') });
    port = Number(new URL(data.url).port);
    dir = tempDir();
    stack = await startDevStack({
      dataDir: join(dir.path, 'data'),
      apiPort: 0,
      executorCapacity: 1,
      graceMs: 1000,
      logger: quietLogger,
      // The hosts below pass the allowlist, so what refuses them is the address guard.
      env: { JOBLINE_PACKAGER_DATA_HOSTS: '127.0.0.1,localhost,169.254.169.254,data.example.com', JOBLINE_RETENTION_MAX_AGE_MS: '3600000' },
    });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise((r) => data?.server.close(r));
    dir?.remove();
  });

  const refused = async (url: string, reason: RegExp) => {
    const job = await api.submit({ command: 'touch ran', data: [{ url, path: 'in.csv' }] });
    const done = await api.finished(job.id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toMatch(/^packaging failed: /);
    expect(done.reason).toMatch(reason);
    expect(done.startedAt).toBeNull();
    const events = await api.events(job.id);
    expect(types(events)).toEqual(['JobSubmitted', 'JobPackagingFailed']);
    expect(events[1]).toMatchObject({ data: { reason: expect.stringMatching(reason) } });
    return done;
  };

  it('a cloud metadata address fails the job before it runs', async () => {
    await refused('http://169.254.169.254/latest/meta-data/iam/security-credentials/', /169\.254\.169\.254 is a private, loopback, link-local or reserved address/);
  });

  it('a loopback address fails the job, and the loopback server is never asked', async () => {
    await refused(`http://127.0.0.1:${port}/in.csv`, /127\.0\.0\.1 is a private, loopback, link-local or reserved address/);
    expect(data.requests).toEqual([]);
  });

  it('a host name that resolves to loopback is refused on the resolved address, and the server is never asked', async () => {
    await refused(`http://localhost:${port}/in.csv`, /localhost resolves to .* is a private, loopback, link-local or reserved address/);
    expect(data.requests).toEqual([]);
  });

  it('a host not on the allowlist fails the job', async () => {
    await refused('https://elsewhere.example.org/in.csv', /data host elsewhere\.example\.org is not in the allowed hosts/);
  });

  it('a job without data is not packaged and runs as before', async () => {
    const done = await api.finished((await api.submit({ command: 'echo plain' })).id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', bundleDigest: null });
    expect(types(await api.events(done.id))).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
  });

  it('the retention policy configured by variable runs in the dev stack and keeps jobs younger than its age', async () => {
    expect(stack.orchestrator.retention).not.toBeNull();
    const r = await stack.orchestrator.retention!.sweep();
    expect(r.purged).toEqual([]);
    const { items } = (await (await api.request('/v1/jobs?limit=100')).json()) as { items: { purged: boolean }[] };
    expect(items.length).toBeGreaterThan(0);
    expect(items.every((j) => !j.purged)).toBe(true);
  });
});
