import type { NatsConnection } from '@nats-io/nats-core';
import Database from 'better-sqlite3';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { jobStreamName } from '../../../libs/contracts/src';
import { SqliteEventStore, signingKeyFrom, verifyEnvelope, type DsseEnvelope } from '../../../libs/event-store/src';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { verifyAttestationFile } from '../../cli/src/verify';
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
  let queued: string;
  const key = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
  const artifactBytes = Buffer.from('pretend this is a tar.gz of the outputs');

  beforeAll(async () => {
    dir = tempDir('jobline-provenance-api-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'provenance-test' });
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    alice = await recordJob(store, { owner: 'alice', until: { exitCode: 0 } });
    bob = await recordJob(store, { owner: 'bob', until: { exitCode: 1 } });
    queued = await recordJob(store, { owner: 'alice' });
    await (await ArtifactStore.open(nc)).put(alice, 1, artifactBytes);
    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
    api = await createApiApp({
      nc,
      eventStore: store,
      projection,
      port: 0,
      logger: false,
      signingKey: key,
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

  it('a finished job has a signed attestation: DSSE over an in-toto statement naming its history head and artifacts', async () => {
    const res = await request(api.url).get(`/v1/jobs/${alice}/attestation`).set(auth(ALICE));
    expect(res.status).toBe(200);
    const envelope = res.body as DsseEnvelope;
    expect(envelope).toMatchObject({ payloadType: 'application/vnd.in-toto+json', signatures: [{ keyid: key.keyId }] });
    const checked = verifyEnvelope(envelope, [key.publicKey]);
    if (!checked.ok) throw new Error(checked.reason);
    const head = (await store.readStream(jobStreamName(alice))).at(-1)!;
    expect(checked.statement.subject).toEqual([
      { name: `jobline:job/${alice}/history`, digest: { sha256: head.chain!.streamHash } },
      { name: `jobline:job/${alice}/artifacts/1`, digest: { sha256: createHash('sha256').update(artifactBytes).digest('hex') } },
    ]);
    expect(checked.statement.predicate).toMatchObject({
      job: { id: alice, owner: 'alice', status: 'succeeded', spec: { command: ['true'] } },
      exit: { status: 'succeeded', exitCode: 0 },
      attempts: [{ attempt: 1, outcome: 'completed', exitCode: 0 }],
      history: { headRevision: head.revision, headPosition: head.position, chainHash: head.chain!.chainHash },
    });

    // Offline, as `jobline verify --attestation` does it: the envelope as downloaded verifies ...
    const file = join(dir.path, 'attestation.json');
    const pem = join(dir.path, 'public.pem');
    writeFileSync(pem, key.publicKeyPem);
    writeFileSync(file, JSON.stringify(envelope));
    expect(verifyAttestationFile(file, [pem])).toMatchObject({ ok: true, keyid: key.keyId });
    // The artifacts as downloaded are an attested subject; a changed artifact is not.
    const artifactFile = join(dir.path, 'artifacts.tar.gz');
    writeFileSync(artifactFile, artifactBytes);
    expect(verifyAttestationFile(file, [pem], [artifactFile])).toMatchObject({ ok: true });
    writeFileSync(artifactFile, Buffer.concat([artifactBytes, Buffer.from('x')]));
    expect(verifyAttestationFile(file, [pem], [artifactFile])).toMatchObject({ ok: false, reason: expect.stringContaining('none of the attested subjects') });
    // ... and one byte changed anywhere in the signed payload does not.
    const payload = Buffer.from(envelope.payload, 'base64');
    for (const at of [0, Math.floor(payload.length / 2), payload.length - 1]) {
      const tampered = Buffer.from(payload);
      tampered[at] ^= 0x01;
      writeFileSync(file, JSON.stringify({ ...envelope, payload: tampered.toString('base64') }));
      expect(verifyAttestationFile(file, [pem])).toMatchObject({ ok: false });
    }
    // A forged signature (another key, same keyid) fails too.
    const other = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
    const forged = { ...envelope, signatures: [{ keyid: key.keyId, sig: (await import('node:crypto')).sign(null, payload, other.privateKey).toString('base64') }] };
    expect(verifyEnvelope(forged, [key.publicKey])).toMatchObject({ ok: false });
    // And the right envelope checked against another key is refused.
    expect(verifyEnvelope(envelope, [other.publicKey])).toMatchObject({ ok: false });
  });

  it('an attestation is 404 to another owner, 409 while the job has not finished', async () => {
    const other = await request(api.url).get(`/v1/jobs/${alice}/attestation`).set(auth(BOB));
    expect(other.status).toBe(404);
    expect(other.body.detail).toBe(`job ${alice} not found`);
    await eventually(async () => (await request(api.url).get(`/v1/jobs/${queued}`).set(auth(ALICE))).status === 200, 30_000, 'the queued job in the projection');
    const unfinished = await request(api.url).get(`/v1/jobs/${queued}/attestation`).set(auth(ALICE));
    expect(unfinished.status).toBe(409);
    expect(unfinished.body.detail).toContain('has not finished (queued)');
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
