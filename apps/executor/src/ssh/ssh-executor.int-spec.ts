import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJobEvent, jobStreamName, subjects, type JobEvent, type JobSpecInput } from '../../../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../../libs/event-store/src';
import { connectNats } from '../../../../libs/messaging/src/connection';
import { readLogChunks } from '../../../../libs/messaging/src/logs';
import { JetStreamPublisher } from '../../../../libs/messaging/src/publisher';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../../libs/testing/src';
import { ExecutorsRegistry } from '../../../api/src/executors.registry';
import { Packager } from '../../../packager/src/packager';
import { threeCommitRepo } from '../../../packager/src/testing/git-repo';
import { createOrchestratorApp } from '../../../orchestrator/src/orchestrator.module';
import type { Orchestrator } from '../../../orchestrator/src/orchestrator';
import { startSshExecutor, type SshExecutorHandle } from './ssh-executor';
import { parseSshInventory } from './ssh-inventory';
import { sshdUnavailable, startTestSshd, type TestSshd } from './testing/sshd';

const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };
const quietExecutor = { info: () => undefined, warn: () => undefined, error: () => undefined };
const unavailable = sshdUnavailable();
const title = unavailable
  ? `SSH executors through nats-server and the orchestrator (skipped: ${unavailable})`
  : 'SSH executors through nats-server and the orchestrator, against a real sshd';
const pgrep = (pattern: string) => spawnSync('pgrep', ['-f', `^${pattern}`], { encoding: 'utf8' }).stdout.trim();
const LEASE_MS = 1500;

