import * as grpc from '@grpc/grpc-js';
import { jetstream } from '@nats-io/jetstream';
import { createInbox } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashToken } from '../../apps/api/src/api-tokens';
import { certPaths, certsDir, certsInit, certsIssue } from '../../apps/cli/src/certs/dev-pki';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { JobsRemote, RemoteCallError } from '../../apps/cli/src/remote/jobs-remote';
import { startOrchestrator } from '../../apps/orchestrator/src/start-orchestrator';
import { CommandReplySchema, jobStreamName, subjects, type CommandRejection, type CommandReply } from '../../libs/contracts/src';
import { ConfigError, loadConfig } from '../../libs/config/src';
import { JetStreamPublisher } from '../../libs/messaging/src/publisher';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger } from './support';

const TOKENS = { alice: randomUUID(), bob: randomUUID(), carol: randomUUID(), dave: randomUUID(), erin: randomUUID() };
type Owner = keyof typeof TOKENS;

/**
 * Quotas and fair share as users meet them (README "Quotas and fair share"): the `jobline dev`
 * composition with a real nats-server, SQLite and one local executor of 2 slots running real
 * processes; five owners with their own tokens; JOBLINE_QUOTAS_FILE gives carol weight 2,
 * dave maxRunning 1 and erin maxQueued 2 (and maxRunning 1, so her jobs wait).
 */
