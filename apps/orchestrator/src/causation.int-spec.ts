import * as grpc from '@grpc/grpc-js';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { STREAMS, decodeJobEvent, jobStreamName, subjects, type CommandRejection, type JobView, type StoredJobEvent } from '../../../libs/contracts/src';
import type { SqliteEventStore } from '../../../libs/event-store/src';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { readTlsDir } from '../../../libs/service/src';
import { eventually, startTestBus, type TempDir, type TestBus } from '../../../libs/testing/src';
import { hashToken } from '../../api/src/api-tokens';
import { createApiApp, type ApiApp } from '../../api/src/api.module';
import { jobServiceClient } from '../../api/src/grpc/jobs.proto-loader';
import { JobsProjection } from '../../api/src/projections/jobs.projection';
import { certPaths, certsDir, certsInit, certsIssue } from '../../cli/src/certs/dev-pki';
import { startNodeExecutor, type NodeExecutorHandle } from '../../executor/src/node/main';
import { ADMIN_COMMANDS_DURABLE } from './orchestrator.module';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';

const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };
const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789';
const ADMIN = 'admin-token-0123456789';
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const TERMINAL = ['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut'];

/**
 * Issue 11 item 4: every event names its cause (the command message, the request, the report,
 * the event it answers) and the job's correlation, and the recorded actor is who acted.
 */
