import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { existsSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { Objm } from '@nats-io/obj';
import { join } from 'node:path';
import request from 'supertest';
import { STREAMS, jobStreamName, subjects, type JobView } from '../../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../libs/event-store/src';
import { UPLOAD_BUCKET, UploadStore } from '../../../libs/messaging/src/bundle-store';
import { connectNats } from '../../../libs/messaging/src/connection';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { startNodeExecutor, type NodeExecutorHandle } from '../../executor/src/node/main';
import type { Orchestrator } from '../../orchestrator/src/orchestrator';
import { createOrchestratorApp } from '../../orchestrator/src/orchestrator.module';
import { hashToken } from './api-tokens';
import { createApiApp, type ApiApp } from './api.module';
import { jobIdForKey } from './idempotency';
import { JobsProjection } from './projections/jobs.projection';

const quiet = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };

const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789';
const CAROL = 'carol-token-0123456789';
const ADMIN = 'admin-token-0123456789';
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('REST api against real NATS, SQLite store, orchestrator and projection', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let orchestratorApp: INestMicroservice;
  let orchestrator: Orchestrator;
  let projection: JobsProjection;
  let api: ApiApp;
  let executor: NodeExecutorHandle | undefined;

  beforeAll(async () => {
    dir = tempDir('jobline-api-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'api-test' });
    jsm = await jetstreamManager(nc);
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
    ({ app: orchestratorApp, orchestrator } = await createOrchestratorApp({ eventStore: store, checkpoints, nc, logger: quiet, cancelConfirmMs: 3000 }));
    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
    api = await createApiApp({
      nc,
      eventStore: store,
      projection,
      port: 0,
      logger: false,
      tokens: [
        { sha256: hashToken(ALICE), owner: 'alice' },
        { sha256: hashToken(BOB).toUpperCase(), owner: 'bob' },
        { sha256: hashToken(CAROL), owner: 'carol', admin: false },
        { sha256: hashToken(ADMIN), owner: 'ops', admin: true },
      ],
    });
  });

  afterAll(async () => {
    await api?.close();
    await executor?.stop();
    await orchestratorApp?.close();
    await orchestrator?.stop();
    await projection?.close();
    await nc?.drain();
    await store?.close();
    await checkpoints?.close();
    await server?.stop();
    dir?.remove();
  });

  const http = () => request(api.url);
  const submit = (token: string, spec: unknown, key?: string) => {
    const req = http().post('/v1/jobs').set(auth(token)).set('Content-Type', 'application/json');
    if (key !== undefined) req.set('Idempotency-Key', key);
    return req.send(JSON.stringify(spec));
  };
  const submitted = async (token: string, spec: unknown = { command: ['true'] }): Promise<JobView> => {
    const res = await submit(token, spec);
    expect(res.status).toBe(201);
    return res.body as JobView;
  };
  const commandsLastSeq = async () => (await jsm.streams.info(STREAMS.commands)).state.last_seq;
  /** Messages the logs stream holds for one job. */
  const logChunksOf = async (jobId: string) => (await jsm.streams.info(STREAMS.logs, { subjects_filter: subjects.logs(jobId) })).state.subjects?.[subjects.logs(jobId)] ?? 0;
  const storedTypes = async (jobId: string) => (await store.readStream(jobStreamName(jobId))).map((r) => r.type);
  const statusOf = async (token: string, jobId: string) => (await http().get(`/v1/jobs/${jobId}`).set(auth(token))).body.status as string;
  const expectProblem = (res: request.Response, status: number) => {
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status, type: expect.stringMatching(/^urn:jobline:problem:/), title: expect.any(String), detail: expect.any(String) });
  };

  describe('without an executor (jobs stay queued)', () => {
    it('answers the probes: healthz always, readyz once NATS and the projection are live', async () => {
      await http().get('/healthz').expect(200, { status: 'ok' });
      const ready = await eventually(async () => {
        const r = await http().get('/readyz');
        return r.status === 200 ? r : undefined;
      }, 10_000, 'readyz 200');
      expect(ready.body).toMatchObject({ ready: true, reasons: [], checks: { nats: { ok: true }, projection: { ok: true, live: true } } });
    });

    it('refuses a request without a valid bearer token with 401', async () => {
      for (const headers of [{}, { Authorization: 'Basic YWxpY2U6eA==' }, { Authorization: 'Bearer' }, auth('not-a-token'), auth(`${ALICE}x`)]) {
        const res = await http().get('/v1/jobs').set(headers);
        expectProblem(res, 401);
        expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
      }
      const before = await commandsLastSeq();
      expectProblem(await submit('nope', { command: ['true'] }), 401);
      expect(await commandsLastSeq()).toBe(before);
      await http().get('/healthz').expect(200);
    });

    it('submits a job: 201 with the JobView and its Location, and a GET right after sees it', async () => {
      const res = await submit(ALICE, { command: ['echo', 'hi'], priority: 'high', env: { A: '1' } });
      expect(res.status).toBe(201);
      const job = res.body as JobView;
      expect(job).toMatchObject({ owner: 'alice', priority: 'high', spec: { command: ['echo', 'hi'], env: { A: '1' } } });
      expect(['pending', 'queued']).toContain(job.status);
      expect(res.headers.location).toBe(`/v1/jobs/${job.id}`);
      // Made up by the api: a UUIDv7, its first 48 bits the time of the submit.
      expect(job.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(Math.abs(parseInt(job.id.slice(0, 8) + job.id.slice(9, 13), 16) - Date.parse(job.submittedAt))).toBeLessThan(60_000);
      const got = await http().get(res.headers.location).set(auth(ALICE)).expect(200);
      expect(got.body).toMatchObject({ id: job.id, owner: 'alice', submittedAt: job.submittedAt });
      expect(await storedTypes(job.id)).toEqual(['JobSubmitted', 'JobQueued']);
      // Ids are case-insensitive in the path.
      await http().get(`/v1/jobs/${job.id.toUpperCase()}`).set(auth(ALICE)).expect(200);
    });

    it('gives the same job for the same owner and Idempotency-Key: 201, then 200, one JobSubmitted', async () => {
      const key = `order-${randomUUID()}`;
      const spec = { command: 'echo once', timeoutSeconds: 60 };
      const first = await submit(ALICE, spec, key);
      expect(first.status).toBe(201);
      expect(first.body.id).toBe(jobIdForKey('alice', key));
      // The same spec with its keys in another order (and its default written out) is the same submission.
      const second = await submit(ALICE, { priority: 'normal', timeoutSeconds: 60, command: 'echo once' }, key);
      expect(second.status).toBe(200);
      expect(second.body.id).toBe(first.body.id);
      expect(second.headers.location).toBe(`/v1/jobs/${first.body.id}`);
      expect((await storedTypes(first.body.id)).filter((t) => t === 'JobSubmitted')).toHaveLength(1);

      const before = await commandsLastSeq();
      const conflict = await submit(ALICE, { command: 'echo twice' }, key);
      expectProblem(conflict, 409);
      expect(conflict.body.detail).toMatch(/Idempotency-Key/);
      expect(await commandsLastSeq()).toBe(before);

      // Another owner's key lives in its own space.
      const bobs = await submit(BOB, spec, key);
      expect(bobs.status).toBe(201);
      expect(bobs.body.id).not.toBe(first.body.id);
      expect(bobs.body.owner).toBe('bob');
    });

    it('answers two concurrent submissions with the same key with one job', async () => {
      const key = `race-${randomUUID()}`;
      const [a, b] = await Promise.all([submit(ALICE, { command: ['true'] }, key), submit(ALICE, { command: ['true'] }, key)]);
      expect([a.status, b.status].sort()).toEqual([200, 201]);
      expect(a.body.id).toBe(b.body.id);
      expect((await storedTypes(a.body.id)).filter((t) => t === 'JobSubmitted')).toHaveLength(1);
    });

    it('refuses bad submissions with 400 problem+json, and neither publishes nor records anything', async () => {
      const head = await store.headPosition();
      const seq = await commandsLastSeq();
      const cases: { name: string; body: string | Buffer; type?: string; key?: string; detail: RegExp; path?: string }[] = [
        { name: 'malformed JSON', body: '{"command": ["true"', detail: /malformed JSON/ },
        { name: 'unknown field', body: JSON.stringify({ command: ['true'], colour: 'red' }), detail: /invalid job spec/, path: '(root)' },
        { name: 'unknown nested field', body: JSON.stringify({ command: ['true'], resources: { gpu: 1 } }), detail: /invalid job spec/, path: 'resources' },
        { name: 'wrong type', body: JSON.stringify({ command: ['true'], timeoutSeconds: 'soon' }), detail: /invalid job spec/, path: 'timeoutSeconds' },
        { name: 'wrong priority', body: JSON.stringify({ command: ['true'], priority: 'urgent' }), detail: /invalid job spec/, path: 'priority' },
        { name: 'empty argv', body: JSON.stringify({ command: [] }), detail: /invalid job spec/, path: 'command' },
        { name: 'empty script', body: JSON.stringify({ command: '   ' }), detail: /invalid job spec/, path: 'command' },
        { name: 'no command', body: JSON.stringify({ env: { A: '1' } }), detail: /invalid job spec/, path: 'command' },
        { name: 'an array', body: JSON.stringify([{ command: ['true'] }]), detail: /invalid job spec/ },
        // Raw text: JSON.stringify of an object literal cannot write an own __proto__ key.
        { name: 'env key __proto__ (was dropped with a 201)', body: '{"command": ["true"], "env": {"__proto__": "x", "A": "1"}}', detail: /invalid job spec/, path: 'env.__proto__' },
        { name: 'label key __proto__', body: '{"command": ["true"], "target": {"labels": {"__proto__": "x"}}}', detail: /invalid job spec/, path: 'target.labels.__proto__' },
        { name: 'empty body', body: '', detail: /empty/ },
        { name: 'over 1 MiB', body: JSON.stringify({ command: ['echo', 'x'.repeat(1024 * 1024)] }), detail: /too large.*1048576 bytes/ },
        { name: 'bad Idempotency-Key', body: JSON.stringify({ command: ['true'] }), key: 'x'.repeat(201), detail: /Idempotency-Key/ },
      ];
      for (const c of cases) {
        const req = http().post('/v1/jobs').set(auth(ALICE)).set('Content-Type', c.type ?? 'application/json');
        if (c.key) req.set('Idempotency-Key', c.key);
        const res = await req.send(c.body);
        try {
          expectProblem(res, 400);
          expect(res.body.code).toBe('invalid_argument');
          expect(res.body.detail).toMatch(c.detail);
          if (c.path) expect(res.body.errors).toEqual(expect.arrayContaining([expect.objectContaining({ path: c.path, message: expect.any(String) })]));
        } catch (err) {
          throw new Error(`case "${c.name}": ${(err as Error).message}`, { cause: err });
        }
      }
      const wrongType = await http().post('/v1/jobs').set(auth(ALICE)).set('Content-Type', 'text/plain').send('command=true');
      expectProblem(wrongType, 415);
      expect(await store.headPosition()).toBe(head);
      expect(await commandsLastSeq()).toBe(seq);
    });

    it('refuses a chunked body that grows past 1 MiB, and a body that is not UTF-8, with 400', async () => {
      const seq = await commandsLastSeq();
      const block = 'y'.repeat(64 * 1024);
      const res = await rawPost(new URL('/v1/jobs', api.url).href, ALICE, ['{"command": ["echo", "', ...Array.from({ length: 20 }, () => block), '"]}']);
      expect(res.status).toBe(400);
      expect(res.type).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.body).detail).toMatch(/too large/);
      const latin1 = await rawPost(new URL('/v1/jobs', api.url).href, ALICE, [Buffer.from('{"command": "echo caf\xe9"}', 'latin1')]);
      expect(latin1.status).toBe(400);
      expect(JSON.parse(latin1.body).detail).toMatch(/not valid UTF-8/);
      expect(await commandsLastSeq()).toBe(seq);
    });

    it('streams a multipart archive into the upload store; a bad body stores and publishes nothing', async () => {
      const uploads = await UploadStore.open(nc);
      const spec = JSON.stringify({ command: 'true', source: { archive: true } });
      const archive = Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(3 * 1024 * 1024)]);
      const multipart = (parts: [string, string | Buffer, string?][]) =>
        http()
          .post('/v1/jobs')
          .set(auth(ALICE))
          .set('Content-Type', 'multipart/form-data; boundary=JoBlInE')
          .send(
            Buffer.concat([
              ...parts.flatMap(([name, data, filename]) => [
                Buffer.from(`--JoBlInE\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n`),
                Buffer.from(data),
                Buffer.from('\r\n'),
              ]),
              Buffer.from('--JoBlInE--\r\n'),
            ]),
          );
      const ok = await multipart([['spec', spec], ['archive', archive, 'src.tar.gz']]);
      expect(ok.status).toBe(201);
      expect(Buffer.from((await uploads.get(ok.body.id))!).equals(archive)).toBe(true);

      const seq = await commandsLastSeq();
      const objects = async () => (await (await new Objm(nc).open(UPLOAD_BUCKET)).list()).length;
      const before = await objects();
      for (const [what, parts, detail] of [
        ['a part after the archive', [['spec', spec], ['archive', archive, 'a.tgz'], ['extra', 'x']], /unknown multipart part "extra"|two parts/],
        ['the archive before the spec', [['archive', archive, 'a.tgz'], ['spec', spec]], /spec part must come before the archive part/],
        ['an invalid spec', [['spec', JSON.stringify({ command: '', source: { archive: true } })], ['archive', archive, 'a.tgz']], /invalid job spec/],
      ] as [string, [string, string | Buffer, string?][], RegExp][]) {
        const res = await multipart(parts);
        try {
          expectProblem(res, 400);
          expect(res.body.detail).toMatch(detail);
        } catch (err) {
          throw new Error(`case "${what}": ${(err as Error).message}`, { cause: err });
        }
      }
      expect(await objects()).toBe(before);
      expect(await commandsLastSeq()).toBe(seq);
    });

    it('keeps owners apart: another owner’s job is 404 exactly like a missing one; admins see everything', async () => {
      const job = await submitted(ALICE, { command: ['true'] });
      const missing = randomUUID();
      const paths = (id: string) => [
        ['get', `/v1/jobs/${id}`],
        ['get', `/v1/jobs/${id}?at=${encodeURIComponent(new Date().toISOString())}`],
        ['get', `/v1/jobs/${id}/events`],
        ['get', `/v1/jobs/${id}/logs`],
        ['get', `/v1/jobs/${id}/logs?follow=true`],
        ['post', `/v1/jobs/${id}/cancel`],
      ] as const;
      const seq = await commandsLastSeq();
      for (const [[method, path], [, missingPath]] of paths(job.id).map((p, i) => [p, paths(missing)[i]] as const)) {
        const theirs = await http()[method](path).set(auth(BOB));
        const none = await http()[method](missingPath).set(auth(BOB));
        expectProblem(theirs, 404);
        expect(theirs.body).toEqual({ ...none.body, detail: none.body.detail.replace(missing, job.id) });
      }
      expect(await commandsLastSeq()).toBe(seq);
      expect(await statusOf(ALICE, job.id)).toBe('queued');
      // A malformed id is a job that does not exist either.
      expectProblem(await http().get('/v1/jobs/not-a-uuid').set(auth(ALICE)), 404);

      const bobs = await http().get('/v1/jobs?limit=100').set(auth(BOB)).expect(200);
      expect(bobs.body.items.length).toBeGreaterThan(0);
      expect(bobs.body.items.every((j: JobView) => j.owner === 'bob')).toBe(true);
      expect(bobs.body.total).toBe(bobs.body.items.length);
      expectProblem(await http().get('/v1/jobs?owner=alice').set(auth(BOB)), 403);
      await http().get('/v1/jobs?owner=bob').set(auth(BOB)).expect(200);

      await http().get(`/v1/jobs/${job.id}`).set(auth(ADMIN)).expect(200);
      await http().get(`/v1/jobs/${job.id}/events`).set(auth(ADMIN)).expect(200);
      const all = await http().get('/v1/jobs?limit=100').set(auth(ADMIN)).expect(200);
      expect(new Set(all.body.items.map((j: JobView) => j.owner))).toEqual(new Set(['alice', 'bob']));
      const onlyAlice = await http().get('/v1/jobs?owner=alice&limit=100').set(auth(ADMIN)).expect(200);
      expect(onlyAlice.body.items.every((j: JobView) => j.owner === 'alice')).toBe(true);
      expect(onlyAlice.body.items.map((j: JobView) => j.id)).toContain(job.id);
    });

    it('lists with filters, orders and cursor paging, and refuses bad parameters with 400', async () => {
      const priorities = ['low', 'high', 'normal', 'high', 'low', 'high', 'normal'] as const;
      const mine: JobView[] = [];
      for (const priority of priorities) mine.push(await submitted(CAROL, { command: ['true'], priority }));
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: request.Response = await http()
          .get('/v1/jobs')
          .query({ limit: 3, order: 'submittedAt', ...(cursor ? { cursor } : {}) })
          .set(auth(CAROL))
          .expect(200);
        expect(res.body.total).toBe(7);
        seen.push(...res.body.items.map((j: JobView) => j.id));
        cursor = res.body.nextCursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      expect(seen).toEqual(mine.map((j) => j.id));

      const newestFirst = await http().get('/v1/jobs').set(auth(CAROL)).expect(200);
      expect(newestFirst.body.items.map((j: JobView) => j.id)).toEqual(mine.map((j) => j.id).reverse());
      const high = await http().get('/v1/jobs?priority=high').set(auth(CAROL)).expect(200);
      expect(high.body.items.map((j: JobView) => j.id).sort()).toEqual(mine.filter((j) => j.priority === 'high').map((j) => j.id).sort());
      const lowOrNormal = await http().get('/v1/jobs?priority=low,normal&order=-priority').set(auth(CAROL)).expect(200);
      expect(lowOrNormal.body.items.map((j: JobView) => j.priority)).toEqual(['normal', 'normal', 'low', 'low']);
      const repeated = await http().get('/v1/jobs?status=queued&status=running').set(auth(CAROL)).expect(200);
      expect(repeated.body.total).toBe(7);
      const none = await http().get('/v1/jobs?status=succeeded').set(auth(CAROL)).expect(200);
      expect(none.body).toEqual({ items: [], total: 0, nextCursor: null });

      const first = await http().get('/v1/jobs?limit=2&order=-priority').set(auth(CAROL)).expect(200);
      for (const q of ['limit=0', 'limit=101', 'limit=ten', 'limit=1&limit=2', 'order=name', 'status=done', 'priority=urgent', 'owner=a.b', 'colour=red', 'cursor=%25%25', `order=submittedAt&cursor=${first.body.nextCursor}`]) {
        const res = await http().get(`/v1/jobs?${q}`).set(auth(CAROL));
        try {
          expectProblem(res, 400);
        } catch (err) {
          throw new Error(`query "${q}": ${(err as Error).message}`, { cause: err });
        }
      }
      const stats = await http().get('/v1/stats').set(auth(CAROL)).expect(200);
      expect(stats.body).toEqual({ total: 7, byStatus: { pending: 0, queued: 7, running: 0, succeeded: 0, failed: 0, cancelled: 0, timed_out: 0 } });
      const everyone = await http().get('/v1/stats').set(auth(ADMIN)).expect(200);
      expect(everyone.body.total).toBeGreaterThan(7);
      await http().get('/v1/stats?owner=carol').set(auth(ADMIN)).expect(200, stats.body);
      expectProblem(await http().get('/v1/stats?owner=alice').set(auth(CAROL)), 403);
    });

    it('cancels a queued job (202, then cancelled by the orchestrator) and refuses to cancel it again (409)', async () => {
      const job = await submitted(ALICE, { command: ['sleep', '60'] });
      const res = await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(ALICE)).expect(202);
      expect(res.body).toMatchObject({ id: job.id, cancelRequested: true });
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'cancelled', 10_000, 'job cancelled');
      expect(await storedTypes(job.id)).toEqual(['JobSubmitted', 'JobQueued', 'JobCancelRequested', 'JobCancelled']);
      const again = await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(ALICE));
      expectProblem(again, 409);
      expect(again.body.detail).toMatch(/already finished \(cancelled\)/);

      // An admin cancels someone else's job, with a reason; a bad body is a 400.
      const bobs = await submitted(BOB, { command: ['sleep', '60'] });
      expectProblem(await http().post(`/v1/jobs/${bobs.id}/cancel`).set(auth(ADMIN)).set('Content-Type', 'application/json').send('{"why": 1}'), 400);
      await http().post(`/v1/jobs/${bobs.id}/cancel`).set(auth(ADMIN)).set('Content-Type', 'application/json').send({ reason: 'maintenance' }).expect(202);
      await eventually(async () => (await statusOf(BOB, bobs.id)) === 'cancelled', 10_000, 'bob’s job cancelled');
      // The admin is who acted: named in the event and as its actor, not the owner.
      const requested = (await store.readStream(jobStreamName(bobs.id))).find((r) => r.type === 'JobCancelRequested');
      expect(requested?.data).toMatchObject({ requestedBy: 'ops', reason: 'maintenance' });
      expect(requested?.metadata).toMatchObject({ actor: 'ops', correlationId: bobs.id });
    });

    it('lists a job’s events in order, and replays the job as it stood at a past time (?at=)', async () => {
      const job = await submitted(ALICE, { command: ['sleep', '60'], priority: 'low' });
      await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(ALICE)).expect(202);
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'cancelled', 10_000, 'job cancelled');

      const { body } = await http().get(`/v1/jobs/${job.id}/events`).set(auth(ALICE)).expect(200);
      const items = body.items as { position: number; id: string; type: string; version: number; occurredAt: string; actor: string; data: Record<string, unknown> }[];
      expect(items.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobCancelRequested', 'JobCancelled']);
      const stored = await store.readStream(jobStreamName(job.id));
      expect(items.map((e) => e.id)).toEqual(stored.map((r) => r.id));
      expect(items.map((e) => e.position)).toEqual(stored.map((r) => r.position));
      for (let i = 1; i < items.length; i++) expect(items[i].position).toBeGreaterThan(items[i - 1].position);
      expect(items[0]).toMatchObject({ version: 3, actor: 'alice', data: { jobId: job.id, owner: 'alice', priority: 'low' } });
      expect(Object.keys(items[0]).sort()).toEqual(['actor', 'causationId', 'correlationId', 'data', 'id', 'occurredAt', 'position', 'type', 'version']);

      const at = (t: number) => http().get(`/v1/jobs/${job.id}`).query({ at: new Date(t).toISOString() }).set(auth(ALICE));
      const submittedAt = Date.parse(items[0].occurredAt);
      const cancelRequestedAt = Date.parse(items[2].occurredAt);
      expectProblem(await at(submittedAt - 1), 404);
      const early = await at(submittedAt).expect(200);
      expect(early.body).toMatchObject({ id: job.id, status: 'queued', cancelRequested: false, finishedAt: null });
      if (cancelRequestedAt > submittedAt) {
        expect((await at(cancelRequestedAt - 1).expect(200)).body.status).toBe('queued');
      }
      const late = await at(Date.now()).expect(200);
      expect(late.body).toEqual((await http().get(`/v1/jobs/${job.id}`).set(auth(ALICE)).expect(200)).body);
      // Another zone, same instant.
      const plusTwo = new Date(submittedAt + 2 * 3600_000).toISOString().replace('Z', '+02:00');
      expect((await http().get(`/v1/jobs/${job.id}`).query({ at: plusTwo }).set(auth(ALICE)).expect(200)).body.status).toBe('queued');
      for (const bad of ['yesterday', '2025-13-01T00:00:00Z', '2025-01-01']) {
        expectProblem(await http().get(`/v1/jobs/${job.id}`).query({ at: bad }).set(auth(ALICE)), 400);
      }
    });
    it('answers 503 with the job id when a submission is not recorded in time', async () => {
      // A second api whose projection follows another (empty) store never sees the job appear.
      const otherStore = new SqliteEventStore({ path: join(dir.path, 'other-events.db') });
      const blind = new JobsProjection({ path: join(dir.path, 'other-read.db') });
      const slow = await createApiApp({ nc, eventStore: otherStore, projection: blind, port: 0, logger: false, submitTimeoutMs: 300, tokens: [{ sha256: hashToken(ALICE), owner: 'alice' }] });
      try {
        const res = await request(slow.url).post('/v1/jobs').set(auth(ALICE)).set('Content-Type', 'application/json').send({ command: ['true'] });
        expectProblem(res, 503);
        expect(res.body.code).toBe('unavailable');
        expect(res.body.jobId).toEqual(expect.any(String));
        expect(res.body.detail).toMatch(/not recorded yet/);
        // The command was published all the same: the orchestrator records it in the real store.
        await eventually(async () => (await storedTypes(res.body.jobId)).includes('JobSubmitted'), 10_000, 'job recorded');
      } finally {
        await slow.close();
        await blind.close();
        await otherStore.close();
      }
    });
  });

  describe('with a Node executor running the jobs', () => {
    const gate = () => join(dir.path, `gate-${randomUUID()}`);

    beforeAll(async () => {
      // The jobs wait on gate files in the test's folder, which a sandbox hides from them: explicitly unsandboxed.
      executor = await startNodeExecutor({ nc, executorId: 'api-test', capacity: 4, workRoot: join(dir.path, 'work'), graceMs: 500, heartbeatMs: 200, logger: quietExecutor, sandbox: 'none' });
    });

    /** A follow request read as it arrives; `done` settles when the response is over, complete or cut. */
    function follow(path: string, token = ALICE) {
      const received: Buffer[] = [];
      let response: IncomingMessage | undefined;
      const req = httpRequest(new URL(path, api.url), { headers: auth(token) });
      const done = new Promise<{ status: number; headers: IncomingMessage['headers']; text: string; complete: boolean }>((resolve, reject) => {
        req.on('response', (r) => {
          response = r;
          r.on('data', (d: Buffer) => received.push(d));
          r.on('error', () => undefined);
          r.on('close', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, text: Buffer.concat(received).toString('utf8'), complete: r.complete }));
        });
        req.on('error', (err) => {
          if (!response) reject(err);
        });
      });
      req.end();
      return { done, text: () => Buffer.concat(received).toString('utf8'), abort: () => req.destroy() };
    }
    const logConsumers = async () => {
      let n = 0;
      for await (const ci of jsm.consumers.list(STREAMS.logs)) if (ci) n++;
      return n;
    };

    it('lists the executor from its heartbeats', async () => {
      const res = await eventually(async () => {
        const r = await http().get('/v1/executors').set(auth(BOB)).expect(200);
        return r.body.items.some((e: { id: string }) => e.id === 'api-test') ? r : undefined;
      }, 10_000, 'executor listed');
      expect(res.body.items.find((e: { id: string }) => e.id === 'api-test')).toMatchObject({
        id: 'api-test',
        capacity: 4,
        running: expect.any(Number),
        alive: true,
        lastSeen: expect.any(String),
        kind: 'local',
      });
      expectProblem(await http().get('/v1/executors'), 401);
    });

    it('serves a finished job’s log as text/plain, whole, by stream, from an offset, and 409s a cancel', async () => {
      const script = 'for i in 1 2 3; do echo out$i; echo err$i >&2; done; printf "caf\\303\\251"';
      const job = await submitted(ALICE, { command: ['sh', '-c', script] });
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'succeeded', 20_000, 'job succeeded');

      const whole = await http().get(`/v1/jobs/${job.id}/logs`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(whole.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(whole.headers['jobline-attempt']).toBe('1');
      const text = whole.body as string;
      const view = (await http().get(`/v1/jobs/${job.id}`).set(auth(ALICE)).expect(200)).body as JobView;
      expect(Buffer.byteLength(text)).toBe(view.logBytes);

      const stdout = await http().get(`/v1/jobs/${job.id}/logs?stream=stdout`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(stdout.body).toBe('out1\nout2\nout3\ncafé');
      const stderr = await http().get(`/v1/jobs/${job.id}/logs?stream=stderr`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(stderr.body).toBe('err1\nerr2\nerr3\n');
      // The whole log is both streams interleaved in the order the bytes came out.
      expect(Buffer.byteLength(text)).toBe(Buffer.byteLength(stdout.body) + Buffer.byteLength(stderr.body));
      expect(isInterleaving(text, stdout.body, stderr.body)).toBe(true);
      // Offsets count the attempt's bytes, stdout and stderr together.
      const bytes = Buffer.from(text);
      for (const offset of [0, 5, bytes.length - 2, bytes.length, bytes.length + 10]) {
        const part = await http().get(`/v1/jobs/${job.id}/logs?offset=${offset}`).set(auth(ALICE)).buffer(true).parse(binaryParser).expect(200);
        expect(Buffer.compare(part.body as Buffer, bytes.subarray(offset))).toBe(0);
      }
      // A follow of a finished job is the whole log, at once.
      const followed = await http().get(`/v1/jobs/${job.id}/logs?follow=true`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(followed.body).toBe(text);

      expectProblem(await http().get(`/v1/jobs/${job.id}/logs?attempt=2`).set(auth(ALICE)), 404);
      for (const q of ['stream=both', 'offset=-1', 'follow=maybe', 'attempt=0', 'tail=5']) expectProblem(await http().get(`/v1/jobs/${job.id}/logs?${q}`).set(auth(ALICE)), 400);
      expectProblem(await http().get(`/v1/jobs/${job.id}/logs`).set(auth(BOB)), 404);

      const cancel = await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(ALICE));
      expectProblem(cancel, 409);
      expect(cancel.body.detail).toMatch(/succeeded/);
    });

    it('purges a finished job (DELETE → 204): logs and artifacts gone, the history kept and ending with JobPurged', async () => {
      const job = await submitted(ALICE, { command: ['sh', '-c', 'mkdir -p out; echo kept > out/a.txt; echo purge-me; echo err >&2'], outputs: ['out/*.txt'] });
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'succeeded', 20_000, 'job succeeded');
      const before = await http().get(`/v1/jobs/${job.id}/logs`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(before.body).toContain('purge-me');
      await http().get(`/v1/jobs/${job.id}/artifacts`).set(auth(ALICE)).buffer(true).parse(binaryParser).expect(200);

      // Another owner and an unknown id: 404, exactly like a missing job; nothing is published.
      const seq = await commandsLastSeq();
      expectProblem(await http().delete(`/v1/jobs/${job.id}`).set(auth(BOB)), 404);
      expectProblem(await http().delete(`/v1/jobs/${randomUUID()}`).set(auth(ALICE)), 404);
      expectProblem(await http().delete('/v1/jobs/not-a-job').set(auth(ALICE)), 404);
      expect(await commandsLastSeq()).toBe(seq);

      const res = await http().delete(`/v1/jobs/${job.id}`).set(auth(ALICE)).expect(204);
      expect(res.text).toBe('');
      // 204 comes once JobPurged is visible; JobPurged is recorded before the data is deleted, and a purged job serves none of it.
      const view = (await http().get(`/v1/jobs/${job.id}`).set(auth(ALICE)).expect(200)).body as JobView;
      expect(view).toMatchObject({ id: job.id, status: 'succeeded', purged: true, logBytes: 0 });
      const after = await http().get(`/v1/jobs/${job.id}/logs`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(after.body).toBe('');
      expectProblem(await http().get(`/v1/jobs/${job.id}/artifacts`).set(auth(ALICE)), 404);
      // And the data is gone from the bus too, shortly after.
      await eventually(async () => (await logChunksOf(job.id)) === 0, 10_000, 'the log chunks deleted');
      const types = await storedTypes(job.id);
      expect(types[types.length - 1]).toBe('JobPurged');
      const events = (await http().get(`/v1/jobs/${job.id}/events`).set(auth(ALICE)).expect(200)).body.items as { type: string; actor: string; data: unknown }[];
      expect(events.map((e) => e.type)).toEqual(types);
      expect(events[events.length - 1]).toMatchObject({ type: 'JobPurged', actor: 'alice', data: { by: 'alice', purgedAt: expect.any(String) } });

      // Purging again is 204 and writes nothing; the projection rebuilt from the store agrees with the live one.
      await http().delete(`/v1/jobs/${job.id}`).set(auth(ALICE)).expect(204);
      expect(await storedTypes(job.id)).toEqual(types);
      const rebuilt = await JobsProjection.rebuild(store, join(dir.path, `rebuilt-${randomUUID()}.db`));
      try {
        expect(rebuilt.get(job.id)).toEqual(projection.get(job.id));
      } finally {
        await rebuilt.close();
      }
    });

    it('refuses to purge a job that is not finished (409), at the api and at the orchestrator, deleting nothing', async () => {
      const go = gate();
      const job = await submitted(ALICE, { command: ['sh', '-c', `echo still-here; while [ ! -f ${go} ]; do sleep 0.05; done`] });
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'running', 20_000, 'job running');
      const seq = await commandsLastSeq();
      const res = await http().delete(`/v1/jobs/${job.id}`).set(auth(ALICE));
      expectProblem(res, 409);
      expect(res.body.detail).toMatch(/not finished \(running\)/);
      expect(await commandsLastSeq()).toBe(seq);
      // A purge command that reaches the orchestrator anyway is refused by the decider's rule, before anything is deleted.
      await expect(orchestrator.purge('alice', { jobId: job.id })).rejects.toMatchObject({ code: 'failed_precondition' });
      await expect(orchestrator.purge('bob', { jobId: job.id })).rejects.toMatchObject({ code: 'not_found' });
      await expect(orchestrator.purge('alice', { jobId: job.id, extra: 1 })).rejects.toMatchObject({ code: 'invalid_argument' });
      await eventually(async () => ((await http().get(`/v1/jobs/${job.id}/logs`).set(auth(ALICE)).buffer(true).parse(textParser)).body as string).includes('still-here'), 10_000, 'log kept');
      expect(await storedTypes(job.id)).not.toContain('JobPurged');
      writeFileSync(go, '');
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'succeeded', 20_000, 'job succeeded');
    });

    it('follows a running job’s log live until the job ends, then ends the response cleanly', async () => {
      const go = gate();
      const job = await submitted(ALICE, { command: ['sh', '-c', `echo first; echo warn >&2; while [ ! -f ${go} ]; do sleep 0.05; done; echo second`] });
      const f = follow(`/v1/jobs/${job.id}/logs?follow=true`);
      await eventually(() => f.text().includes('first') && f.text().includes('warn'), 20_000, 'first line streamed');
      // The job is still running, blocked on the gate: what arrived came live.
      expect(await statusOf(ALICE, job.id)).toBe('running');
      expect(f.text()).not.toContain('second');
      writeFileSync(go, '');
      const res = await f.done;
      expect(res.status).toBe(200);
      expect(res.complete).toBe(true);
      expect(res.headers['transfer-encoding']).toBe('chunked');
      expect(res.text.split('\n').sort()).toEqual(['', 'first', 'second', 'warn']);
      expect(res.text.endsWith('second\n')).toBe(true);
      expect(await statusOf(ALICE, job.id)).toBe('succeeded');
      const plain = await http().get(`/v1/jobs/${job.id}/logs`).set(auth(ALICE)).buffer(true).parse(textParser).expect(200);
      expect(res.text).toBe(plain.body);

      // Following one stream only, from before the job starts, through a much longer log.
      const go2 = gate();
      const job2 = await submitted(ALICE, { command: ['sh', '-c', `while [ ! -f ${go2} ]; do sleep 0.05; done; i=0; while [ $i -lt 2000 ]; do echo line$i; echo e$i >&2; i=$((i+1)); done`] });
      const f2 = follow(`/v1/jobs/${job2.id}/logs?follow=1&stream=stdout`);
      await eventually(async () => (await logConsumers()) > 0, 10_000, 'follower reading');
      writeFileSync(go2, '');
      const res2 = await f2.done;
      expect(res2.text).toBe(Array.from({ length: 2000 }, (_, i) => `line${i}\n`).join(''));
    });

    it('two followers share one live reader; it stops when they go away, leaving no consumer behind', async () => {
      const go = gate();
      const job = await submitted(ALICE, { command: ['sh', '-c', `echo hello; while [ ! -f ${go} ]; do sleep 0.05; done`] });
      await eventually(async () => (await logConsumers()) === 0, 10_000, 'no readers left from before');
      const followers = [follow(`/v1/jobs/${job.id}/logs?follow=true`), follow(`/v1/jobs/${job.id}/logs?follow=true`, ADMIN)];
      await eventually(() => followers.every((f) => f.text().includes('hello')), 20_000, 'followers got output');
      // Each read what was stored on its own, then both joined the job's one live tail.
      await eventually(async () => (await logConsumers()) === 1, 10_000, 'one shared consumer');
      for (const f of followers) {
        f.abort();
        await f.done.catch(() => undefined);
      }
      await eventually(async () => (await logConsumers()) === 0, 10_000, 'follower consumers deleted');
      writeFileSync(go, '');
      await eventually(async () => (await statusOf(ALICE, job.id)) === 'succeeded', 20_000, 'job succeeded');
      expect(existsSync(go)).toBe(true);
    });

    it('cuts open follows when it closes (the log is not complete), and deletes their consumers', async () => {
      const second = new JobsProjection({ path: join(dir.path, 'second-read.db') });
      const other = await createApiApp({ nc, eventStore: store, projection: second, port: 0, logger: false, tokens: [{ sha256: hashToken(ALICE), owner: 'alice' }] });
      const go = gate();
      try {
        const job = await submitted(ALICE, { command: ['sh', '-c', `echo waiting; while [ ! -f ${go} ]; do sleep 0.05; done`] });
        await eventually(() => second.get(job.id) !== null, 10_000, 'second projection sees the job');
        const received: Buffer[] = [];
        const cut = new Promise<boolean>((resolve) => {
          httpRequest(new URL(`/v1/jobs/${job.id}/logs?follow=true`, other.url), { headers: auth(ALICE) }, (r) => {
            r.on('data', (d: Buffer) => received.push(d));
            r.on('error', () => undefined);
            r.on('close', () => resolve(r.complete));
          }).end();
        });
        await eventually(() => Buffer.concat(received).toString().includes('waiting'), 20_000, 'follower got output');
        await other.close();
        expect(await cut).toBe(false);
        await eventually(async () => (await logConsumers()) === 0, 10_000, 'follower consumer deleted');
      } finally {
        writeFileSync(go, '');
        await other.close();
        await second.close();
      }
    });

    it('reports not ready while the projection is stopped, and ready again once it follows the store', async () => {
      await projection.stop();
      const down = await http().get('/readyz').expect(503);
      expect(down.body.ready).toBe(false);
      expect(down.body.checks.nats.ok).toBe(true);
      expect(down.body.reasons.join(' ')).toMatch(/projection/);
      await http().get('/healthz').expect(200);
      projection.start(store);
      await eventually(async () => (await http().get('/readyz')).status === 200, 10_000, 'ready again');
    });
  });
});

