import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { subjects, type RunAttemptMessage } from '../../libs/contracts/src';
import { ensureStreams } from '../../libs/messaging/src/streams';
import { OrchestratorPeer } from '../../apps/executor/src/testing/orchestrator-peer';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { ATTEMPT_MARKER } from '../../apps/executor/src/core/running-record';
import { hasEnvEntry, listProcesses } from '../../apps/executor/src/node/proc-scan';
import { detectSandbox } from '../../apps/executor/src/node/sandbox/detect';
import { SandboxRunner } from '../../apps/executor/src/node/sandbox/sandbox-runner';

/**
 * Issue 17: when an executor dies (kill -9), its attempts' processes die with it — sandboxed
 * and unsandboxed, background children and a child that left the session included — within
 * a short bound, with no executor started again. Each executor is a separate process from
 * dist/ (startNodeExecutor), against a private nats-server.
 */

const ROOT = resolve(__dirname, '../..');
const MAIN = join(ROOT, 'dist/apps/executor/src/node/main.js');
const JOB_UID = 10001;
const isRoot = process.geteuid?.() === 0;
/** Well under the 10 s lease. */
const DEATH_BOUND_MS = 3000;

/** A local executor in a process of its own; prints "ready" once it takes work. */
function startExecutor(natsUrl: string, executorId: string, workRoot: string, asUid?: number): { child: ChildProcess; output: () => string } {
  const script = `
    const { connect } = require('@nats-io/transport-node');
    const { startNodeExecutor } = require(${JSON.stringify(MAIN)});
    (async () => {
      const nc = await connect({ servers: ${JSON.stringify(natsUrl)} });
      const h = await startNodeExecutor({ nc, executorId: ${JSON.stringify(executorId)}, workRoot: ${JSON.stringify(workRoot)}, capacity: 4, graceMs: 1000, heartbeatMs: 200, ensureStreams: false });
      console.log('ready ' + JSON.stringify(h.sandbox));
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', script], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(asUid !== undefined ? { uid: asUid, gid: asUid } : {}),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_PATH: join(ROOT, 'node_modules') },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

const marker = (jobId: string) => `${ATTEMPT_MARKER}=${jobId}-1`;
const liveProcessesOf = (jobId: string) => listProcesses().filter((p) => p.state !== 'Z' && hasEnvEntry(p.pid, marker(jobId)));

describe('an executor killed with SIGKILL takes its jobs with it', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let peer: OrchestratorPeer;
  const startedOf = (jobId: string) => peer.claims.find((c) => c.jobId === jobId);
  const executors: ChildProcess[] = [];

  beforeAll(async () => {
    if (!existsSync(MAIN)) {
      // `npm test` builds first; a direct `npx jest` run may not have.
      const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) throw new Error('build failed');
    }
    dir = tempDir('jobline-death-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connect({ servers: server.url });
    js = jetstream(nc);
    await ensureStreams(await jetstreamManager(nc));
    // No orchestrator here: a peer grants every claim and answers heartbeats with leases.
    peer = new OrchestratorPeer({ nc }).start();
  }, 180_000);

  afterAll(async () => {
    for (const c of executors) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // What a restart of the killed sandboxed executor would do: remove its (empty) attempt cgroups and its parent.
    if (isRoot && dir) {
      const { runner } = detectSandbox({ executorId: 'death-sbx', workRoot: join(dir.path, 'work', 'a', 'death-sbx') });
      if (runner instanceof SandboxRunner) {
        await runner.cleanupLeftovers();
        await runner.close();
        await runner.removeParent();
      }
    }
    peer?.stop();
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  async function dispatch(executorId: string): Promise<string> {
    const jobId = crypto.randomUUID();
    const msg: RunAttemptMessage = {
      kind: 'run',
      jobId,
      owner: 'alice',
      attempt: 1,
      // Two background children, one of them in a session of its own, and a foreground sleep.
      spec: { command: 'sleep 1000 & setsid sleep 1000 & sleep 1000', priority: 'normal' },
      bundleDigest: null,
      dispatchedAt: new Date().toISOString(),
    };
    await js.publish(subjects.work(executorId), JSON.stringify(msg));
    return jobId;
  }

  it(`sandboxed and unsandboxed jobs are gone within ${DEATH_BOUND_MS} ms of the kill`, async () => {
    const work = join(dir.path, 'work');
    mkdirSync(work);
    const runs: { id: string; jobs: string[]; kind: 'sandboxed' | 'unsandboxed'; exec: ReturnType<typeof startExecutor> }[] = [];
    if (isRoot) {
      // As root with `auto`: the full sandbox (the data folder is 0700, as a temp folder is).
      runs.push({ id: 'death-sbx', kind: 'sandboxed', jobs: [], exec: startExecutor(server.url, 'death-sbx', join(work, 'a')) });
      // Not as root with `auto`: unsandboxed, and JobStarted says so.
      const plainRoot = join(dir.path, 'plain');
      mkdirSync(plainRoot, { mode: 0o755 });
      chmodSync(dir.path, 0o711);
      spawnSync('chown', [`${JOB_UID}:${JOB_UID}`, plainRoot]);
      runs.push({ id: 'death-plain', kind: 'unsandboxed', jobs: [], exec: startExecutor(server.url, 'death-plain', plainRoot, JOB_UID) });
    } else {
      runs.push({ id: 'death-plain', kind: 'unsandboxed', jobs: [], exec: startExecutor(server.url, 'death-plain', join(work, 'b')) });
    }
    for (const r of runs) {
      executors.push(r.exec.child);
      await eventually(
        () => {
          if (r.exec.child.exitCode !== null) throw new Error(`executor ${r.id} exited:\n${r.exec.output()}`);
          return r.exec.output().includes('ready');
        },
        30_000,
        `executor ${r.id} to start`,
      );
      for (let i = 0; i < 3; i++) r.jobs.push(await dispatch(r.id));
    }
    const all = runs.flatMap((r) => r.jobs);
    // Every job runs: its shell and three sleeps.
    await eventually(() => all.every((j) => liveProcessesOf(j).length >= 4), 30_000, 'every job and its children to run');
    // The started report (or claim) may reach us a moment after the processes are visible.
    await eventually(() => all.every((j) => startedOf(j)), 10_000, 'every attempt to be claimed');
    for (const r of runs) {
      for (const j of r.jobs) {
        const s = startedOf(j);
        expect(s).toBeDefined();
        if (r.kind === 'sandboxed') expect(s!.sandbox).toMatch(/^cgroup-v[12]$/);
        else {
          expect(s!.sandbox).toBe('none');
          if (isRoot) expect(s!.sandboxNote).toMatch(/not running as root \(uid 10001\)/);
        }
      }
    }

    for (const r of runs) r.exec.child.kill('SIGKILL');
    for (const r of runs) if (r.exec.child.exitCode === null && r.exec.child.signalCode === null) await new Promise((res) => r.exec.child.once('exit', res));
    await eventually(() => all.every((j) => liveProcessesOf(j).length === 0), DEATH_BOUND_MS, 'every job process to die with its executor');
    // No launcher is left either.
    expect(spawnSync('pgrep', ['-f', `jobline-launcher ${runs[0].exec.child.pid}`]).stdout.toString().trim()).toBe('');
  }, 120_000);
});