(unavailable ? describe.skip : describe)(title, () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let store: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let app: INestMicroservice;
  let orchestrator: Orchestrator;
  let sshd: TestSshd;
  let ssh: SshExecutorHandle;
  let publisher: JetStreamPublisher;
  let packager: Packager;
  let registry: ExecutorsRegistry;

  beforeAll(async () => {
    dir = tempDir();
    sshd = await startTestSshd(dir.path);
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'ssh-executor-test' });
    publisher = new JetStreamPublisher(jetstream(nc));
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
    ({ app, orchestrator } = await createOrchestratorApp({ eventStore: store, checkpoints, nc, logger: quiet, cancelConfirmMs: 5000, leaseMs: LEASE_MS, packager: true }));
    // Tests serve git over file://, which the packager refuses by default.
    packager = await Packager.start(nc, { log: () => undefined, warn: () => undefined }, { git: { allowFileUrls: true } });
    const host = { address: '127.0.0.1', port: sshd.port, user: sshd.user, privateKeyFile: sshd.userKeyFile, remoteRoot: join(dir.path, 'remote') };
    const inventory = parseSshInventory({
      hosts: [
        { ...host, name: 'good', hostKey: sshd.hostKey },
        { ...host, name: 'forged', hostKey: `SHA256:${'B'.repeat(43)}` },
      ],
      connectTimeoutMs: 5000,
      keepaliveIntervalMs: 500,
    });
    // What GET /v1/executors lists; heartbeats come every 200 ms here.
    registry = new ExecutorsRegistry(nc, { aliveMs: 1000 });
    registry.start();
    ssh = await startSshExecutor({ nc, inventory, workRoot: join(dir.path, 'work'), graceMs: 500, heartbeatMs: 200, logger: quietExecutor, runtime: 'node test' });
  });

  afterAll(async () => {
    registry?.stop();
    await ssh?.stop();
    await packager?.stop();
    await app?.close();
    await orchestrator?.stop();
    await nc?.drain();
    await store?.close();
    await checkpoints?.close();
    await server?.stop();
    await sshd?.stop();
    dir?.remove();
  });

  async function submit(spec: JobSpecInput): Promise<string> {
    const jobId = randomUUID();
    await publisher.publish(subjects.submit('alice'), { jobId, spec }, { msgId: jobId });
    return jobId;
  }
  async function history(jobId: string): Promise<JobEvent[]> {
    return (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  }
  const TERMINAL = ['JobCompleted', 'JobFailed', 'JobPackagingFailed', 'JobCancelled', 'JobTimedOut', 'JobLost'];
  async function finished(jobId: string, timeoutMs = 20_000): Promise<JobEvent[]> {
    return eventually(async () => {
      const h = await history(jobId);
      return h.some((e) => TERMINAL.includes(e.type)) ? h : undefined;
    }, timeoutMs, `job ${jobId} to finish`);
  }
  async function logs(jobId: string): Promise<Record<string, string>> {
    const out: Record<string, string> = { stdout: '', stderr: '' };
    for await (const c of readLogChunks(jetstream(nc), jobId)) out[c.stream] += Buffer.from(c.data).toString('utf8');
    return out;
  }

  it('runs a job on the SSH host: both streams arrive, the job fails with exit code 5', async () => {
    const jobId = await submit({ command: "sh -c 'echo to-stdout; echo to-stderr >&2; exit 5'", target: { executor: 'ssh', host: 'good' } });
    const events = await finished(jobId);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(events.find((e) => e.type === 'JobDispatched')?.data).toMatchObject({ executorId: 'good' });
    expect(events.find((e) => e.type === 'JobStarted')?.data).toMatchObject({ sandbox: 'ssh' });
    expect(events.find((e) => e.type === 'JobCompleted')?.data).toMatchObject({ exitCode: 5 });
    const out = await eventually(async () => {
      const l = await logs(jobId);
      return l.stdout && l.stderr ? l : undefined;
    }, 10_000, 'both streams');
    expect(out).toEqual({ stdout: 'to-stdout\n', stderr: 'to-stderr\n' });
  });

  it('a staged job on the SSH host: the same core records each step (markers, exit codes, continueOnFailure); per-step outputs are not collected there, and the script does not wait', async () => {
    const jobId = await submit({
      steps: [
        { name: 'one', run: 'echo one', outputs: ['x/*'] },
        { name: 'two', run: 'echo two >&2; exit 6', continueOnFailure: true },
        { name: 'three', run: 'echo three' },
      ],
      target: { executor: 'ssh', host: 'good' },
    });
    const events = await finished(jobId);
    expect(events.find((e) => e.type === 'JobCompleted')?.data).toMatchObject({ exitCode: 0 });
    const ends = events.filter((e) => e.type === 'JobStepFinished').map((e) => e.data as { step: number; exitCode: number });
    expect(ends.map((d) => [d.step, d.exitCode])).toEqual([
      [1, 0],
      [2, 6],
      [3, 0],
    ]);
    expect(events.filter((e) => e.type === 'JobStepStarted')).toHaveLength(3);
    const out = await logs(jobId);
    expect(out.stdout).toBe('one\nthree\n');
    expect(out.stderr).toBe('==> [1/3] one\njobline: outputs of step 1 not collected: this executor does not collect artifacts\n==> [2/3] two\ntwo\n==> [3/3] three\n');
  });

  it("a job with a git source runs on the SSH host in a copy of the commit's bundle; the remote workspace is removed after", async () => {
    const repo = join(dir.path, `repo-${randomUUID()}`);
    mkdirSync(repo);
    const commits = threeCommitRepo(repo);
    const jobId = await submit({ command: 'ls -A; cat a.txt; pwd', source: { git: { url: `file://${repo}`, commit: commits[0] } }, target: { executor: 'ssh', host: 'good' } });
    const events = await finished(jobId, 30_000);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobPackaged', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(events.find((e) => e.type === 'JobDispatched')?.data).toMatchObject({ executorId: 'good' });
    expect(events.find((e) => e.type === 'JobCompleted')?.data).toMatchObject({ exitCode: 0 });
    const out = await eventually(async () => {
      const l = await logs(jobId);
      return l.stdout.split('\n').length >= 4 ? l : undefined;
    }, 10_000, 'the log');
    const [ls1, ls2, content, ws] = out.stdout.trim().split('\n');
    expect([ls1, ls2, content]).toEqual(['.jobline', 'a.txt', 'one']);
    expect(ws.startsWith(join(dir.path, 'remote', 'good') + '/')).toBe(true);
    await eventually(() => !existsSync(ws), 10_000, 'the remote workspace to be removed');
    expect(readdirSync(join(dir.path, 'remote', 'good')).filter((f) => !f.endsWith('.pid'))).toEqual([]);
  });

  it("GET /v1/executors' registry shows each host's state: connected, or the host-key mismatch", async () => {
    const list = await eventually(() => {
      const l = registry.list().filter((e) => e.kind === 'ssh');
      return l.some((e) => e.id === 'forged' && e.state === 'host-key-mismatch') && l.some((e) => e.id === 'good') ? l : undefined;
    }, 10_000, 'both hosts to be listed');
    expect(list.find((e) => e.id === 'good')).toMatchObject({ alive: true, state: 'connected', sandbox: 'ssh', labels: { host: 'good' } });
    expect(list.find((e) => e.id === 'good')?.note).toBeUndefined();
    expect(list.find((e) => e.id === 'forged')).toMatchObject({ alive: true, state: 'host-key-mismatch' });
    expect(list.find((e) => e.id === 'forged')?.note).toMatch(/host key mismatch for SSH host forged/);
  });

  it('a job without an SSH target never goes to an SSH host', async () => {
    const jobId = await submit({ command: 'true' });
    await new Promise((r) => setTimeout(r, 500));
    expect((await history(jobId)).map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued']);
    await publisher.publish(subjects.cancel('alice'), { jobId }, { msgId: `${jobId}-cancel` });
    await finished(jobId);
  });

  it("stopping sh -c 'sleep & sleep & wait' over SSH leaves no sleep process", async () => {
    const tag = `1000.${Math.floor(Math.random() * 1e6)}`;
    const jobId = await submit({ command: `sh -c 'sleep ${tag} & sleep ${tag} & wait'`, target: { executor: 'ssh', host: 'good' } });
    await eventually(() => pgrep(`sleep ${tag}`).split('\n').filter(Boolean).length === 2, 20_000, 'both sleeps to run');
    await publisher.publish(subjects.cancel('alice'), { jobId }, { msgId: `${jobId}-cancel` });
    const events = await finished(jobId);
    expect(events.map((e) => e.type)).toContain('JobCancelled');
    expect(pgrep(`sleep ${tag}`)).toBe('');
  });

  it('a host whose key does not match the pinned one: the job fails with a host-key error and nothing ran', async () => {
    const marker = join(dir.path, `ran-${randomUUID()}`);
    const jobId = await submit({ command: ['touch', marker], target: { executor: 'ssh', host: 'forged' } });
    const events = await finished(jobId);
    const done = events.find((e) => e.type === 'JobCompleted' || e.type === 'JobFailed');
    expect(JSON.stringify(done?.data)).toMatch(/host key mismatch for SSH host forged/);
    expect(existsSync(marker)).toBe(false);
  });

  it('sshd stopped while a job runs: the attempt is reported lost within the lease, its processes die when the host is back', async () => {
    const tag = `1003.${Math.floor(Math.random() * 1e6)}`;
    const jobId = await submit({ command: `sh -c 'sleep ${tag} & sleep ${tag}'`, target: { executor: 'ssh', host: 'good' } });
    await eventually(() => pgrep(`sleep ${tag}`).split('\n').filter(Boolean).length === 2, 20_000, 'both sleeps to run');
    await sshd.stop();
    const events = await finished(jobId, 30_000);
    const lost = events.find((e) => e.type === 'JobLost');
    expect(lost?.data).toMatchObject({ executorId: 'good' });
    // Its heartbeats stopped: the registry shows it unreachable.
    await eventually(() => registry.list().find((e) => e.id === 'good')?.state === 'unreachable', 10_000, 'the host to show as unreachable');
    await sshd.start();
    await eventually(() => pgrep(`sleep ${tag}`) === '', 30_000, 'the orphaned sleeps to be killed on reconnect');
    // The host takes work again.
    const next = await submit({ command: 'echo back', target: { executor: 'ssh', host: 'good' } });
    expect((await finished(next, 30_000)).find((e) => e.type === 'JobCompleted')?.data).toMatchObject({ exitCode: 0 });
    expect(registry.list().find((e) => e.id === 'good')).toMatchObject({ alive: true, state: 'connected' });
  });
});