describe('quotas and weighted fair share (jobline dev composition, real executor, several owners)', () => {
  let dir: TempDir;
  let nats: RunningNatsServer;
  let stack: DevStack;
  let dataDir: string;
  const rest = {} as Record<Owner, RestClient>;
  let gate = '';

  /** A job that runs until the test opens `gate` (creates the file). */
  const blocker = () => ({ command: `while [ ! -e '${gate}' ]; do sleep 0.05; done` });
  const open = () => writeFileSync(gate, '');

  beforeAll(async () => {
    dir = tempDir('jobline-quotas-');
    dataDir = join(dir.path, 'data');
    nats = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    await certsInit(dataDir);
    const quotasFile = join(dir.path, 'quotas.json');
    writeFileSync(
      quotasFile,
      JSON.stringify({
        default: { maxQueued: 100, weight: 1 },
        owners: { carol: { weight: 2 }, dave: { maxRunning: 1 }, erin: { maxQueued: 2, maxRunning: 1 } },
        retryAfterSeconds: 3,
      }),
    );
    stack = await startDevStack({
      dataDir,
      natsUrl: nats.url,
      apiPort: 0,
      executorCapacity: 2,
      packager: false,
      logger: quietLogger,
      extraTokens: Object.entries(TOKENS).map(([owner, token]) => ({ sha256: hashToken(token), owner })),
      env: { JOBLINE_QUOTAS_FILE: quotasFile, JOBLINE_SANDBOX: 'none', JOBLINE_GRPC_PORT: '0' },
    });
    for (const [owner, token] of Object.entries(TOKENS)) rest[owner as Owner] = new RestClient(stack.apiUrl!, token);
  }, 120_000);

  afterAll(async () => {
    if (gate) open();
    await stack?.stop();
    await nats?.stop();
    dir?.remove();
  });

  beforeEach(() => {
    gate = join(dir.path, `gate-${randomUUID()}`);
  });

  /** Owners of the jobs in the order the scheduler dispatched them (JobDispatched by store position). */
  async function dispatchOrder(ids: Map<string, Owner>): Promise<Owner[]> {
    const all = await stack.eventStore.readAll();
    return all.filter((r) => r.type === 'JobDispatched' && ids.has(r.streamId.replace(/^job-/, ''))).map((r) => ids.get(r.streamId.replace(/^job-/, ''))!);
  }

  it('with weights 1/1/2 on 2 slots, waiting owners get dispatches about 1:1:2, nobody starves, every job runs', async () => {
    // Both slots held while everyone's jobs queue up, so the shares are the scheduler's alone.
    const held = await Promise.all([rest.alice.submit(blocker()), rest.bob.submit(blocker())]);
    await Promise.all(held.map((j) => eventually(async () => ((await restOf(j.owner as Owner).job(j.id)).status === 'running' ? true : undefined), 20_000, 'the blockers to run')));
    const ids = new Map<string, Owner>();
    const per = 12;
    for (let i = 0; i < per; i++) {
      for (const owner of ['alice', 'bob', 'carol'] as const) ids.set((await rest[owner].submit({ command: 'sleep 0.1' })).id, owner);
    }
    open();
    for (const id of ids.keys()) expect((await restOf(ids.get(id)!).finished(id, 60_000)).status).toBe('succeeded');
    const order = await dispatchOrder(ids);
    expect(order).toHaveLength(3 * per);
    // While all three wait (the first 20 dispatches: carol's 12 run out around the 24th), carol gets about half.
    const first = count(order.slice(0, 20));
    expect(first.carol).toBeGreaterThanOrEqual(8);
    expect(first.carol).toBeLessThanOrEqual(12);
    expect(first.alice).toBeGreaterThanOrEqual(3);
    expect(first.bob).toBeGreaterThanOrEqual(3);
    // Nobody starves: each owner has a dispatch in every window of 8 while it has work waiting.
    for (let i = 0; i + 8 <= 20; i++) expect(new Set(order.slice(i, i + 8)).size).toBe(3);
  }, 120_000);

  it('maxRunning holds: dave never has 2 running, and the slot he may not use goes to another owner', async () => {
    const ids = new Map<string, Owner>();
    for (let i = 0; i < 4; i++) ids.set((await rest.dave.submit({ command: 'sleep 0.3' })).id, 'dave');
    const bobs = await rest.bob.submit({ command: 'sleep 0.3' });
    ids.set(bobs.id, 'bob');
    for (const [id, owner] of ids) expect((await rest[owner].finished(id, 60_000)).status).toBe('succeeded');
    // Replay the history: dave's attempts dispatched and not yet finished, at every position.
    const ends = new Set(['JobCompleted', 'JobFailed', 'JobCancelled', 'JobTimedOut', 'JobLost']);
    let daves = 0;
    let most = 0;
    let bobWhileDave = false;
    for (const r of await stack.eventStore.readAll()) {
      const owner = ids.get(r.streamId.replace(/^job-/, ''));
      if (owner === 'dave' && r.type === 'JobDispatched') most = Math.max(most, ++daves);
      if (owner === 'dave' && ends.has(r.type)) daves--;
      if (owner === 'bob' && r.type === 'JobDispatched' && daves > 0) bobWhileDave = true;
    }
    expect(most).toBe(1);
    expect(bobWhileDave).toBe(true);
  }, 120_000);

  it('a submit over maxQueued is refused with 429 + Retry-After (REST), RESOURCE_EXHAUSTED (gRPC) and a rejection (NATS); nothing is stored; room again once jobs start', async () => {
    const running = await rest.erin.submit(blocker());
    await eventually(async () => ((await rest.erin.job(running.id)).status === 'running' ? true : undefined), 20_000, "erin's first job to run");
    // maxRunning 1: these two wait, filling her queued quota of 2.
    const waiting = [await rest.erin.submit({ command: 'true' }), await rest.erin.submit({ command: 'true' })];
    expect(waiting.map((j) => j.status)).toEqual(['queued', 'queued']);
    const before = await stack.eventStore.headPosition();

    // REST
    const res = await rest.erin.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'true' }) });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    const problem = (await res.json()) as Record<string, unknown>;
    expect(problem).toMatchObject({ status: 429, code: 'resource_exhausted', retryAfterSeconds: 3 });
    expect(problem.detail).toMatch(/owner erin has 2 job\(s\) waiting, its quota is 2/);
    // With an Idempotency-Key too (a new key: a new job, refused the same way).
    expect((await rest.erin.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'true' }), headers: { 'Idempotency-Key': 'erin-1' } })).status).toBe(429);

    // gRPC, as erin's client certificate
    const erinCert = await certsIssue(dataDir, 'erin');
    const remote = new JobsRemote({ address: `127.0.0.1:${stack.grpcPort}`, ca: certPaths(certsDir(dataDir), 'ca').cert, ...erinCert });
    try {
      const err = await remote.call('Start', { spec: { script: 'true' } }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RemoteCallError);
      expect((err as RemoteCallError).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect((err as RemoteCallError).details).toMatch(/its quota is 2/);
    } finally {
      remote.close();
    }

    // NATS: on jobline.rej.erin and the reply inbox
    const jobId = randomUUID();
    const got: unknown[] = [];
    const rej = stack.nc.subscribe(subjects.rejections('erin'), { callback: (_e, m) => void got.push(m.json()) });
    const inbox = createInbox();
    const replies: unknown[] = [];
    const sub = stack.nc.subscribe(inbox, { callback: (_e, m) => void replies.push(m.json()) });
    await stack.nc.flush();
    await new JetStreamPublisher(jetstream(stack.nc)).publish(subjects.submit('erin'), { jobId, spec: { command: 'true' } }, { msgId: jobId, headers: { 'Jobline-Reply-To': inbox } });
    const rejection = await eventually(() => got.find((m) => (m as CommandRejection).jobId === jobId) as CommandRejection | undefined, 20_000, 'the rejection');
    expect(rejection).toEqual({ subject: 'jobline.cmd.erin.submit', jobId, code: 'resource_exhausted', message: expect.stringMatching(/its quota is 2/), retryAfterSeconds: 3 });
    const reply = await eventually(() => replies[0] as CommandReply | undefined, 20_000, 'the reply');
    expect(CommandReplySchema.parse(reply)).toEqual({ ok: false, ...rejection });
    rej.unsubscribe();
    sub.unsubscribe();

    // Nothing stored for any of the refused submits: no job event at all since (erin's jobs wait, nobody else runs).
    expect(await stack.eventStore.readStream(jobStreamName(jobId))).toEqual([]);
    expect((await stack.eventStore.readAll({ after: before })).filter((r) => r.streamId.startsWith('job-'))).toEqual([]);
    const listed = (await (await rest.erin.request('/v1/jobs?limit=100')).json()) as { total: number };
    expect(listed.total).toBe(3);

    // Once her jobs start and end, she has room again.
    open();
    for (const j of [running, ...waiting]) expect((await rest.erin.finished(j.id, 30_000)).status).toBe('succeeded');
    const again = await rest.erin.submit({ command: 'true' });
    expect((await rest.erin.finished(again.id, 30_000)).status).toBe('succeeded');
  }, 120_000);

  it('an invalid JOBLINE_QUOTAS_FILE refuses the start, naming the file and the field', async () => {
    const bad = join(dir.path, 'bad-quotas.json');
    writeFileSync(bad, JSON.stringify({ owners: { ci: { maxRunning: 0 } } }));
    const config = loadConfig({ JOBLINE_QUOTAS_FILE: bad, JOBLINE_NATS_URL: nats.url, JOBLINE_DATA_DIR: join(dir.path, 'other'), JOBLINE_ORCHESTRATOR_HTTP_PORT: 'off' });
    const err = await startOrchestrator(config, { logger: silentLogger() }).then(
      async (h) => {
        await h.stop();
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toContain(`JOBLINE_QUOTAS_FILE: ${bad}: owners.ci.maxRunning: must be at least 1`);
    const missing = loadConfig({ JOBLINE_QUOTAS_FILE: join(dir.path, 'nope.json'), JOBLINE_NATS_URL: nats.url, JOBLINE_DATA_DIR: join(dir.path, 'other'), JOBLINE_ORCHESTRATOR_HTTP_PORT: 'off' });
    await expect(startOrchestrator(missing, { logger: silentLogger() })).rejects.toThrow(/JOBLINE_QUOTAS_FILE: .*nope\.json cannot be read/);
  });

  function restOf(owner: Owner): RestClient {
    return rest[owner];
  }
});

const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});

function silentLogger() {
  const noop = () => undefined;
  const l = { debug: noop, info: noop, warn: noop, error: noop, fatal: noop, trace: noop, child: () => l };
  return l as never;
}
