import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir, type TempDir } from '../../libs/testing/src';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { tarOf, zipOf } from '../../apps/packager/src/testing/archives';
import { threeCommitRepo } from '../../apps/packager/src/testing/git-repo';
import { RestClient, quietLogger } from './support';

/** Issue 4 as a user tries it: a local git repository with three commits, jobs at a commit, bundles downloaded. */
describe('bundles through the dev stack', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: RestClient;
  let repoUrl: string;
  let commits: string[];
  let files: Server;
  let filesUrl: string;
  const dataBody = Buffer.from('input data\n');
  const dataSha = createHash('sha256').update(dataBody).digest('hex');

  beforeAll(async () => {
    files = createServer((req, res) => (req.url === '/input.txt' ? res.end(dataBody) : res.writeHead(404).end()));
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    dir = tempDir();
    // Searchable by others, so that where the host allows a sandbox, bundles are unpacked for its unprivileged user.
    chmodSync(dir.path, 0o711);
    const repo = join(dir.path, 'repo');
    execFileSync('mkdir', ['-p', repo]);
    commits = threeCommitRepo(repo);
    repoUrl = `file://${repo}`;
    stack = await startDevStack({
      dataDir: join(dir.path, 'data'),
      apiPort: 0,
      executorCapacity: 2,
      graceMs: 1000,
      logger: quietLogger,
      // Tests serve git over file:// and data from 127.0.0.1; both are refused by default.
      packager: { allowFileUrls: true, allowPrivateAddresses: true },
    });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise((r) => files?.close(r));
    dir?.remove();
  });

  it('a job at the first commit sees only that commit\'s files and no .git', async () => {
    const job = await api.submit({ command: 'ls -A; cat a.txt', source: { git: { url: repoUrl, commit: commits[0] } } });
    const done = await api.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(done.bundleDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await api.log(job.id)).toBe('.jobline\na.txt\none\n');
    const events = await api.events(job.id);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackaged', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(events[1].data).toMatchObject({ bundleDigest: done.bundleDigest, commit: commits[0] });
  });

  it('the same spec twice: two jobs, one bundle digest, byte-identical downloads', async () => {
    const spec = { command: ['cat', 'c.txt'], source: { git: { url: repoUrl, commit: commits[2] } } };
    const one = await api.finished((await api.submit(spec)).id, 60_000);
    const two = await api.finished((await api.submit(spec)).id, 60_000);
    expect(one.id).not.toBe(two.id);
    expect(one.status).toBe('succeeded');
    expect(two.bundleDigest).toBe(one.bundleDigest);
    const a = await api.request(`/v1/jobs/${one.id}/bundle`);
    const b = await api.request(`/v1/jobs/${two.id}/bundle`);
    expect(a.status).toBe(200);
    expect(a.headers.get('content-type')).toBe('application/gzip');
    const bytesA = Buffer.from(await a.arrayBuffer());
    const bytesB = Buffer.from(await b.arrayBuffer());
    expect(bytesB.equals(bytesA)).toBe(true);
    expect(`sha256:${createHash('sha256').update(bytesA).digest('hex')}`).toBe(one.bundleDigest);
    expect(await api.log(one.id)).toBe('three\n');
  });

  it('a hostile git URL fails packaging with a reason, and no bundle', async () => {
    const job = await api.submit({ command: 'true', source: { git: { url: '--upload-pack=touch /tmp/jobline-pwned', commit: commits[0] } } });
    const done = await api.finished(job.id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toMatch(/starts with '-'/);
    expect((await api.request(`/v1/jobs/${job.id}/bundle`)).status).toBe(404);
  });

  it('a data file is fetched into the bundle and its digest recorded', async () => {
    const job = await api.submit({
      command: 'cat inputs/input.txt',
      source: { git: { url: repoUrl, commit: commits[0] } },
      data: [{ url: `${filesUrl}/input.txt`, path: 'inputs/input.txt', sha256: dataSha }],
    });
    const done = await api.finished(job.id, 60_000);
    expect(done.status).toBe('succeeded');
    expect(await api.log(job.id)).toBe('input data\n');
    const packaged = (await api.events(job.id)).find((e) => e.type === 'JobPackaged');
    expect(packaged?.data.dataDigests).toEqual({ 'inputs/input.txt': dataSha });
  });

  it('a data file with a wrong sha256 fails packaging, saying both digests', async () => {
    const wrong = 'f'.repeat(64);
    const job = await api.submit({
      command: 'true',
      source: { git: { url: repoUrl, commit: commits[0] } },
      data: [{ url: `${filesUrl}/input.txt`, path: 'input.txt', sha256: wrong }],
    });
    const done = await api.finished(job.id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toContain(wrong);
    expect(done.reason).toContain(dataSha);
  });

  const multipart = (spec: unknown, archive: Buffer) => {
    const form = new FormData();
    form.append('spec', JSON.stringify(spec));
    form.append('archive', new Blob([new Uint8Array(archive)]), 'source');
    // Straight fetch: the form sets its own multipart Content-Type (with the boundary).
    return fetch(`${stack.apiUrl}/v1/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${stack.token}` } });
  };

  it('an uploaded tar.gz (multipart) becomes the job\'s source', async () => {
    const res = await multipart({ command: 'cat hello.txt; ls -A', source: { archive: true } }, tarOf([{ name: 'hello.txt', data: 'hi from the archive\n' }]));
    expect(res.status).toBe(201);
    const done = await api.finished(((await res.json()) as { id: string }).id, 60_000);
    expect(done.status).toBe('succeeded');
    expect(await api.log(done.id)).toBe('hi from the archive\n.jobline\nhello.txt\n');
  });

  it('a zip with ../../etc/passwd fails packaging with a clear reason', async () => {
    const res = await multipart({ command: 'true', source: { archive: true } }, zipOf([{ name: '../../etc/passwd', data: 'root::0:0:' }]));
    const done = await api.finished(((await res.json()) as { id: string }).id, 60_000);
    expect(done.status).toBe('failed');
    expect(done.reason).toMatch(/\.\.\/\.\.\/etc\/passwd.*contains '\.\.'/);
  });

  it('source.archive without an archive part is refused at submission', async () => {
    const res = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'true', source: { archive: true } }) });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('multipart/form-data');
  });

  it('outputs ["out/*.txt"]: GET artifacts gives a tar.gz of exactly the matching files, with their content', async () => {
    const job = await api.submit({
      command: 'mkdir -p out/deep && printf one > out/a.txt && printf two > out/b.txt && printf no > out/c.log && printf no > out/deep/d.txt && printf no > top.txt',
      outputs: ['out/*.txt'],
    });
    const done = await api.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    const res = await api.request(`/v1/jobs/${job.id}/artifacts`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/gzip');
    const file = join(dir.path, `${job.id}-artifacts.tar.gz`);
    writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    expect(execFileSync('tar', ['-tzf', file], { encoding: 'utf8' })).toBe('out/a.txt\nout/b.txt\n');
    const out = join(dir.path, `${job.id}-artifacts`);
    mkdirSync(out);
    execFileSync('tar', ['-xzf', file, '-C', out]);
    expect(readFileSync(join(out, 'out/a.txt'), 'utf8')).toBe('one');
    expect(readFileSync(join(out, 'out/b.txt'), 'utf8')).toBe('two');
  });

  it('a job without outputs has no artifacts: 404 problem', async () => {
    const done = await api.finished((await api.submit({ command: 'true' })).id, 60_000);
    const res = await api.request(`/v1/jobs/${done.id}/artifacts`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });

  it('an outputs glob that leaves the workspace is refused at submission', async () => {
    for (const glob of ['../secret', '/etc/passwd', 'out/../../x']) {
      const res = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'true', outputs: [glob] }) });
      expect(res.status).toBe(400);
    }
  });
});
