import type { NatsConnection } from '@nats-io/nats-core';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import request from 'supertest';
import { jobStreamName } from '../../../libs/contracts/src';
import { SqliteEventStore } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { hashToken } from './api-tokens';
import { createApiApp, type ApiApp } from './api.module';
import { JobsProjection } from './projections/jobs.projection';
import { recordJob } from './testing/job-history';

const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789';
const ADMIN = 'admin-token-0123456789';
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

describe('REST verify (real NATS, SQLite store, jobs projection)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let store: SqliteEventStore;
  let projection: JobsProjection;
  let api: ApiApp;
  let alice: string;
  let bob: string;

  beforeAll(async () => {
    dir = tempDir('jobline-provenance-api-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'provenance-test' });
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    alice = await recordJob(store, { owner: 'alice', until: { exitCode: 0 } });
    bob = await recordJob(store, { owner: 'bob', until: { exitCode: 1 } });
    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
    api = await createApiApp({
      nc,
      eventStore: store,
      projection,
      port: 0,
      logger: false,
      tokens: [
        { sha256: hashToken(ALICE), owner: 'alice' },
        { sha256: hashToken(BOB), owner: 'bob' },
        { sha256: hashToken(ADMIN), owner: 'ops', admin: true },
      ],
    });
    await eventually(async () => (await request(api.url).get(`/v1/jobs/${bob}`).set(auth(BOB))).status === 200, 30_000, 'the projection to show the jobs');
  });

  afterAll(async () => {
    await api?.close();
    await projection?.close();
    await nc?.drain();
    await store?.close();
    await server?.stop();
    dir?.remove();
  });

  it('a job verifies intact for its owner, and is 404 to another owner exactly as an unknown job', async () => {
    const own = await request(api.url).get(`/v1/jobs/${alice}/verify`).set(auth(ALICE));
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({ intact: true, unchained: 0, events: (await store.readStream(jobStreamName(alice))).length });
    const other = await request(api.url).get(`/v1/jobs/${alice}/verify`).set(auth(BOB));
    expect(other.status).toBe(404);
    expect(other.body.detail).toBe(`job ${alice} not found`);
  });

  it('the whole store is for admins (403 otherwise)', async () => {
    expect((await request(api.url).get('/v1/verify').set(auth(ALICE))).status).toBe(403);
    const all = await request(api.url).get('/v1/verify').set(auth(ADMIN));
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ intact: true, headPosition: await store.headPosition() });
  });

  it("an edited event of bob's job: his verify and the store's name its position; alice's job stays intact", async () => {
    const target = (await store.readStream(jobStreamName(bob)))[2];
    const db = new Database(join(dir.path, 'events.db'));
    db.prepare("UPDATE events SET metadata = json_set(metadata, '$.actor', 'someone-else') WHERE position = ?").run(target.position);
    db.close();

    const job = await request(api.url).get(`/v1/jobs/${bob}/verify`).set(auth(BOB));
    expect(job.status).toBe(200);
    expect(job.body).toMatchObject({ intact: false, problem: { kind: 'edited', position: target.position, revision: 2 } });
    expect((await request(api.url).get('/v1/verify').set(auth(ADMIN))).body).toMatchObject({ intact: false, problem: { kind: 'edited', position: target.position } });
    expect((await request(api.url).get(`/v1/jobs/${alice}/verify`).set(auth(ALICE))).body).toMatchObject({ intact: true });
  });
});