/** A POST written by hand: raw bytes, optionally in several chunks (no Content-Length). */
function rawPost(url: string, token: string, parts: (string | Buffer)[]): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { ...auth(token), 'Content-Type': 'application/json' } }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d: string) => (body += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, type: String(r.headers['content-type']), body }));
    });
    req.on('error', reject);
    for (const p of parts.slice(0, -1)) req.write(p);
    req.end(parts[parts.length - 1]);
  });
}

/** Whether `whole` is `a` and `b` merged, each keeping its own order. */
function isInterleaving(whole: string, a: string, b: string): boolean {
  if (whole.length !== a.length + b.length) return false;
  // reach[j]: whole[0, i+j) can be made of a[0, i) and b[0, j).
  let reach = Array.from({ length: b.length + 1 }, (_, j) => b.slice(0, j) === whole.slice(0, j));
  for (let i = 1; i <= a.length; i++) {
    const next = new Array<boolean>(b.length + 1).fill(false);
    for (let j = 0; j <= b.length; j++) {
      next[j] = (reach[j] && a[i - 1] === whole[i + j - 1]) || (j > 0 && next[j - 1] && b[j - 1] === whole[i + j - 1]);
    }
    reach = next;
  }
  return reach[b.length];
}

/** superagent parsers get the raw response stream; its typings say otherwise. */
type Parser = Parameters<request.Test['parse']>[0];

const textParser = ((res: IncomingMessage, cb: (err: Error | null, body: string) => void): void => {
  let s = '';
  res.setEncoding('utf8');
  res.on('data', (d: string) => (s += d));
  res.on('end', () => cb(null, s));
}) as unknown as Parser;

const binaryParser = ((res: IncomingMessage, cb: (err: Error | null, body: Buffer) => void): void => {
  const parts: Buffer[] = [];
  res.on('data', (d: Buffer) => parts.push(d));
  res.on('end', () => cb(null, Buffer.concat(parts)));
}) as unknown as Parser;