describe('causation, correlation and actors of a job’s whole life (real NATS, SQLite, orchestrator, executor, api)', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let dir: TempDir;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let publisher: JetStreamPublisher;
  let store: SqliteEventStore;
  let executor: NodeExecutorHandle;
  let projection: JobsProjection;
  let api: ApiApp;
  let dataDir: string;
  /** Every report an executor sent (core NATS sees JetStream publishes too), by job: their Nats-Msg-Id. */
  const reports = new Map<string, { kind: string; msgId: string }[]>();
  const adminCommands: string[] = [];
  const subs: Subscription[] = [];

  beforeAll(async () => {
    ({ dir, nc, jsm, publisher, store } = bus = await startTestBus('causation-test', { dirPrefix: 'jobline-causation-' }));
    dataDir = join(dir.path, 'data');
    subs.push(
      nc.subscribe(subjects.reportsAll, {
        callback: (_err, m: Msg) => {
          const body = JSON.parse(new TextDecoder().decode(m.data)) as { jobId: string; kind: string };
          const list = reports.get(body.jobId) ?? [];
          list.push({ kind: body.kind, msgId: m.headers?.get('Nats-Msg-Id') ?? '' });
          reports.set(body.jobId, list);
        },
      }),
      nc.subscribe(subjects.adminCommandsAll, { callback: (_err, m: Msg) => void adminCommands.push(m.subject) }),
    );
    orch = await startTestOrchestrator(bus, { cancelConfirmMs: 5000 });
    executor = await startNodeExecutor({ nc, executorId: 'solo', capacity: 4, workRoot: join(dir.path, 'work'), graceMs: 300, heartbeatMs: 200, logger: quietExecutor });
    await certsInit(dataDir);
    await certsIssue(dataDir, 'alice');
    const tls = readTlsDir(certsDir(dataDir));
    if (!tls) throw new Error('no certificates');
    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
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
  }, 60_000);

  afterAll(async () => {
    for (const s of subs) s.unsubscribe();
    await api?.close();
    await executor?.stop();
    await orch?.stop();
    await projection?.close();
    await bus?.stop();
  });

  const http = () => request(api.url);
  const history = async (jobId: string): Promise<StoredJobEvent[]> => (await store.readStream(jobStreamName(jobId))).map(decodeJobEvent);
  const finished = (jobId: string) =>
    eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => TERMINAL.includes(e.type)) ? h : undefined;
    }, 30_000, `job ${jobId} to finish`);
  const recorded = (jobId: string, type: string) =>
    eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => e.type === type) ? h : undefined;
    }, 30_000, `${type} of ${jobId}`);
  const byType = (events: StoredJobEvent[], type: string) => {
    const e = events.find((x) => x.type === type);
    if (!e) throw new Error(`no ${type} in ${events.map((x) => x.type).join(', ')}`);
    return e;
  };
  const reportId = (jobId: string, kind: string) => {
    const r = reports.get(jobId)?.find((x) => x.kind === kind);
    if (!r?.msgId) throw new Error(`no ${kind} report of ${jobId} seen`);
    return r.msgId;
  };
  /** Each event's cause, as ids: what the scheduler, the executor and the start answered. */
  const expectLifeOf = (events: StoredJobEvent[], o: { cause: string; actor: string; correlation: string }) => {
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    const [submitted, queued, dispatched, started, completed] = events;
    const jobId = submitted.metadata.jobId;
    expect(events.map((e) => [e.type, e.metadata.actor, e.metadata.causationId, e.metadata.correlationId])).toEqual([
      ['JobSubmitted', o.actor, o.cause, o.correlation],
      ['JobQueued', o.actor, o.cause, o.correlation],
      // The scheduler's decision names the event it was taken on; the start the dispatch it answers; the end the report.
      ['JobDispatched', 'scheduler', queued.id, o.correlation],
      ['JobStarted', 'executor:solo', dispatched.id, o.correlation],
      ['JobCompleted', 'executor:solo', reportId(jobId, 'finished'), o.correlation],
    ]);
    expect(new Set([submitted.id, queued.id, dispatched.id, started.id, completed.id]).has(reportId(jobId, 'finished'))).toBe(false);
  };

  describe('over NATS', () => {
    it('a submit with Nats-Msg-Id: the submission names it, every later event its own cause, all share the job id as correlation', async () => {
      const jobId = randomUUID();
      const msgId = `acme-${randomUUID()}`;
      await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' } }, { msgId });
      expectLifeOf(await finished(jobId), { cause: msgId, actor: 'alice', correlation: jobId });
    });

    it("the submit's own correlationId is the whole job's, never the scheduler's or an executor's", async () => {
      const jobId = randomUUID();
      await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' }, correlationId: 'order-4711' }, { msgId: jobId });
      expectLifeOf(await finished(jobId), { cause: jobId, actor: 'alice', correlation: 'order-4711' });
    });

    it('a Jobline-Request-Id header is the cause even with a Nats-Msg-Id; without either, the stream sequence is', async () => {
      const withRequest = randomUUID();
      await publisher.publish(subjects.submit('alice'), { jobId: withRequest, spec: { command: 'true' } }, { msgId: withRequest, headers: { 'Jobline-Request-Id': 'req.42:a-b' } });
      expect(byType(await recorded(withRequest, 'JobQueued'), 'JobSubmitted').metadata.causationId).toBe('req.42:a-b');

      const bare = randomUUID();
      const ack = await publisher.publish(subjects.submit('alice'), { jobId: bare, spec: { command: 'true' } });
      expect(byType(await recorded(bare, 'JobQueued'), 'JobSubmitted').metadata.causationId).toBe(`${STREAMS.commands}:${ack.seq}`);
    });

    it('a malformed Jobline-Request-Id refuses the command: nothing is recorded and the owner is told why', async () => {
      const got: CommandRejection[] = [];
      const sub = nc.subscribe(subjects.rejections('alice'), { callback: (_e, m) => void got.push(m.json<CommandRejection>()) });
      await nc.flush();
      const jobId = randomUUID();
      await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' } }, { msgId: jobId, headers: { 'Jobline-Request-Id': 'has spaces in it' } });
      const rejection = await eventually(async () => got.find((r) => r.jobId === jobId), 10_000, 'the rejection');
      sub.unsubscribe();
      expect(rejection).toMatchObject({ code: 'invalid_argument', field: 'Jobline-Request-Id' });
      expect(await history(jobId)).toEqual([]);
    });

    it("another owner's cancel is refused by the decider as if the job did not exist, and records nothing", async () => {
      const jobId = randomUUID();
      await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'sleep 20' } }, { msgId: jobId });
      await recorded(jobId, 'JobStarted');
      const got: CommandRejection[] = [];
      const sub = nc.subscribe(subjects.rejections('bob'), { callback: (_e, m) => void got.push(m.json<CommandRejection>()) });
      await nc.flush();
      await publisher.publish(subjects.cancel('bob'), { jobId });
      expect(await eventually(async () => got.find((r) => r.jobId === jobId), 10_000, 'the rejection')).toMatchObject({ code: 'not_found' });
      sub.unsubscribe();
      expect((await history(jobId)).map((e) => e.type)).not.toContain('JobCancelRequested');
      await publisher.publish(subjects.cancel('alice'), { jobId });
      const events = await finished(jobId);
      expect(byType(events, 'JobCancelRequested')).toMatchObject({ data: { requestedBy: 'alice' }, metadata: { actor: 'alice', correlationId: jobId } });
    });
  });

  describe('over REST', () => {
    it('X-Request-Id is echoed and is the cause of the submission; without one the api makes one up, echoes it and uses it', async () => {
      const res = await http().post('/v1/jobs').set(auth(ALICE)).set('X-Request-Id', 'rest-req-1').set('Content-Type', 'application/json').send('{"command":["true"]}');
      expect(res.status).toBe(201);
      expect(res.headers['x-request-id']).toBe('rest-req-1');
      const job = res.body as JobView;
      expectLifeOf(await finished(job.id), { cause: 'rest-req-1', actor: 'alice', correlation: job.id });

      const bare = await http().post('/v1/jobs').set(auth(ALICE)).set('Content-Type', 'application/json').send('{"command":["true"]}');
      expect(bare.status).toBe(201);
      expect(bare.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(byType(await recorded(bare.body.id, 'JobQueued'), 'JobSubmitted').metadata.causationId).toBe(bare.headers['x-request-id']);
    });

    it('a malformed X-Request-Id is a 400 problem and sends nothing', async () => {
      const before = (await jsm.streams.info(STREAMS.commands)).state.last_seq;
      for (const bad of ['a b', 'x'.repeat(129), 'semi;colon']) {
        const res = await http().post('/v1/jobs').set(auth(ALICE)).set('X-Request-Id', bad).set('Content-Type', 'application/json').send('{"command":["true"]}');
        expect(res.status).toBe(400);
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(res.body).toMatchObject({ code: 'invalid_argument', errors: [{ path: 'X-Request-Id' }] });
      }
      expect((await jsm.streams.info(STREAMS.commands)).state.last_seq).toBe(before);
    });

    it("an admin's cancel goes on jobline.adm.<admin>.cancel and records the admin as the actor, the request as the cause", async () => {
      const job = (await http().post('/v1/jobs').set(auth(ALICE)).set('Content-Type', 'application/json').send('{"command":"sleep 20"}').expect(201)).body as JobView;
      await recorded(job.id, 'JobStarted');
      // Not the admin's job: bob may not, as for a job that does not exist.
      await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(BOB)).expect(404);
      const res = await http().post(`/v1/jobs/${job.id}/cancel`).set(auth(ADMIN)).set('X-Request-Id', 'ops-cancel-1').expect(202);
      expect(res.headers['x-request-id']).toBe('ops-cancel-1');
      const events = await finished(job.id);
      expect(adminCommands).toContain('jobline.adm.ops.cancel');
      const requested = byType(events, 'JobCancelRequested');
      expect(requested.data).toEqual({ requestedBy: 'ops', requestedAt: expect.any(String) });
      expect(requested.metadata).toMatchObject({ actor: 'ops', causationId: 'ops-cancel-1', correlationId: job.id });
      const cancelled = byType(events, 'JobCancelled');
      expect(cancelled.metadata).toMatchObject({ actor: 'executor:solo', causationId: reportId(job.id, 'finished'), correlationId: job.id });
      for (const e of events) expect(e.metadata.correlationId).toBe(job.id);

      // And the admin's purge: JobPurged by the admin, caused by its request.
      await http().delete(`/v1/jobs/${job.id}`).set(auth(ADMIN)).set('X-Request-Id', 'ops-purge-1').expect(204);
      expect(adminCommands).toContain('jobline.adm.ops.purge');
      const purged = byType(await history(job.id), 'JobPurged');
      expect(purged).toMatchObject({ data: { by: 'ops' }, metadata: { actor: 'ops', causationId: 'ops-purge-1', correlationId: job.id } });
      expect((await jsm.consumers.info(STREAMS.commands, ADMIN_COMMANDS_DURABLE)).num_pending).toBe(0);
    });

    it("a re-run names its request as the cause and starts a correlation of its own; an admin's re-run names the admin", async () => {
      const original = (await http().post('/v1/jobs').set(auth(ALICE)).set('Content-Type', 'application/json').send('{"command":["true"]}').expect(201)).body as JobView;
      await finished(original.id);
      const again = (await http().post(`/v1/jobs/${original.id}/rerun`).set(auth(ADMIN)).set('X-Request-Id', 'ops-rerun-1').expect(201)).body as JobView;
      expect(again.owner).toBe('alice');
      expect(adminCommands).toContain('jobline.adm.ops.rerun');
      const submitted = byType(await recorded(again.id, 'JobQueued'), 'JobSubmitted');
      expect(submitted).toMatchObject({ data: { owner: 'alice', rerunOf: original.id }, metadata: { actor: 'ops', causationId: 'ops-rerun-1', correlationId: again.id } });
    });
  });

  describe('over gRPC', () => {
    let client: grpc.Client & Record<string, (...a: unknown[]) => unknown>;
    beforeAll(() => {
      const dev = certsDir(dataDir);
      const mine = certPaths(dev, 'alice');
      const Client = jobServiceClient();
      client = new Client(`127.0.0.1:${api.grpcPort}`, grpc.credentials.createSsl(readFileSync(join(dev, 'ca.crt')), readFileSync(mine.key), readFileSync(mine.cert)), {
        'grpc.ssl_target_name_override': 'localhost',
      }) as unknown as typeof client;
    });
    afterAll(() => client?.close());

    const start = (requestId: string | null) =>
      new Promise<{ err: grpc.ServiceError | null; jobId?: string; echoed?: string }>((resolve) => {
        const md = new grpc.Metadata();
        if (requestId !== null) md.set('x-request-id', requestId);
        let echoed: string | undefined;
        const call = client.Start({ spec: { argv: { args: ['true'] } } }, md, (err: grpc.ServiceError | null, res?: { job?: { id?: string } }) =>
          resolve({ err, jobId: res?.job?.id, echoed }),
        ) as grpc.ClientUnaryCall;
        call.on('metadata', (m: grpc.Metadata) => (echoed = String(m.get('x-request-id')[0] ?? '')));
      });

    it('x-request-id metadata is the cause of the submission and is echoed; a malformed one is INVALID_ARGUMENT and sends nothing', async () => {
      const ok = await start('grpc-req-7');
      expect(ok.err).toBeNull();
      expect(ok.echoed).toBe('grpc-req-7');
      expectLifeOf(await finished(ok.jobId!), { cause: 'grpc-req-7', actor: 'alice', correlation: ok.jobId! });

      const before = (await jsm.streams.info(STREAMS.commands)).state.last_seq;
      const bad = await start('no spaces allowed');
      expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((await jsm.streams.info(STREAMS.commands)).state.last_seq).toBe(before);
    });
  });
});
