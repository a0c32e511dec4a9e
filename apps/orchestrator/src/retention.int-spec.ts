import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { STREAMS, decodeJobEvent, jobStreamName, subjects, type JobSpecInput, type StoredJobEvent } from '../../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../libs/event-store/src';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { BundleStore } from '../../../libs/messaging/src/bundle-store';
import { purgeLogs } from '../../../libs/messaging/src/logs';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { eventually, startTestBus, type TempDir, type TestBus } from '../../../libs/testing/src';
import { startNodeExecutor, type NodeExecutorHandle } from '../../executor/src/node/main';
import { Packager } from '../../packager/src/packager';
import { KeyedMutex } from './keyed-mutex';
import type { Orchestrator } from './orchestrator';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';
import { RETENTION_CLEANUP_CHECKPOINT, Retention } from './retention';

const quiet = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/**
 * Issue 15, item 2: the retention policy against a real nats-server, SQLite store, packager and
 * Node executor; the policy's clock is moved forward instead of waiting for jobs to age.
 */
describe('retention policy', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let dir: TempDir;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let orchestrator: Orchestrator;
  let executor: NodeExecutorHandle;
  let packager: Packager;
  let publisher: JetStreamPublisher;
  let bundles: BundleStore;
  let artifacts: ArtifactStore;
  let files: Server;
  let filesUrl: string;
  const slowResponses: (() => void)[] = [];
  let offsetMs = 0;
  const clock = () => new Date(Date.now() + offsetMs);

  beforeAll(async () => {
    files = createServer((req, res) => {
      if (req.url === '/in.txt') res.end('shared input\n');
      // Held until the test lets it go: a job stays in packaging meanwhile.
      else if (req.url === '/slow.txt') slowResponses.push(() => res.end('slow input\n'));
      else res.writeHead(404).end();
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    ({ dir, nc, jsm, publisher, store, checkpoints } = bus = await startTestBus('retention-test'));
    ({ orchestrator } = orch = await startTestOrchestrator(bus, { packager: true,
      // Sweeps are called by the test; the timer's interval is far away.
      retention: { maxAgeMs: HOUR, ownerMaxAgeMs: { alice: MINUTE, bob: null }, intervalMs: 86_400_000, clock },
    }));
    mkdirSync(join(dir.path, 'pkg'));
    packager = await Packager.start(nc, quiet, { data: { allowPrivateAddresses: true }, workDir: join(dir.path, 'pkg') });
    // The gated job waits on a file in the test's folder, which a sandbox hides from it: explicitly unsandboxed.
    executor = await startNodeExecutor({ nc, executorId: 'keeper', capacity: 2, workRoot: join(dir.path, 'work'), graceMs: 500, heartbeatMs: 200, logger: quietExecutor, sandbox: 'none' });
    bundles = await BundleStore.open(nc);
    artifacts = await ArtifactStore.open(nc);
  });

  afterAll(async () => {
    await executor?.stop();
    await packager?.stop();
    await orch?.stop();
    await bus?.stop();
    await new Promise((r) => files?.close(r));
  });

  async function submit(owner: string, spec: JobSpecInput): Promise<string> {
    const jobId = randomUUID();
    await publisher.publish(subjects.submit(owner), { jobId, spec }, { msgId: jobId });
    return jobId;
  }
  const history = async (jobId: string): Promise<StoredJobEvent[]> => (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  const types = async (jobId: string) => (await history(jobId)).map((e) => e.type);
  const finished = (jobId: string) => eventually(async () => ((await types(jobId)).includes('JobCompleted') ? true : undefined), 30_000, `job ${jobId} to finish`).catch(async (err) => { throw new Error(`${(err as Error).message}: ${JSON.stringify(await history(jobId))}`); });
  const logChunks = async (jobId: string) => (await jsm.streams.info(STREAMS.logs, { subjects_filter: subjects.logs(jobId) })).state.subjects?.[subjects.logs(jobId)] ?? 0;
  /** Waits until the executor's log chunks of a finished job are all on the stream (the job may end before they are acked). */
  const withLogs = (jobId: string) => eventually(async () => ((await logChunks(jobId)) > 0 ? true : undefined), 10_000, `log of ${jobId}`);

  const dataSpec = (): JobSpecInput => ({ command: 'cat in.txt', data: [{ url: `${filesUrl}/in.txt`, path: 'in.txt' }] });
  let alice1: string, alice2: string, aliceRunning: string, bob1: string, dave1: string;
  let shared: string;
  let orphan: string;
  const go = () => join(dir.path, 'go');

  it('keeps every job while none is old enough, but removes a bundle no job references', async () => {
    alice1 = await submit('alice', { command: 'echo alice-log; mkdir -p out; echo kept > out/a.txt', outputs: ['out/*.txt'] });
    alice2 = await submit('alice', dataSpec());
    bob1 = await submit('bob', dataSpec());
    dave1 = await submit('dave', { command: 'echo dave-log' });
    aliceRunning = await submit('alice', { command: `echo waiting; while [ ! -f ${go()} ]; do sleep 0.05; done` });
    for (const j of [alice1, alice2, bob1, dave1]) await finished(j);
    for (const j of [alice1, alice2, bob1, dave1]) await withLogs(j);
    await eventually(async () => ((await types(aliceRunning)).includes('JobStarted') ? true : undefined), 20_000, 'the gated job to run');
    expect(await artifacts.get(alice1, 1)).not.toBeNull();
    const packaged = (await history(alice2)).find((e) => e.type === 'JobPackaged');
    shared = (packaged!.data as { bundleDigest: string }).bundleDigest;
    expect((await history(bob1)).find((e) => e.type === 'JobPackaged')?.data).toMatchObject({ bundleDigest: shared });
    orphan = (await bundles.put(new TextEncoder().encode(`a bundle no job names ${randomUUID()}`))).digest;

    offsetMs = 0;
    const r = await orchestrator.retention!.sweep();
    expect(r.purged).toEqual([]);
    expect(r.bundlesRemoved).toEqual([orphan]);
    expect(await bundles.has(orphan)).toBe(false);
    expect(await bundles.has(shared)).toBe(true);
    for (const j of [alice1, alice2, bob1, dave1]) expect(await types(j)).not.toContain('JobPurged');
  });

  it("purges an owner's finished jobs past its age: JobPurged first with the policy as actor, then logs and artifacts gone; history kept; others untouched", async () => {
    const before = await history(alice1);
    offsetMs = 2 * MINUTE;
    const r = await orchestrator.retention!.sweep();
    expect(r.purged.sort((a, b) => a.jobId.localeCompare(b.jobId))).toEqual(
      [alice1, alice2].sort().map((jobId) => ({ jobId, actor: 'retention:owner:alice' })),
    );
    // History: every earlier event kept, then JobPurged by the policy.
    const after = await history(alice1);
    expect(after.slice(0, before.length).map((e) => e.id)).toEqual(before.map((e) => e.id));
    expect(after.map((e) => e.type)).toEqual([...before.map((e) => e.type), 'JobPurged']);
    expect(after.at(-1)).toMatchObject({ type: 'JobPurged', metadata: { actor: 'retention:owner:alice' }, data: { by: 'retention:owner:alice' } });
    expect(await logChunks(alice1)).toBe(0);
    expect(await logChunks(alice2)).toBe(0);
    expect(await artifacts.get(alice1, 1)).toBeNull();
    // The running job, bob's (off) and dave's (global hour) are untouched; the shared bundle is still bob's.
    expect(await types(aliceRunning)).not.toContain('JobPurged');
    expect(await logChunks(aliceRunning)).toBeGreaterThan(0);
    for (const j of [bob1, dave1]) {
      expect(await types(j)).not.toContain('JobPurged');
      expect(await logChunks(j)).toBeGreaterThan(0);
    }
    expect(r.bundlesRemoved).toEqual([]);
    expect(await bundles.has(shared)).toBe(true);
    // Nothing more to do: a second sweep purges nothing again.
    expect((await orchestrator.retention!.sweep()).purged).toEqual([]);
  });

  it('the global age applies to owners without their own; owner=off keeps them; a purge by hand frees the bundle', async () => {
    offsetMs = 2 * HOUR;
    const r = await orchestrator.retention!.sweep();
    expect(r.purged).toEqual([{ jobId: dave1, actor: 'retention:global' }]);
    expect(await logChunks(dave1)).toBe(0);
    expect(await types(bob1)).not.toContain('JobPurged');
    expect(await bundles.has(shared)).toBe(true);

    // Bob purges his own job: nothing references the shared bundle any more.
    await orchestrator.purge('bob', { jobId: bob1 });
    const r2 = await orchestrator.retention!.sweep();
    expect(r2.purged).toEqual([]);
    expect(r2.bundlesRemoved).toEqual([shared]);
    expect(await bundles.has(shared)).toBe(false);
  });

  it('a removed bundle is stored again when a later job packs the same bytes, and the job runs', async () => {
    const again = await submit('bob', dataSpec());
    await finished(again);
    expect((await history(again)).find((e) => e.type === 'JobPackaged')?.data).toMatchObject({ bundleDigest: shared });
    expect(await bundles.has(shared)).toBe(true);
    expect((await history(again)).find((e) => e.type === 'JobCompleted')?.data).toMatchObject({ exitCode: 0 });
  });

  it('removes no bundle while a job is being packaged, and a bundle removed under a packaging job fails it with a reason', async () => {
    const unreferenced = (await bundles.put(new TextEncoder().encode(`another orphan ${randomUUID()}`))).digest;
    const packaging = await submit('carol', { command: 'cat slow.txt', data: [{ url: `${filesUrl}/slow.txt`, path: 'slow.txt' }] });
    await eventually(() => (slowResponses.length > 0 ? true : undefined), 10_000, 'the packager to ask for the slow file');
    // Its bundle could be any stored one: nothing is removed meanwhile.
    expect((await orchestrator.retention!.sweep()).bundlesRemoved).toEqual([]);
    expect(await bundles.has(unreferenced)).toBe(true);

    // A result naming a bundle that is gone (removed between the packager's store and this record) is not recorded as packaged.
    await bundles.delete(unreferenced);
    await orchestrator.packaged({ kind: 'packaged', jobId: packaging, bundleDigest: unreferenced, size: 10 });
    const h = await history(packaging);
    expect(h.map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackagingFailed']);
    expect(h[1].data).toMatchObject({ reason: expect.stringMatching(/no longer in the bundle store .*submit the job again/) });
    slowResponses.splice(0).forEach((release) => release());
  });

  it('an unfinished job is purged only once it has finished and aged', async () => {
    offsetMs = 2 * HOUR;
    // Still running two hours on: not purged (carol's failed packaging, finished, is).
    expect((await orchestrator.retention!.sweep()).purged.map((p) => p.jobId)).not.toContain(aliceRunning);
    expect(await types(aliceRunning)).not.toContain('JobPurged');
    writeFileSync(go(), '');
    await finished(aliceRunning);
    offsetMs = 0;
    expect((await orchestrator.retention!.sweep()).purged).toEqual([]);
    offsetMs = 2 * MINUTE;
    expect((await orchestrator.retention!.sweep()).purged).toEqual([{ jobId: aliceRunning, actor: 'retention:owner:alice' }]);
    expect(await logChunks(aliceRunning)).toBe(0);
  });

  it('sweeps by itself every interval', async () => {
    const frank = await submit('frank', { command: 'echo frank-log' });
    await finished(frank);
    await withLogs(frank);
    const timed = new Retention({
      eventStore: store,
      checkpoints,
      handler: orchestrator.handler,
      logger: quiet,
      policy: { maxAgeMs: MINUTE, ownerMaxAgeMs: { alice: null, bob: null, carol: null, dave: null, eve: null }, intervalMs: 1000 },
      deleteJobData: async (jobId, attempts) => {
        await purgeLogs(jsm, jobId);
        await artifacts.deleteJob(jobId, attempts);
      },
      bundles: { list: async () => [], delete: async () => undefined },
      bundleGate: new KeyedMutex(),
      // Young at its first sweep; two minutes old from the next one on.
      clock: (() => {
        const started = Date.now();
        return () => new Date(Date.now() > started + 500 ? Date.now() + 2 * MINUTE : Date.now());
      })(),
    });
    await timed.start();
    try {
      const purged = await eventually(async () => ((await types(frank)).includes('JobPurged') ? history(frank) : undefined), 10_000, 'a timed sweep');
      expect(purged.at(-1)).toMatchObject({ metadata: { actor: 'retention:global' } });
      expect(await logChunks(frank)).toBe(0);
    } finally {
      await timed.stop();
    }
  });

  it('a sweep cut short after recording JobPurged is finished by the next policy run (the first one after a restart)', async () => {
    const eve = await submit('eve', { command: 'echo eve-log' });
    await finished(eve);
    await withLogs(eve);
    // What a sweep that died between the two steps leaves: JobPurged by the policy, the log still there.
    await orchestrator.handler.execute(eve, { type: 'PurgeJob', data: { actor: { id: 'retention:global', admin: true }, now: new Date().toISOString() } }, { actor: 'retention:global', causationId: 'last-event' });
    expect(await logChunks(eve)).toBeGreaterThan(0);
    expect(await checkpoints.load(RETENTION_CLEANUP_CHECKPOINT)).toBeLessThan((await history(eve)).at(-1)!.position);

    // A fresh policy (as after a restart): its first sweep, once caught up, finishes the deletion.
    const restarted = new Retention({
      eventStore: store,
      checkpoints,
      handler: orchestrator.handler,
      logger: quiet,
      policy: { maxAgeMs: HOUR, intervalMs: 86_400_000 },
      deleteJobData: async (jobId, attempts) => {
        await purgeLogs(jsm, jobId);
        await artifacts.deleteJob(jobId, attempts);
      },
      bundles: { list: () => bundles.list(), delete: (d) => bundles.delete(d) },
      bundleGate: new KeyedMutex(),
    });
    await restarted.start();
    try {
      await eventually(async () => ((await logChunks(eve)) === 0 ? true : undefined), 10_000, 'the interrupted deletion to be finished');
      // Its JobPurged stays the only one, and the checkpoint moves past it once done.
      expect((await types(eve)).filter((t) => t === 'JobPurged')).toHaveLength(1);
      await eventually(async () => ((await checkpoints.load(RETENTION_CLEANUP_CHECKPOINT)) >= (await history(eve)).at(-1)!.position ? true : undefined), 10_000, 'the cleanup checkpoint');
    } finally {
      await restarted.stop();
    }
  });
});
