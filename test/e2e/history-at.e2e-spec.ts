import type { NatsConnection } from '@nats-io/nats-core';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { join } from 'node:path';
import type { JobView } from '../../libs/contracts/src';
import { PostgresEventStore, SqliteEventStore } from '../../libs/event-store/src';
import type { EventStore } from '../../libs/event-store/src/event-store.port';
import { connectNats } from '../../libs/messaging/src/connection';
import { readTlsDir } from '../../libs/service/src';
import { dropSchema, eventually, randomSchemaName, startNatsServer, tempDir, testPostgres, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { hashToken } from '../../apps/api/src/api-tokens';
import { createApiApp, type ApiApp } from '../../apps/api/src/api.module';
import { JobsProjection } from '../../apps/api/src/projections/jobs.projection';
import { recordCommand, spec } from '../../apps/api/src/testing/job-history';
import { certPaths, certsDir, certsInit, certsIssue } from '../../apps/cli/src/certs/dev-pki';
import { JobsRemote, RemoteCallError } from '../../apps/cli/src/remote/jobs-remote';
import { executorsAtFromPb, jobsPageFromPb } from '../../apps/cli/src/remote/json-shapes';
import { runCli, type CliRun } from './support';

/*
 * The whole system at past instants (issue 14, item 2): a history recorded step by step with the
 * real decider into a real store (a SQLite file; PostgreSQL in a schema of its own), with an
 * instant noted between each two steps; then the job list and the executors at each instant,
 * over REST, gRPC and the built CLI, against what was true then.
 */

const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789';
const ADMIN = 'admin-token-0123456789';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The built CLI, as a user runs it (test/e2e/support.ts). */
const cli = (args: string[]): Promise<CliRun> => runCli(args, {});

const postgres = testPostgres(process.env);

type StoreKind = 'sqlite' | 'postgres';
const kinds: StoreKind[] = postgres.available ? ['sqlite', 'postgres'] : ['sqlite'];
if (!postgres.available) {
  describe('the system at a past instant on PostgreSQL', () => {
    it.skip(`skipped: ${postgres.reason}`, () => {});
  });
}

describe.each(kinds)('the system at a past instant (%s store): REST, gRPC and the CLI', (kind) => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let store: EventStore;
  let schema: string | undefined;
  let projection: JobsProjection;
  let api: ApiApp;
  let dataDir: string;
  const remotes: JobsRemote[] = [];
  const remote = (who: 'admin' | 'alice' | 'bob') => {
    const dev = certsDir(dataDir);
    const r = new JobsRemote({ address: `127.0.0.1:${api.grpcPort}`, ca: join(dev, 'ca.crt'), ...certPaths(dev, who) });
    remotes.push(r);
    return r;
  };
  const cliArgs = (who: 'admin' | 'alice') => {
    const dev = certsDir(dataDir);
    return ['--address', `127.0.0.1:${api.grpcPort}`, '--ca', join(dev, 'ca.crt'), '--cert', certPaths(dev, who).cert, '--key', certPaths(dev, who).key];
  };

  // The history: instants t[0..4] noted between the steps.
  const t: string[] = [];
  const ids = { a1: '', b1: '', a2: '' };
  const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

  const get = (token: string, path: string) => fetch(`${api.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const body = async (token: string, path: string) => {
    const res = await get(token, path);
    expect({ path, status: res.status }).toEqual({ path, status: 200 });
    return res.json() as Promise<{ items: JobView[]; total: number; nextCursor: string | null }>;
  };
  const statuses = (page: { items: JobView[] }) => Object.fromEntries(page.items.map((j) => [j.id, j.status]));
  const noteInstant = async () => {
    // Each instant is a millisecond of its own, away from every recorded event.
    await pause(4);
    t.push(new Date().toISOString());
    await pause(4);
  };

  beforeAll(async () => {
    dir = tempDir(`jobline-history-at-${kind}-`);
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'history-at' });
    if (kind === 'sqlite') store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    else {
      schema = randomSchemaName();
      store = new PostgresEventStore({ connectionString: postgres.url, schema });
    }
    dataDir = join(dir.path, 'data');
    await certsInit(dataDir);
    await certsIssue(dataDir, 'alice');
    await certsIssue(dataDir, 'bob');

    ids.a1 = id(1);
    ids.b1 = id(2);
    ids.a2 = id(3);
    const now = () => new Date().toISOString();
    await noteInstant(); // t0: nothing recorded yet
    await recordCommand(store, ids.a1, { type: 'SubmitJob', data: { jobId: ids.a1, owner: 'alice', spec: spec({ command: ['true'], priority: 'high' }), now: now() } });
    await pause(2);
    await recordCommand(store, ids.b1, { type: 'SubmitJob', data: { jobId: ids.b1, owner: 'bob', spec: spec({ command: ['false'] }), now: now() } });
    await noteInstant(); // t1: a1 and b1 queued
    await recordCommand(store, ids.a1, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-1', now: now() } });
    await recordCommand(store, ids.a1, { type: 'RecordStarted', data: { attempt: 1, executorId: 'ex-1', startedAt: now(), sandbox: 'none' } });
    await recordCommand(store, ids.b1, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-2', now: now() } });
    await recordCommand(store, ids.a2, { type: 'SubmitJob', data: { jobId: ids.a2, owner: 'alice', spec: spec({ command: ['sleep', '1'], priority: 'low' }), now: now() } });
    await noteInstant(); // t2: a1 running on ex-1, b1 dispatched to ex-2, a2 queued
    const finished = (exitCode: number) => ({ attempt: 1, exitCode, signal: null, oomKilled: false, durationMs: 5, finishedAt: now(), usage: null, logBytes: 0 });
    await recordCommand(store, ids.a1, { type: 'RecordFinished', data: finished(0) });
    await recordCommand(store, ids.b1, { type: 'RecordStarted', data: { attempt: 1, executorId: 'ex-2', startedAt: now(), sandbox: 'none' } });
    await recordCommand(store, ids.b1, { type: 'RecordFinished', data: finished(3) });
    await recordCommand(store, ids.a2, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-1', now: now() } });
    await recordCommand(store, ids.a2, { type: 'RecordStarted', data: { attempt: 1, executorId: 'ex-1', startedAt: now(), sandbox: 'none' } });
    await noteInstant(); // t3: a1 succeeded, b1 failed, a2 running on ex-1
    await recordCommand(store, ids.a2, { type: 'RecordFinished', data: finished(1) });
    await noteInstant(); // t4: everything finished

    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
    const tls = readTlsDir(certsDir(dataDir));
    if (!tls) throw new Error('no certificates');
    api = await createApiApp({
      nc,
      eventStore: store,
      projection,
      port: 0,
      logger: false,
      grpc: { port: 0, tls },
      tokens: [
        { sha256: hashToken(ALICE), owner: 'alice' },
        { sha256: hashToken(BOB), owner: 'bob' },
        { sha256: hashToken(ADMIN), owner: 'ops', admin: true },
      ],
    });
    await eventually(async () => (await projection.list({})).total === 3 && projection.get(ids.a2)?.status === 'failed', 30_000, 'the live read model');
  });

  afterAll(async () => {
    for (const r of remotes) r.close();
    await api?.close();
    await projection?.close();
    await nc?.drain();
    await store?.close();
    if (schema) await dropSchema(postgres.url, schema);
    await server?.stop();
    dir?.remove();
  });

  describe('REST', () => {
    it('GET /v1/jobs?at= lists what was true at each instant: queued, then running, then finished', async () => {
      expect(await body(ADMIN, `/v1/jobs?at=${t[0]}`)).toEqual({ items: [], total: 0, nextCursor: null });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[1]}`))).toEqual({ [ids.a1]: 'queued', [ids.b1]: 'queued' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[2]}`))).toEqual({ [ids.a1]: 'running', [ids.b1]: 'running', [ids.a2]: 'queued' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[3]}`))).toEqual({ [ids.a1]: 'succeeded', [ids.b1]: 'failed', [ids.a2]: 'running' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[4]}`))).toEqual({ [ids.a1]: 'succeeded', [ids.b1]: 'failed', [ids.a2]: 'failed' });
      const running = (await body(ADMIN, `/v1/jobs?at=${t[2]}&status=running`)).items;
      expect(running.map((j) => [j.id, j.executor, j.attempt])).toEqual([[ids.b1, 'ex-2', 1], [ids.a1, 'ex-1', 1]]);
      expect(running.find((j) => j.id === ids.a1)?.startedAt).toEqual(expect.any(String));
      expect(running.find((j) => j.id === ids.b1)?.startedAt).toBeNull();
    });

    it('each job in a past list is that job replayed at the same instant (GET /v1/jobs/{id}?at=), and the list at now is the live list', async () => {
      for (const at of t.slice(1)) {
        for (const job of (await body(ADMIN, `/v1/jobs?at=${at}`)).items) {
          expect(await (await get(ADMIN, `/v1/jobs/${job.id}?at=${at}`)).json()).toEqual(job);
        }
      }
      const now = new Date().toISOString();
      expect(await body(ADMIN, `/v1/jobs?at=${now}&limit=100`)).toEqual(await body(ADMIN, '/v1/jobs?limit=100'));
      // Another zone, the same instant.
      const plusTwo = new Date(Date.parse(t[2]) + 2 * 3600_000).toISOString().replace('Z', '+02:00');
      expect(await body(ADMIN, `/v1/jobs?at=${encodeURIComponent(plusTwo)}`)).toEqual(await body(ADMIN, `/v1/jobs?at=${t[2]}`));
    });

    it('applies the filters, order and paging at the instant', async () => {
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[2]}&status=queued`))).toEqual({ [ids.a2]: 'queued' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[2]}&status=queued,running&priority=high`))).toEqual({ [ids.a1]: 'running' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[2]}&executor=ex-2`))).toEqual({ [ids.b1]: 'running' });
      // At t3 a2 runs on ex-1 and a1 (finished) last ran there.
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[3]}&executor=ex-1`))).toEqual({ [ids.a1]: 'succeeded', [ids.a2]: 'running' });
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[3]}&owner=bob`))).toEqual({ [ids.b1]: 'failed' });
      expect((await body(ADMIN, `/v1/jobs?at=${t[2]}&order=-priority`)).items.map((j) => j.id)).toEqual([ids.a1, ids.b1, ids.a2]);
      expect((await body(ADMIN, `/v1/jobs?at=${t[2]}&order=submittedAt`)).items.map((j) => j.id)).toEqual([ids.a1, ids.b1, ids.a2]);
      const from = encodeURIComponent(new Date(Date.parse(t[1]) + 1).toISOString());
      expect(statuses(await body(ADMIN, `/v1/jobs?at=${t[2]}&submittedFrom=${from}`))).toEqual({ [ids.a2]: 'queued' });

      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await body(ADMIN, `/v1/jobs?at=${t[2]}&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
        expect(page.total).toBe(3);
        seen.push(...page.items.map((j) => j.id));
        cursor = page.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual([ids.a2, ids.b1, ids.a1]);
    });

    it('keeps the owner rules: a non-admin sees only their own jobs then; the owner filter is for admins', async () => {
      expect(statuses(await body(ALICE, `/v1/jobs?at=${t[2]}`))).toEqual({ [ids.a1]: 'running', [ids.a2]: 'queued' });
      expect(statuses(await body(BOB, `/v1/jobs?at=${t[2]}`))).toEqual({ [ids.b1]: 'running' });
      expect((await body(BOB, `/v1/jobs?at=${t[2]}&owner=bob`)).total).toBe(1);
      const other = await get(ALICE, `/v1/jobs?at=${t[2]}&owner=bob`);
      expect(other.status).toBe(403);
      expect(other.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect((await get(BOB, `/v1/jobs/${ids.a1}?at=${t[2]}`)).status).toBe(404);
    });

    it('GET /v1/executors?at= names the jobs on each executor then (from JobDispatched), with the owner rules', async () => {
      const at = (token: string, i: number) => body(token, `/v1/executors?at=${t[i]}`) as unknown as Promise<{ at: string; position: number; queued: number; items: { id: string; running: number; jobs: JobView[] }[] }>;
      const t0 = await at(ADMIN, 0);
      expect(t0).toEqual({ at: t[0], position: -1, queued: 0, items: [] });
      const t1 = await at(ADMIN, 1);
      expect(t1).toMatchObject({ at: t[1], queued: 2, items: [] });
      expect(t1.position).toBeGreaterThan(-1);

      const t2 = await at(ADMIN, 2);
      expect(t2.queued).toBe(1);
      expect(t2.items.map((e) => ({ id: e.id, running: e.running, jobs: e.jobs.map((j) => [j.id, j.status]) }))).toEqual([
        { id: 'ex-1', running: 1, jobs: [[ids.a1, 'running']] },
        { id: 'ex-2', running: 1, jobs: [[ids.b1, 'running']] },
      ]);
      // The jobs are the past list's views.
      const list = (await body(ADMIN, `/v1/jobs?at=${t[2]}`)).items;
      expect(t2.items[0].jobs[0]).toEqual(list.find((j) => j.id === ids.a1));
      expect(t2.position).toBeGreaterThan(t1.position);

      // Alice sees her job on ex-1, and that ex-2 ran one attempt that is not hers.
      const alice2 = await at(ALICE, 2);
      expect(alice2).toMatchObject({ queued: 1, items: [{ id: 'ex-1', running: 1, jobs: [{ id: ids.a1 }] }, { id: 'ex-2', running: 1, jobs: [] }] });
      const bob2 = await at(BOB, 2);
      expect(bob2).toMatchObject({ queued: 0, items: [{ id: 'ex-1', running: 1, jobs: [] }, { id: 'ex-2', running: 1, jobs: [{ id: ids.b1 }] }] });

      const t3 = await at(ADMIN, 3);
      expect(t3.items.map((e) => [e.id, e.jobs.map((j) => j.id)])).toEqual([['ex-1', [ids.a2]]]);
      expect((await at(ADMIN, 4)).items).toEqual([]);
      // Without `at`: the executors heard from (none here: no executor heartbeats).
      expect(await body(ADMIN, '/v1/executors')).toEqual({ items: [] });
    });

    it('refuses a bad `at` with a 400 problem naming it, never coercing it', async () => {
      const future = new Date(Date.now() + 3600_000).toISOString();
      const bad: [string, RegExp][] = [
        ['yesterday', /RFC 3339/],
        ['2025-01-31', /RFC 3339/],
        ['2025-01-31T12:00Z', /RFC 3339/],
        ['2025-01-31T12:00:00', /RFC 3339/],
        ['1738324800000', /RFC 3339/],
        ['2025-02-30T00:00:00Z', /no day 30/],
        ['2025-01-01T24:00:00Z', /not a time of day/],
        ['1969-12-31T23:59:59Z', /before the Unix epoch/],
        [future, /in the future/],
        ['', /RFC 3339/],
      ];
      for (const path of ['/v1/jobs', '/v1/executors', `/v1/jobs/${ids.a1}`]) {
        for (const [value, why] of bad) {
          const res = await get(ADMIN, `${path}?at=${encodeURIComponent(value)}`);
          const problem = (await res.json()) as { status: number; errors?: { path: string; message: string }[] };
          expect({ path, value, status: res.status, type: res.headers.get('content-type') }).toEqual({ path, value, status: 400, type: expect.stringMatching(/^application\/problem\+json/) });
          expect(problem.errors).toEqual([{ path: 'at', message: expect.stringMatching(why) }]);
        }
      }
      expect((await get(ADMIN, `/v1/jobs?at=${t[1]}&at=${t[2]}`)).status).toBe(400);
      expect((await get(ADMIN, `/v1/executors?at=${t[1]}&owner=alice`)).status).toBe(400);
      expect((await get(ADMIN, `/v1/jobs?at=${t[1]}&cursor=not-a-cursor`)).status).toBe(400);
      expect((await get(ADMIN, '/v1/executors?since=1')).status).toBe(400);
    });
  });

  describe('gRPC', () => {
    const ts = (iso: string) => {
      const ms = Date.parse(iso);
      return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
    };
    const grpcCode = (p: Promise<unknown>) =>
      p.then(
        () => 'OK',
        (e: RemoteCallError) => `${GrpcStatus[e.code]}: ${e.details}`,
      );

    it('List with `at` answers what REST does, with the certificate’s owner rules', async () => {
      const admin = remote('admin');
      const alice = remote('alice');
      for (const i of [0, 1, 2, 3, 4]) {
        expect(jobsPageFromPb(await admin.call('List', { at: ts(t[i]) }))).toEqual(await body(ADMIN, `/v1/jobs?at=${t[i]}`));
        expect(jobsPageFromPb(await alice.call('List', { at: ts(t[i]) }))).toEqual(await body(ALICE, `/v1/jobs?at=${t[i]}`));
      }
      const filtered = jobsPageFromPb(await admin.call('List', { at: ts(t[2]), status: 'JOB_STATUS_RUNNING', order: 'submittedAt', limit: 1 }));
      expect(filtered).toEqual(await body(ADMIN, `/v1/jobs?at=${t[2]}&status=running&order=submittedAt&limit=1`));
      expect(filtered.items.map((j) => j.id)).toEqual([ids.a1]);
      const next = jobsPageFromPb(await admin.call('List', { at: ts(t[2]), status: 'JOB_STATUS_RUNNING', order: 'submittedAt', limit: 1, cursor: filtered.nextCursor }));
      expect(next.items.map((j) => j.id)).toEqual([ids.b1]);
      expect(next.nextCursor).toBeNull();
      expect(await grpcCode(alice.call('List', { at: ts(t[2]), owner: 'bob' }))).toMatch(/^PERMISSION_DENIED/);
    });

    it('Executors with `at` answers what GET /v1/executors?at= does; without it, from the live read model', async () => {
      const admin = remote('admin');
      const bob = remote('bob');
      for (const i of [0, 1, 2, 3]) {
        expect(executorsAtFromPb(await admin.call('Executors', { at: ts(t[i]) }))).toEqual(await body(ADMIN, `/v1/executors?at=${t[i]}`));
        expect(executorsAtFromPb(await bob.call('Executors', { at: ts(t[i]) }))).toEqual(await body(BOB, `/v1/executors?at=${t[i]}`));
      }
      const now = executorsAtFromPb(await admin.call('Executors', {}));
      expect(now).toMatchObject({ items: [], queued: 0, position: projection.position });
    });

    it('refuses a bad `at` with INVALID_ARGUMENT', async () => {
      const admin = remote('admin');
      for (const method of ['List', 'Executors', 'Status']) {
        const req = (at: unknown) => ({ ...(method === 'Status' ? { jobId: ids.a1 } : {}), at });
        expect(await grpcCode(admin.call(method, req({ seconds: -1, nanos: 0 })))).toMatch(/^INVALID_ARGUMENT: .*before the Unix epoch/);
        expect(await grpcCode(admin.call(method, req({ seconds: Math.floor(Date.now() / 1000) + 3600 })))).toMatch(/^INVALID_ARGUMENT: .*in the future/);
        expect(await grpcCode(admin.call(method, req({ seconds: 0, nanos: 1e9 })))).toMatch(/^INVALID_ARGUMENT: .*nanos/);
      }
      // The epoch itself is a valid instant: nothing had happened yet.
      expect(jobsPageFromPb(await admin.call('List', { at: { seconds: 0 } }))).toEqual({ items: [], total: 0, nextCursor: null });
    });
  });

  describe('the CLI (built)', () => {
    it('jobline list --at and jobline executors --at print the REST bodies with --json, and say when in text', async () => {
      const list = await cli(['list', '--json', '--at', t[2], ...cliArgs('admin')]);
      expect(list).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(list.stdout)).toEqual(await body(ADMIN, `/v1/jobs?at=${t[2]}`));
      const mine = await cli(['list', '--json', '--at', t[2], '--status', 'queued', ...cliArgs('alice')]);
      expect(JSON.parse(mine.stdout)).toEqual(await body(ALICE, `/v1/jobs?at=${t[2]}&status=queued`));
      expect((JSON.parse(mine.stdout) as { items: JobView[] }).items.map((j) => j.id)).toEqual([ids.a2]);

      const paged = await cli(['list', '--at', t[2], '--limit', '2', ...cliArgs('admin')]);
      expect(paged.code).toBe(0);
      expect(paged.stdout).toContain(`2 of 3 jobs at ${t[2]}`);
      expect(paged.stdout).toMatch(new RegExp(`next page: jobline list --limit 2 --at ${t[2].replace(/[.]/g, '\\.')} --cursor \\S+`));

      const executors = await cli(['executors', '--json', '--at', t[2], ...cliArgs('admin')]);
      expect(executors).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(executors.stdout)).toEqual(await body(ADMIN, `/v1/executors?at=${t[2]}`));
      const text = await cli(['executors', '--at', t[2], ...cliArgs('alice')]);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`at ${t[2]}, store position`);
      expect(text.stdout).toMatch(new RegExp(`^ex-1  1 attempt\\n  ${ids.a1}  running +attempt 1  alice`, 'm'));
      expect(text.stdout).toMatch(/^ex-2 {2}1 attempt \(1 of other owners\)$/m);
      expect(text.stdout).toContain(`1 queued, waiting for an executor: jobline list --status queued --at ${t[2]}`);
      const empty = await cli(['executors', '--at', t[0], ...cliArgs('admin')]);
      expect(empty.stdout).toContain('no executor had work then');
    });

    it('a bad --at is a usage error (exit 2) before or at the server', async () => {
      const local = await cli(['list', '--at', 'yesterday', ...cliArgs('admin')]);
      expect(local.code).toBe(2);
      expect(local.stderr).toMatch(/--at.*must be an RFC 3339 date-time/);
      expect((await cli(['executors', '--at', '2025-02-30T00:00:00Z', ...cliArgs('admin')])).code).toBe(2);
      const future = await cli(['executors', '--at', '2999-01-01T00:00:00Z', ...cliArgs('admin')]);
      expect(future.code).toBe(2);
      expect(future.stderr).toMatch(/refused, nothing was changed: .*in the future/);
      const early = await cli(['list', '--at', '1969-07-20T20:17:40Z', ...cliArgs('admin')]);
      expect(early.code).toBe(2);
      expect(early.stderr).toMatch(/before the Unix epoch/);
    });
  });
});

describe('the system at a past instant, on jobs run by jobline dev (real orchestrator and executor)', () => {
  let dir: TempDir;
  let stack: import('../../apps/cli/src/dev-stack').DevStack;
  let rest: import('./support').RestClient;

  beforeAll(async () => {
    const { startDevStack } = await import('../../apps/cli/src/dev-stack');
    const { RestClient, quietLogger } = await import('./support');
    dir = tempDir('jobline-history-at-dev-');
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), apiPort: 0, executorCapacity: 1, graceMs: 500, packager: false, logger: quietLogger });
    rest = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('while one job runs on the only slot and another waits: running on the executor, then queued, then both finished', async () => {
    const first = await rest.submit({ command: ['sleep', '1.2'] });
    const second = await rest.submit({ command: ['true'] });
    await rest.finished(first.id);
    await rest.finished(second.id);
    const type = (events: { type: string; occurredAt?: string }[], t: string) => Date.parse((events.find((e) => e.type === t) as { occurredAt: string }).occurredAt);
    const firstEvents = (await (await rest.request(`/v1/jobs/${first.id}/events`)).json()) as { items: { type: string; occurredAt: string }[] };
    const secondEvents = (await (await rest.request(`/v1/jobs/${second.id}/events`)).json()) as { items: { type: string; occurredAt: string }[] };
    // Halfway through the first job's run, the second was waiting for the slot.
    const during = new Date((type(firstEvents.items, 'JobStarted') + type(firstEvents.items, 'JobCompleted')) / 2).toISOString();
    const list = (await (await rest.request(`/v1/jobs?at=${during}&order=submittedAt`)).json()) as { items: JobView[] };
    expect(list.items.map((j) => [j.id, j.status])).toEqual([[first.id, 'running'], [second.id, 'queued']]);
    const executor = list.items[0].executor!;
    expect(executor).toEqual(expect.any(String));
    const executors = (await (await rest.request(`/v1/executors?at=${during}`)).json()) as { queued: number; items: { id: string; running: number; jobs: JobView[] }[] };
    expect(executors.queued).toBe(1);
    expect(executors.items.map((e) => [e.id, e.running, e.jobs.map((j) => j.id)])).toEqual([[executor, 1, [first.id]]]);
    expect(executors.items[0].jobs[0]).toEqual(list.items[0]);

    const after = new Date(type(secondEvents.items, 'JobCompleted') + 50).toISOString();
    await pause(Date.parse(after) - Date.now() + 5); // `at` may not be in the future
    const done = (await (await rest.request(`/v1/jobs?at=${after}&order=submittedAt`)).json()) as { items: JobView[] };
    expect(done.items.map((j) => [j.id, j.status])).toEqual([[first.id, 'succeeded'], [second.id, 'succeeded']]);
    expect(done.items).toEqual([await rest.job(first.id), await rest.job(second.id)]);
    expect(((await (await rest.request(`/v1/executors?at=${after}`)).json()) as { items: unknown[] }).items).toEqual([]);
  });
});
