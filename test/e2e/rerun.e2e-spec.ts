import { createHash, createPublicKey } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Subscription } from '@nats-io/nats-core';
import type { JobView } from '../../libs/contracts/src';
import { hashToken } from '../../apps/api/src/api-tokens';
import { certsInit, certsIssue } from '../../apps/cli/src/certs/dev-pki';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { BundleStore } from '../../libs/messaging/src/bundle-store';
import { threeCommitRepo } from '../../apps/packager/src/testing/git-repo';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger, runCli, type CliRun } from './support';

/*
 * Issue 14, item 3 as a user tries it: a job with a git source and a data file runs, is run
 * again (REST, then the built CLI over gRPC) with the same bundle by digest — the packager is
 * not asked again and the data server is not hit again — and the two are compared; a job that
 * prints something random compares as different. The log digest each attempt records is the
 * sha256 of the bytes GET /logs serves, and the attestation fetched over gRPC verifies offline.
 */

const BOB = 'bob-token-0123456789';

/** The built CLI, as a user runs it (test/e2e/support.ts). */
const cli = (args: string[]): Promise<CliRun> => runCli(args, {}, 90000);

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('exact re-runs through the dev stack', () => {
  let dir: TempDir;
  let dataDir: string;
  let stack: DevStack;
  let api: RestClient;
  let bob: RestClient;
  let remote: string[];
  let files: Server;
  let filesUrl: string;
  let dataHits = 0;
  let commits: string[];
  let repoUrl: string;
  let packageOrders: Subscription;
  const ordered: string[] = [];

  beforeAll(async () => {
    files = createServer((req, res) => {
      if (req.url !== '/input.txt') return void res.writeHead(404).end();
      dataHits++;
      res.end('input data\n');
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    dir = tempDir('jobline-rerun-e2e-');
    chmodSync(dir.path, 0o711);
    const repo = join(dir.path, 'repo');
    mkdirSync(repo);
    commits = threeCommitRepo(repo);
    repoUrl = `file://${repo}`;
    dataDir = join(dir.path, 'data');
    await certsInit(dataDir);
    stack = await startDevStack({
      dataDir,
      apiPort: 0,
      executorCapacity: 2,
      graceMs: 500,
      logger: quietLogger,
      packager: { allowFileUrls: true, allowPrivateAddresses: true },
      extraTokens: [{ sha256: hashToken(BOB), owner: 'bob' }],
      env: { JOBLINE_GRPC_PORT: '0' },
    });
    api = new RestClient(stack.apiUrl!, stack.token);
    bob = new RestClient(stack.apiUrl!, BOB);
    remote = ['--data-dir', dataDir, '--address', `127.0.0.1:${stack.grpcPort}`];
    // Every order the packagers get, by job (a core subscription sees what JetStream stores on the subject).
    packageOrders = stack.nc.subscribe('jobline.pkg.work.>', { callback: (_e, m) => void ordered.push(m.subject.split('.')[3]) });
  });
  afterAll(async () => {
    packageOrders?.unsubscribe();
    await stack?.stop();
    await new Promise((r) => files?.close(r));
    dir?.remove();
  });

  const rerun = (id: string, headers: Record<string, string> = {}, client = api) => client.request(`/v1/jobs/${id}/rerun`, { method: 'POST', headers });
  const logBytes = async (id: string) => new Uint8Array(await (await api.request(`/v1/jobs/${id}/logs`)).arrayBuffer());

  let original: JobView;
  let again: JobView;

  it('re-runs a job with a bundle by digest: nothing is packaged or fetched again, and the new job links to the original', async () => {
    const spec = {
      // One stream: stdout and stderr are separate pipes, so how they interleave may change from run to run.
      command: 'cat a.txt input.txt > out.txt; cat out.txt; echo done',
      source: { git: { url: repoUrl, commit: commits[0] } },
      data: [{ url: `${filesUrl}/input.txt`, path: 'input.txt' }],
      outputs: ['out.txt'],
    };
    original = await api.finished((await api.submit(spec)).id, 60_000);
    expect(original).toMatchObject({ status: 'succeeded', exitCode: 0, rerunOf: null });
    expect(original.bundleDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(dataHits).toBe(1);
    await eventually(() => ordered.includes(original.id) || undefined, 5000, 'the package order of the original to be seen');
    const originalEvents = await api.events(original.id);

    const res = await rerun(original.id, { 'X-Request-Id': 'rerun-e2e-1' });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-request-id')).toBe('rerun-e2e-1');
    const created = (await res.json()) as JobView;
    expect(res.headers.get('location')).toBe(`/v1/jobs/${created.id}`);
    expect(created.id).not.toBe(original.id);
    expect(created).toMatchObject({ rerunOf: original.id, owner: original.owner, spec: original.spec });
    again = await api.finished(created.id, 60_000);
    expect(again).toMatchObject({ status: 'succeeded', exitCode: 0, bundleDigest: original.bundleDigest, rerunOf: original.id });

    // Neither the packager nor the data server heard of the re-run.
    expect(ordered.filter((id) => id === again.id)).toEqual([]);
    expect(ordered.filter((id) => id === original.id)).toHaveLength(1);
    expect(dataHits).toBe(1);
    const events = (await (await api.request(`/v1/jobs/${again.id}/events`)).json()) as { items: { id: string; type: string; actor: string; causationId: string | null; data: Record<string, unknown> }[] };
    expect(events.items.slice(0, 3).map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackaged', 'JobQueued']);
    const [submitted, packaged] = events.items;
    expect(submitted.data.rerunOf).toBe(original.id);
    // Caused by the request (X-Request-Id); the original is named by rerunOf.
    expect(submitted.causationId).toBe('rerun-e2e-1');
    expect(packaged.causationId).toBe('rerun-e2e-1');
    expect(packaged.actor).toBe('dev');
    const originalPackaged = originalEvents.find((e) => e.type === 'JobPackaged')!;
    expect(packaged.data).toMatchObject({ bundleDigest: original.bundleDigest, size: originalPackaged.data.size, commit: commits[0], dataDigests: originalPackaged.data.dataDigests });
    expect(await api.log(again.id)).toBe(await api.log(original.id));
  }, 180_000);

  it('records the sha256 of each log: exactly the bytes GET /logs serves, stdout and stderr in log order', async () => {
    for (const j of [original, again]) {
      const bytes = await logBytes(j.id);
      expect(new TextDecoder().decode(bytes)).toBe('one\ninput data\ndone\n');
      expect(j.logSha256).toBe(sha256(bytes));
    }
    const completed = (await api.events(again.id)).find((e) => e.type === 'JobCompleted')!;
    expect(completed.data.logSha256).toBe(again.logSha256);
    // Both streams, and more than one chunk of each.
    const both = await api.finished((await api.submit({ command: 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; head -c 300000 /dev/zero | tr "\\0" x' })).id, 60_000);
    const bytes = await logBytes(both.id);
    expect(bytes.length).toBe(both.logBytes);
    expect(bytes.length).toBe(15 + 15 + 300_000);
    expect(new TextDecoder().decode(bytes).replace(/x/g, '').split('\n').sort()).toEqual(['', 'err1', 'err2', 'err3', 'out1', 'out2', 'out3']);
    expect(both.logSha256).toBe(sha256(bytes));
    const stdoutOnly = new Uint8Array(await (await api.request(`/v1/jobs/${both.id}/logs?stream=stdout`)).arrayBuffer());
    expect(both.logSha256).not.toBe(sha256(stdoutOnly));
  }, 90_000);

  it('compares a job and its re-run: identical exit code, log and artifacts (REST and `jobline compare`, exit 0)', async () => {
    const res = await api.request(`/v1/jobs/${original.id}/compare/${again.id}`);
    expect(res.status).toBe(200);
    const c = (await res.json()) as { identical: boolean; differences: string[]; a: { artifactsSha256: string | null; logSha256: string | null }; b: { artifactsSha256: string | null } };
    expect(c).toMatchObject({ identical: true, differences: [], same: { exitCode: true, logSha256: true, artifacts: true } });
    expect(c.a.artifactsSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(c.b.artifactsSha256).toBe(c.a.artifactsSha256);
    expect(c.a.logSha256).toBe(original.logSha256);
    const r = await cli(['compare', original.id, again.id, ...remote]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toContain('identical\n');
    const asJson = await cli(['compare', original.id, again.id, '--json', ...remote]);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.stdout)).toEqual(c);
  }, 60_000);

  it('`jobline rerun --compare` of a job that prints something random waits, compares, and exits 1 naming the log', async () => {
    const random = await api.finished((await api.submit({ command: 'cat /proc/sys/kernel/random/uuid' })).id, 60_000);
    expect(random.status).toBe('succeeded');
    const r = await cli(['rerun', random.id, '--compare', ...remote]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^exit code {2}same \(0\)$/m);
    expect(r.stdout).toMatch(/^log {8}DIFFERENT \(sha256 /m);
    expect(r.stdout).toContain('not identical: logSha256\n');
    // The re-run is recorded as such, and compares the same way over REST.
    const rerunId = /^b {2}([0-9a-f-]{36}) /m.exec(r.stdout)![1];
    expect((await api.job(rerunId)).rerunOf).toBe(random.id);
    const c = (await (await api.request(`/v1/jobs/${random.id}/compare/${rerunId}`)).json()) as { identical: boolean; differences: string[] };
    expect(c).toMatchObject({ identical: false, differences: ['logSha256'] });
    // Plain `jobline rerun` prints only the new id.
    const plain = await cli(['rerun', random.id, ...remote]);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
  }, 120_000);

  it('refuses what cannot be re-run: a running job (409), an unknown one or another owner’s (404); nothing is recorded', async () => {
    const sleeper = await api.submit({ command: 'sleep 30' });
    await eventually(async () => ((await api.job(sleeper.id)).status === 'running' ? true : undefined), 30_000, 'the sleeper to run');
    const before = (await (await api.request('/v1/jobs?limit=100')).json()) as { total: number };
    const running = await rerun(sleeper.id);
    expect(running.status).toBe(409);
    expect(running.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(((await running.json()) as { code: string; detail: string })).toMatchObject({ code: 'failed_precondition', detail: expect.stringContaining('has not finished (running)') });
    const overGrpc = await cli(['rerun', sleeper.id, ...remote]);
    expect(overGrpc.code).toBe(4);
    expect(overGrpc.stderr).toContain('has not finished (running)');
    const unknown = await rerun('00000000-0000-4000-8000-000000000000');
    expect(unknown.status).toBe(404);
    const notHis = await rerun(original.id, {}, bob);
    expect(notHis.status).toBe(404);
    expect(((await notHis.json()) as { detail: string }).detail).toBe(`job ${original.id} not found`);
    expect((await bob.request(`/v1/jobs/${original.id}/compare/${again.id}`)).status).toBe(404);
    expect((await api.request(`/v1/jobs/${original.id}/compare/${sleeper.id}`)).status).toBe(409);
    expect(((await (await api.request('/v1/jobs?limit=100')).json()) as { total: number }).total).toBe(before.total);
    await api.request(`/v1/jobs/${sleeper.id}/cancel`, { method: 'POST' });
    await api.finished(sleeper.id);
  }, 90_000);

  it('honours Idempotency-Key: the same key gives the same re-run (200), and is refused for another job (409)', async () => {
    const first = await rerun(again.id, { 'Idempotency-Key': 'rerun-once' });
    expect(first.status).toBe(201);
    const job = (await first.json()) as JobView;
    const second = await rerun(again.id, { 'Idempotency-Key': 'rerun-once' });
    expect(second.status).toBe(200);
    expect(((await second.json()) as JobView).id).toBe(job.id);
    const other = await rerun(original.id, { 'Idempotency-Key': 'rerun-once' });
    expect(other.status).toBe(409);
    expect(job.rerunOf).toBe(again.id);
    await api.finished(job.id, 60_000);
  }, 90_000);

  it('the attestation fetched over gRPC (`jobline attestation`) names the log digest and verifies offline with `jobline verify --attestation`', async () => {
    const envelopeFile = join(dir.path, 'attestation.json');
    const got = await cli(['attestation', again.id, '-o', envelopeFile, ...remote]);
    expect(got).toMatchObject({ code: 0, stderr: '' });
    const publicKey = join(dir.path, 'signing.pub.pem');
    writeFileSync(publicKey, createPublicKey(readFileSync(join(dataDir, 'signing-key.pem'))).export({ type: 'spki', format: 'pem' }));
    const logFile = join(dir.path, 'log.txt');
    writeFileSync(logFile, await logBytes(again.id));
    const verified = await cli(['verify', '--attestation', envelopeFile, '--public-key', publicKey, '--subject', logFile]);
    expect(verified.code).toBe(0);
    const envelope = JSON.parse(readFileSync(envelopeFile, 'utf8')) as { payload: string; signatures: { keyid: string }[] };
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as {
      subject: { name: string; digest: { sha256: string } }[];
      predicate: { log: { attempt: number; sha256: string; bytes: number }; attempts: { logSha256: string | null }[]; attestedAt: string };
    };
    expect(statement.predicate.log).toEqual({ attempt: 1, sha256: again.logSha256, bytes: again.logBytes });
    expect(statement.predicate.attempts[0].logSha256).toBe(again.logSha256);
    expect(statement.subject).toContainEqual({ name: `jobline:job/${again.id}/log/1`, digest: { sha256: again.logSha256 } });
    // The same envelope as REST's, but for the time it was made.
    const rest = (await (await api.request(`/v1/jobs/${again.id}/attestation`)).json()) as { payload: string; signatures: { keyid: string }[] };
    const restStatement = JSON.parse(Buffer.from(rest.payload, 'base64').toString('utf8')) as typeof statement;
    expect({ ...restStatement, predicate: { ...restStatement.predicate, attestedAt: '' } }).toEqual({ ...statement, predicate: { ...statement.predicate, attestedAt: '' } });
    expect(rest.signatures[0].keyid).toBe(envelope.signatures[0].keyid);
    // A changed log fails the subject check.
    writeFileSync(logFile, 'one\ninput data\ndone!\n');
    expect((await cli(['verify', '--attestation', envelopeFile, '--public-key', publicKey, '--subject', logFile])).code).toBe(1);
    // Not finished: FAILED_PRECONDITION (exit 4); unknown: NOT_FOUND (exit 3).
    expect((await cli(['attestation', '00000000-0000-4000-8000-000000000000', ...remote])).code).toBe(3);
    // Over gRPC the owner rules are REST's: another owner's job is NOT_FOUND (exit 3) for Rerun, Compare and GetAttestation.
    const bobCert = await certsIssue(dataDir, 'bob');
    const asBob = [...remote, '--cert', bobCert.cert, '--key', bobCert.key];
    for (const args of [['attestation', again.id], ['rerun', again.id], ['compare', original.id, again.id]]) {
      const r = await cli([...args, ...asBob]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('not found');
    }
  }, 120_000);

  it('a bundle no longer stored: the orchestrator refuses (409, its answer passed on); a purged job is refused too; nothing is recorded', async () => {
    const j = await api.finished((await api.submit({ command: 'cat c.txt', source: { git: { url: repoUrl, commit: commits[2] } } })).id, 60_000);
    expect(j.status).toBe('succeeded');
    const total = async () => ((await (await api.request('/v1/jobs?limit=1')).json()) as { total: number }).total;
    const before = await total();
    // The api sees a finished job with a bundle digest; only the orchestrator looks for the bytes.
    await (await BundleStore.open(stack.nc)).delete(j.bundleDigest!);
    const gone = await rerun(j.id);
    expect(gone.status).toBe(409);
    expect(((await gone.json()) as { detail: string }).detail).toBe(`the bundle ${j.bundleDigest} of job ${j.id} is no longer stored, so it cannot run again with the same bundle: submit it anew`);
    expect((await api.request(`/v1/jobs/${original.id}`, { method: 'DELETE' })).status).toBe(204);
    const purged = await rerun(original.id);
    expect(purged.status).toBe(409);
    expect(((await purged.json()) as { detail: string }).detail).toContain('was purged');
    expect(await total()).toBe(before);
  }, 90_000);
});
