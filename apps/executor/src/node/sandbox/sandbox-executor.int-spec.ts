import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import {
  subjects,
  type AttemptReport,
  type JobSpecInput,
  type RunAttemptMessage,
  type StopAttemptMessage,
} from '../../../../../libs/contracts/src';
import { ensureStreams } from '../../../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../../../libs/testing/src';
import { Executor } from '../../core/executor';
import { OrchestratorPeer } from '../../testing/orchestrator-peer';
import { FileReportOutbox, outboxDir } from '../file-report-outbox';
import { ATTEMPT_MARKER } from '../node-process-runner';
import { hasEnvEntry, listProcesses } from '../proc-scan';
import { detectSandbox } from './detect';
import { SandboxRunner } from './sandbox-runner';

/** The sandbox through the real Executor and a real nats-server, on whatever cgroup kind this host allows. */

const tmp: TempDir = tempDir('jobline-sandbox-ex-');
chmodSync(tmp.path, 0o755);
const executorId = `sbx${process.pid}`;
const { runner, detection } = detectSandbox({ executorId, workRoot: join(tmp.path, 'work') });
const title =
  detection.kind === 'none' ? `sandboxed executor (SKIPPED: no sandbox on this host: ${detection.refused.join('; ')})` : `sandboxed executor (${detection.kind})`;

(detection.kind === 'none' ? describe.skip : describe)(title, () => {
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let executor: Executor;
  let peer: OrchestratorPeer;

  beforeAll(async () => {
    server = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
    nc = await connect({ servers: server.url });
    js = jetstream(nc);
    await ensureStreams(await jetstreamManager(nc));
    await runner.cleanupLeftovers?.();
    // Grants the executor's claims (the started reports) and answers its heartbeats, as an orchestrator would.
    peer = new OrchestratorPeer({ nc }).start();
    executor = new Executor({
      nc,
      executorId,
      runner,
      outbox: new FileReportOutbox(outboxDir(join(tmp.path, 'work'), executorId)),
      runtime: 'node test',
      logger: { info: () => undefined, warn: () => undefined, error: (f, m) => console.error(m, f) },
      heartbeatMs: 200,
      graceMs: 1000,
    });
    await executor.start();
  });

  afterAll(async () => {
    await executor?.stop();
    peer?.stop();
    if (runner instanceof SandboxRunner) await runner.removeParent();
    await nc?.close();
    await server?.stop();
    tmp.remove();
  });

  function reportsOf(jobId: string) {
    const got: AttemptReport[] = [];
    const sub = nc.subscribe(subjects.report(jobId));
    void (async () => {
      for await (const m of sub) got.push(m.json<AttemptReport>());
    })();
    const find = async <K extends AttemptReport['kind']>(kind: K) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const r = got.find((x) => x.kind === kind);
        if (r) return r as Extract<AttemptReport, { kind: K }>;
        if (Date.now() > deadline) throw new Error(`no ${kind} report for ${jobId}`);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    return { started: () => peer.until(`the claim of ${jobId}`, () => peer.claims.find((c) => c.jobId === jobId), 20_000), finished: () => find('finished') };
  }

  async function dispatch(spec: JobSpecInput, jobId = crypto.randomUUID()): Promise<string> {
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId,
      owner: 'alice',
      attempt: 1,
      spec: { priority: 'normal', ...spec } as RunAttemptMessage['spec'],
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
    };
    await js.publish(subjects.work(executorId), JSON.stringify(msg));
    return jobId;
  }

  it('memoryMb 64 and 300 MB allocated: the report says OOM-killed, names the sandbox, and carries usage', async () => {
    const jobId = crypto.randomUUID();
    const { started, finished } = reportsOf(jobId);
    await dispatch({ command: 'head -c 300M /dev/zero | tail', resources: { memoryMb: 64 } }, jobId);
    expect((await started()).sandbox).toBe(detection.kind);
    const done = await finished();
    expect(done.exitCode).not.toBe(0);
    expect(done.oomKilled).toBe(true);
    expect(done.usage?.maxRssBytes).toBeGreaterThan(0);
    // The executor takes the next job as usual.
    const next = crypto.randomUUID();
    const r = reportsOf(next);
    await dispatch({ command: 'echo ok' }, next);
    expect(await r.finished()).toMatchObject({ exitCode: 0, oomKilled: false });
  });

  it('a stop order leaves no process of the attempt on the host', async () => {
    const jobId = crypto.randomUUID();
    const { started, finished } = reportsOf(jobId);
    await dispatch({ command: 'sleep 1000 & sleep 1000 & wait' }, jobId);
    await started();
    const marker = `${ATTEMPT_MARKER}=${jobId}-1`;
    const ofJob = () => listProcesses().filter((p) => p.state !== 'Z' && hasEnvEntry(p.pid, marker));
    for (let i = 0; ofJob().length < 3 && i < 500; i++) await new Promise((r) => setTimeout(r, 20));
    expect(ofJob().length).toBe(3);
    const stop: StopAttemptMessage = { kind: 'stop', jobId, attempt: 1, reason: 'cancel' };
    await js.publish(subjects.control(executorId), JSON.stringify(stop));
    const done = await finished();
    expect(done.exitCode).toBeGreaterThan(128);
    expect(ofJob()).toEqual([]);
  });
});

if (detection.kind === 'none') afterAll(() => tmp.remove());
