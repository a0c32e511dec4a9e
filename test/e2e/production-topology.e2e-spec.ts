import { jetstream } from '@nats-io/jetstream';
import { createInbox, headers as emptyHeaders, type Msg, type MsgHdrs } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { JobView } from '../../libs/contracts/src';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { sshdUnavailable } from '../../apps/executor/src/ssh/testing/sshd';
import { RestClient } from './support';
import { TERMINAL, compareWithRebuild, jobProcesses, openStoreForReading, readJobStreams, verifyHistory } from './topology/checks';
import { CLI, LOCAL_EXECUTOR_ID, ROOT, SSH_HOST, TEST_TIMINGS, longestTimeoutMs, startTopology, storeFromEnv, topologyUnavailable, type ManagedProcess, type Topology } from './topology/topology';

/**
 * Issue 10, item 5: the production topology as separate OS processes (nats-server, api,
 * orchestrator, packager, a local and an SSH executor), each started with the CLI and
 * environment variables only (test/e2e/topology/topology.ts, as deploy/README.md says), the
 * journeys a user makes, then faults under a bounded load of mixed jobs. After each fault:
 * every job terminal, none completed twice, every history whole and in order, no job process
 * left, the read model equal to a rebuild from 0. The table of figures goes to the console
 * and to .tmp/production-topology.json.
 *
 * JOBLINE_TEST_TOPOLOGY_STORE=postgres://postgres@127.0.0.1:5432/test runs it on PostgreSQL (a
 * fresh schema, dropped after); JOBLINE_TEST_TOPOLOGY_JOBS (per fault, default 30) and
 * JOBLINE_TEST_TOPOLOGY_FAULTS (comma list of fault names) narrow it for a quick run.
 */

const unavailable = topologyUnavailable() ?? sshdUnavailable();
const describeIf = unavailable ? describe.skip : describe;
if (unavailable) console.warn(`production-topology: skipped: ${unavailable}`);

const JOBS_PER_FAULT = Number(process.env.JOBLINE_TEST_TOPOLOGY_JOBS ?? 30);
const ONLY_FAULTS = process.env.JOBLINE_TEST_TOPOLOGY_FAULTS?.split(',').map((s) => s.trim()).filter(Boolean) ?? null;
/** Outage lengths: a short one, and one longer than every timeout and lease the services use. */
const SHORT_OUTAGE_MS = 500;
const LONG_OUTAGE_MS = longestTimeoutMs() + 2000;
const SETTLE_MS = 120_000;

type Kind = 'instant' | 'sleep' | 'sleep-retry' | 'print' | 'flaky-retry' | 'ssh' | 'git' | 'cancel-me' | 'cancel-me-ssh';
/**
 * The load of one fault: instant, sleeping, printing, failing-then-retried jobs, jobs on the SSH
 * host and from git; and first, two that would run for a minute (one local, one on the SSH host),
 * cancelled once the fault is over: a lost attempt of theirs left running (by a killed or
 * stopped executor) outlives the job and shows as a job process left.
 */
const MIX: Kind[] = ['instant', 'sleep-retry', 'print', 'instant', 'flaky-retry', 'ssh', 'git', 'sleep', 'instant', 'print'];
const FIRST: Kind[] = ['cancel-me', 'cancel-me-ssh'];

interface Submitted {
  id: string;
  kind: Kind | 'probe';
  fault: string;
  /** 201: accepted. 503 with a jobId: not known to be recorded (it may be later). */
  accepted: boolean;
  /** What it must have printed if it succeeded (its log whole, once), when that is known. */
  log: string | null;
}

interface FaultReport {
  fault: string;
  outageMs: number;
  submitted: number;
  terminal: number;
  lost: number;
  doubled: number;
  /** Attempts of the batch's jobs declared lost (JobLost): what the fault did to running work. */
  attemptsLost: number;
  /** From the fault until every job was terminal (ms), and the job that ended last with its events' times after the fault. */
  allTerminalAfterMs: number;
  slowest: string;
  /** Jobs pending (packaging), queued and running just before the fault. */
  atFault: string;
  /** Submits refused while the fault lasted (503, or no answer). */
  refused: number;
  /** Probes answered 503 that were recorded later anyway (each must be terminal too). */
  recordedAfter503: number;
  /** From the fault to the first probe submit answered 201 (ms). */
  submitAcceptedAfterMs: number | null;
  problems: string[];
}

const PRINT_LINES = 300;
const printed = Array.from({ length: PRINT_LINES }, (_, i) => `line-${i}\n`).join('');

describeIf('production topology: separate processes started from the CLI and variables, journeys, then faults under load', () => {
  let dir: TempDir;
  let t: Topology;
  let admin: RestClient;
  const runMarker = `TOPO_RUN=${randomUUID()}`;
  const env = { TOPO_RUN: runMarker.slice('TOPO_RUN='.length) };
  const jobs: Submitted[] = [];
  const reports: FaultReport[] = [];
  const reportedPids = new Set<number>();
  const refusedSubmits = new Map<string, number>();
  /** What was under way when the fault struck (GET /v1/stats just before). */
  const atFault = new Map<string, string>();
  let scratch: string;
  /** What the local executor's JobStarted says about its sandbox. */
  let sandbox: unknown = null;

  const specFor = (kind: Kind, i: number): Record<string, unknown> => {
    switch (kind) {
      case 'instant':
        return { command: `echo instant-${i}`, env };
      case 'sleep':
        return { command: ['sleep', '2'], env };
      case 'sleep-retry':
        return { command: ['sleep', '2'], env, retry: { maxAttempts: 3, backoffSeconds: 1 } };
      case 'print':
        return { command: `i=0; while [ $i -lt ${PRINT_LINES} ]; do echo line-$i; i=$((i+1)); done`, env };
      case 'flaky-retry':
        // Fails its first attempt, succeeds on a later one.
        // (JOBLINE_ATTEMPT is <jobId>-<attempt number>.)
        return { command: '[ "${JOBLINE_ATTEMPT##*-}" -ge 2 ] || exit 3; echo second', env, retry: { maxAttempts: 3, backoffSeconds: 1 } };
      case 'ssh':
        return { command: `sleep 1; echo ssh-${i}`, env, target: { executor: 'ssh', host: SSH_HOST }, retry: { maxAttempts: 2, backoffSeconds: 1 } };
      case 'git':
        return { command: 'sh hello.sh', env, source: { git: { url: t.repo.url, commit: t.repo.commit } } };
      case 'cancel-me':
        return { command: ['sleep', '60'], env, retry: { maxAttempts: 2, backoffSeconds: 1 } };
      case 'cancel-me-ssh':
        return { command: ['sleep', '60'], env, target: { executor: 'ssh', host: SSH_HOST }, retry: { maxAttempts: 2, backoffSeconds: 1 } };
    }
  };

  /** What a succeeded job of each kind must have printed: its log is whole, once. */
  const expectedLog = (kind: Kind | 'probe', i: number): string | null => {
    if (kind === 'probe') return 'probe\n';
    switch (kind) {
      case 'instant':
        return `instant-${i}\n`;
      case 'print':
        return printed;
      case 'flaky-retry':
        return 'second\n';
      case 'git':
        return 'hello from git at a commit\n';
      default:
        return null;
    }
  };

  beforeAll(async () => {
    dir = tempDir('jobline-topology-');
    scratch = mkdtempSync(join(dir.path, 'scratch-'));
    t = await startTopology(dir.path, storeFromEnv(process.env.JOBLINE_TEST_TOPOLOGY_STORE));
    admin = new RestClient(t.apiUrl, t.adminToken);
    // Both executors heard from before anything is submitted.
    await eventually(
      async () => {
        const res = await admin.request('/v1/executors');
        const items = ((await res.json()) as { items: { id: string; alive: boolean }[] }).items;
        return [LOCAL_EXECUTOR_ID, SSH_HOST].every((id) => items.some((e) => e.id === id && e.alive));
      },
      30_000,
      'both executors to heart-beat',
    );
  }, 180_000);

  afterAll(async () => {
    if (reports.length) {
      const table = [
        '| fault | outage | under way at the fault | jobs submitted | terminal | lost | doubled | attempts lost (retried or failed) | submits refused meanwhile | REST submit accepted again after | all terminal after |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        ...reports.map(
          (r) =>
            `| ${r.fault} | ${(r.outageMs / 1000).toFixed(1)} s | ${r.atFault} | ${r.submitted} | ${r.terminal} | ${r.lost} | ${r.doubled} | ${r.attemptsLost} | ${r.refused} | ${r.submitAcceptedAfterMs === null ? 'never' : `${(r.submitAcceptedAfterMs / 1000).toFixed(2)} s`} | ${(r.allTerminalAfterMs / 1000).toFixed(1)} s |`,
        ),
      ].join('\n');
      console.log(`production topology (${t?.store.kind ?? "?"} store), faults:\n${table}\n${reports.map((r) => `  ${r.fault}: last to end: ${r.slowest}`).join("\n")}\n${reports.flatMap((r) => r.problems.slice(0, 10).map((p) => `  ${r.fault}: ${p}`)).join("\n")}`);
      mkdirSync(join(ROOT, '.tmp'), { recursive: true });
      writeFileSync(join(ROOT, '.tmp/production-topology.json'), JSON.stringify({ at: new Date().toISOString(), store: t?.store.kind, sandbox, reports }, null, 2));
      // The services' logs, for the evidence behind a failed check.
      if (reports.some((r) => r.problems.length)) cpSync(join(dir.path, 'logs'), join(ROOT, '.tmp/production-topology-logs'), { recursive: true });
    }
    if (t) {
      await t.stop().catch(() => undefined);
      t.remove();
    }
    dir?.remove();
  }, 180_000);

  // ---- journeys ------------------------------------------------------------------------

  it('REST: a job that writes to both streams and fails is recorded, logged and in order', async () => {
    const job = await admin.submit({ command: "sh -c 'echo out; echo err >&2; exit 3'", env });
    expect(job.status).not.toBe('succeeded');
    const done = await admin.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'failed', exitCode: 3, executor: LOCAL_EXECUTOR_ID });
    expect((await admin.log(job.id, '?stream=stdout'))).toBe('out\n');
    expect((await admin.log(job.id, '?stream=stderr'))).toBe('err\n');
    const events = await admin.events(job.id);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    const started = events.find((e) => e.type === 'JobStarted')!.data;
    sandbox = { sandbox: started.sandbox, note: started.sandboxNote };
  }, 90_000);

  it('a job with a git source from a local repository is packaged by the packager process and run from its bundle', async () => {
    const job = await admin.submit({ command: 'sh hello.sh', env, source: { git: { url: t.repo.url, commit: t.repo.commit } } });
    const done = await admin.finished(job.id, 90_000);
    expect(done.status).toBe('succeeded');
    expect(done.bundleDigest).toEqual(expect.any(String));
    expect(await admin.log(job.id)).toBe('hello from git at a commit\n');
    expect((await admin.events(job.id)).map((e) => e.type)).toContain('JobPackaged');
    const res = await admin.request(`/v1/jobs/${job.id}/bundle`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/gzip/);
    await res.arrayBuffer();
  }, 120_000);

  it('a job on the SSH host runs there, through the SSH executor process', async () => {
    const job = await admin.submit({ command: 'echo on $(hostname) >/dev/null; echo remote', env, target: { executor: 'ssh', host: SSH_HOST } });
    const done = await admin.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', executor: SSH_HOST });
    expect(await admin.log(job.id)).toBe('remote\n');
  }, 90_000);

  it('gRPC with mTLS: `jobline start` and `jobline logs -f` with the certificates of `jobline certs init`', async () => {
    const cliEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? dir.path };
    const certs = ['--address', t.grpcAddress, '--data-dir', t.layout.dataDirs.api];
    const start = spawnSync(process.execPath, [CLI, 'start', ...certs, '--json', '--', `echo grpc-hi; exit 7`], { cwd: ROOT, env: cliEnv, encoding: 'utf8' });
    expect(start.stderr).toBe('');
    expect(start.status).toBe(0);
    const id = (JSON.parse(start.stdout) as { id: string }).id;
    const logs = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'logs', '-f', ...certs, id], { cwd: ROOT, env: cliEnv });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.once('exit', (code) => resolve({ code, out }));
    });
    expect(logs).toEqual({ code: 7, out: 'grpc-hi\n' });
  }, 90_000);

  it('WebSocket: following a printing job from 0 gives its whole output, then end', async () => {
    const job = await admin.submit({ command: 'for i in 1 2 3 4 5 6 7 8 9 10; do echo ws-$i; sleep 0.1; done', env });
    const ws = new WebSocket(`${t.apiUrl.replace(/^http/, 'ws')}/v1/ws`, { headers: { authorization: `Bearer ${t.adminToken}` } });
    const frames: { type: string; data?: string; status?: string }[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      ws.on('message', (d) => {
        const f = JSON.parse(String(d)) as { type: string; data?: string; status?: string };
        frames.push(f);
        if (f.type === 'end') resolve();
        if (f.type === 'error') reject(new Error(String(d)));
      });
      ws.once('error', reject);
    });
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify({ op: 'follow', jobId: job.id, from: 0 }));
    await ended;
    ws.close();
    expect(frames.filter((f) => f.type === 'log').map((f) => f.data).join('')).toBe(Array.from({ length: 10 }, (_, i) => `ws-${i + 1}\n`).join(''));
    expect(frames.at(-1)).toMatchObject({ type: 'end', status: 'succeeded' });
  }, 90_000);

  const natsHeaders = (values: Record<string, string>): MsgHdrs => {
    const h = emptyHeaders();
    for (const [k, v] of Object.entries(values)) h.set(k, v);
    return h;
  };

  it('NATS: the integration user of deploy/nats/jobline.conf submits as its owner, and only as its owner', async () => {
    const nc = await connect({ servers: `nats://127.0.0.1:${t.layout.natsPort}`, user: 'acme', pass: t.layout.acmeNatsPassword, inboxPrefix: '_INBOX_acme' });
    try {
      const js = jetstream(nc);
      const jobId = randomUUID();
      await js.publish('jobline.cmd.acme.submit', JSON.stringify({ jobId, spec: { command: 'echo from-nats', env } }), { msgID: jobId });
      const done = await eventually(async () => {
        const res = await admin.request(`/v1/jobs/${jobId}`);
        if (res.status !== 200) return void (await res.arrayBuffer());
        const j = (await res.json()) as JobView;
        return TERMINAL.has(j.status) ? j : undefined;
      }, 60_000, 'the NATS-submitted job to finish');
      expect(done).toMatchObject({ owner: 'acme', status: 'succeeded' });
      expect(await admin.log(jobId)).toBe('from-nats\n');
      // Another owner's subject is not acme's to publish on.
      await expect(js.publish('jobline.cmd.admin.submit', JSON.stringify({ jobId: randomUUID(), spec: { command: 'true' } }), { timeout: 2000 })).rejects.toThrow();

      // A refused command reaches acme, with its own permissions: on jobline.rej.acme and on its reply inbox.
      const rejections: { subject: string; jobId?: string; code: string; field?: string }[] = [];
      const rejSub = nc.subscribe('jobline.rej.acme', { callback: (_e: Error | null, m: Msg) => void rejections.push(m.json()) });
      const inbox = createInbox('_INBOX_acme');
      const replies: { ok: boolean; field?: string }[] = [];
      const replySub = nc.subscribe(inbox, { callback: (_e: Error | null, m: Msg) => void replies.push(m.json()) });
      await nc.flush();
      const bad = randomUUID();
      await js.publish('jobline.cmd.acme.submit', JSON.stringify({ jobId: bad, spec: { command: 'true', priority: 'urgent' } }), {
        msgID: bad,
        headers: natsHeaders({ 'Jobline-Reply-To': inbox }),
      });
      await js.publish('jobline.cmd.acme.frobnicate', JSON.stringify({ jobId: bad }));
      await eventually(() => rejections.length >= 2 && replies.length >= 1, 30_000, 'the rejections');
      expect(rejections).toEqual([
        expect.objectContaining({ subject: 'jobline.cmd.acme.submit', jobId: bad, code: 'invalid_argument', field: 'spec.priority' }),
        expect.objectContaining({ subject: 'jobline.cmd.acme.frobnicate', jobId: bad, code: 'invalid_argument', field: '(subject)' }),
      ]);
      expect(replies).toEqual([expect.objectContaining({ ok: false, field: 'spec.priority' })]);
      expect((await admin.request(`/v1/jobs/${bad}`)).status).toBe(404);
      rejSub.unsubscribe();
      replySub.unsubscribe();
    } finally {
      await nc.close();
    }
  }, 90_000);

  // ---- faults under load ---------------------------------------------------------------

  interface Fault {
    name: string;
    outageMs: number;
    target: () => ManagedProcess;
    /** kill -9 then start again after the outage; or SIGSTOP then SIGCONT. */
    mode: 'kill' | 'stop';
  }
  const faults: Fault[] = [];
  for (const [name, target] of [
    ['orchestrator', () => t.services.orchestrator],
    ['api', () => t.services.api],
    ['packager', () => t.services.packager],
    ['executor', () => t.services.executor],
    ['nats-server', () => t.nats],
  ] as const) {
    faults.push({ name: `kill -9 ${name}, short outage`, outageMs: SHORT_OUTAGE_MS, target, mode: 'kill' });
    faults.push({ name: `kill -9 ${name}, long outage`, outageMs: LONG_OUTAGE_MS, target, mode: 'kill' });
  }
  faults.push({ name: 'SIGSTOP executor past its lease, SIGCONT', outageMs: TEST_TIMINGS.leaseMs + 2000, target: () => t.services.executor, mode: 'stop' });

  const submitOne = async (spec: Record<string, unknown>, kind: Submitted['kind'], fault: string, log: string | null): Promise<Submitted | null> => {
    const res = await admin.request('/v1/jobs', { method: 'POST', body: JSON.stringify(spec), signal: AbortSignal.timeout(20_000) });
    const body = (await res.json().catch(() => ({}))) as { id?: string; jobId?: string };
    if (res.status === 201) return { id: body.id!, kind, fault, accepted: true, log };
    if (res.status === 503 && body.jobId) return { id: body.jobId, kind, fault, accepted: false, log };
    return null;
  };

  /** Submits a probe every 250 ms from the fault on, until one is accepted: when that answer came (ms after the fault). */
  const probe = async (fault: string, t0: number, until: { done: boolean }): Promise<number | null> => {
    let first: number | null = null;
    const pending = new Set<Promise<void>>();
    while (first === null && !until.done) {
      if (pending.size < 40) {
        const p: Promise<void> = submitOne({ command: 'echo probe', env }, 'probe', fault, 'probe\n')
          .then((s) => {
            if (s) jobs.push(s);
            if (!s?.accepted) refusedSubmits.set(fault, (refusedSubmits.get(fault) ?? 0) + 1);
            if (s?.accepted && first === null) first = Date.now() - t0;
          })
          .catch(() => {
            refusedSubmits.set(fault, (refusedSubmits.get(fault) ?? 0) + 1);
          })
          .finally(() => pending.delete(p));
        pending.add(p);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    await Promise.all(pending);
    return first;
  };

  const settleAndCheck = async (fault: Fault, t0: number, batch: Submitted[], acceptedAfter: number | null): Promise<FaultReport> => {
    const problems: string[] = [];
    const deadline = Date.now() + SETTLE_MS;
    // 1. Every job accepted so far reaches a terminal status (and 503'd ones, if recorded).
    const views = new Map<string, JobView | null>();
    for (const j of jobs) {
      for (;;) {
        const res = await admin.request(`/v1/jobs/${j.id}`).catch(() => null);
        const view = res && res.status === 200 ? ((await res.json()) as JobView) : null;
        if (res && res.status !== 200) await res.arrayBuffer();
        if (view && TERMINAL.has(view.status)) {
          views.set(j.id, view);
          break;
        }
        if (!view && !j.accepted && res?.status === 404) {
          views.set(j.id, null);
          break;
        }
        if (Date.now() > deadline) {
          views.set(j.id, view);
          break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const allTerminalAfterMs = Date.now() - t0;
    // 2. Every history whole and in order, none completed twice (every job in the store).
    const { store, close } = openStoreForReading(t, scratch);
    let slowest = '';
    let doubled = 0;
    let lost = 0;
    let attemptsLost = 0;
    try {
      const streams = await readJobStreams(store);
      const inBatch = new Set(batch.map((j) => j.id));
      for (const [jobId, events] of streams) {
        const v = verifyHistory(jobId, events);
        const mine = inBatch.has(jobId);
        if (mine) attemptsLost += v.types.filter((x) => x === 'JobLost').length;
        // The job that ended last, with each event's time after the fault: where the time went.
        const lastAt = Date.parse(String(events.at(-1)!.metadata.occurredAt));
        if (mine && (!slowest || lastAt > Number(slowest.split(' ')[0]))) {
          const kind = batch.find((j) => j.id === jobId)?.kind;
          slowest = `${lastAt} ${kind} ${jobId}: ${events.map((e) => `${e.type}@${((Date.parse(String(e.metadata.occurredAt)) - t0) / 1000).toFixed(1)}s`).join(' ')}`;
        }
        if (v.ends > 1 || v.successes > 1) {
          if (mine) doubled++;
          problems.push(`job ${jobId} completed twice: ${v.types.join(',')}`);
        }
        for (const p of v.problems) problems.push(p);
      }
      for (const j of jobs) {
        const view = views.get(j.id);
        const recorded = streams.has(j.id);
        if (j.accepted && !recorded) problems.push(`job ${j.id} (${j.kind}, ${j.fault}) was accepted (201) but is not in the store`);
        if ((j.accepted || recorded) && !(view && TERMINAL.has(view.status))) {
          problems.push(`job ${j.id} (${j.kind}, ${j.fault}) is not terminal: ${view?.status ?? 'missing'}; events ${streams.get(j.id)?.map((e) => e.type).join(',') ?? 'none'}`);
          if (inBatch.has(j.id)) lost++;
        }
        // A succeeded job printed what it should, exactly once.
        const want = view?.status === 'succeeded' ? j.log : null;
        if (want !== null && inBatch.has(j.id)) {
          const got = await admin.log(j.id);
          if (got !== want) problems.push(`job ${j.id} (${j.kind}) succeeded with log ${JSON.stringify(got.slice(0, 200))}, expected ${JSON.stringify(want.slice(0, 200))}${got.length !== want.length ? ` (${got.length} bytes, expected ${want.length})` : ''}`);
        }
      }
      // 3. The read model equals a rebuild from 0 (retried briefly: 503'd submissions may still be recorded).
      let differences: string[] = [];
      const rebuildDeadline = Date.now() + 15_000;
      do {
        differences = await compareWithRebuild(store, admin);
        if (differences.length) await new Promise((r) => setTimeout(r, 1000));
      } while (differences.length && Date.now() < rebuildDeadline);
      problems.push(...differences.slice(0, 20).map((d) => `read model: ${d}`));
    } finally {
      await close();
    }
    // 4. No job process left (the kill grace is 1 s: give them a few).
    let left: Map<number, string>;
    const procDeadline = Date.now() + 5000;
    do {
      left = jobProcesses(runMarker);
      for (const pid of reportedPids) left.delete(pid);
      if (left.size) await new Promise((r) => setTimeout(r, 250));
    } while (left.size && Date.now() < procDeadline);
    for (const [pid, cmd] of left) {
      reportedPids.add(pid);
      problems.push(`job process left: pid ${pid} ${cmd}`);
    }
    const mine = batch.filter((j) => j.accepted);
    return {
      fault: fault.name,
      outageMs: fault.outageMs,
      submitted: mine.length,
      terminal: mine.filter((j) => TERMINAL.has(views.get(j.id)?.status ?? '')).length,
      lost,
      doubled,
      attemptsLost,
      refused: refusedSubmits.get(fault.name) ?? 0,
      atFault: atFault.get(fault.name) ?? '',
      allTerminalAfterMs,
      slowest: slowest.replace(/^\d+ /, ''),
      recordedAfter503: batch.filter((j) => !j.accepted && views.get(j.id)).length,
      submitAcceptedAfterMs: acceptedAfter,
      problems,
    };
  };

  for (const fault of faults) {
    const run = !ONLY_FAULTS || ONLY_FAULTS.some((f) => fault.name.includes(f));
    (run ? it : it.skip)(
      fault.name,
      async () => {
        const before = jobs.length;
        // A batch of mixed jobs, then the fault while some of them run.
        for (let i = 0; i < JOBS_PER_FAULT; i++) {
          const kind = i < FIRST.length ? FIRST[i] : MIX[(i - FIRST.length) % MIX.length];
          const n = jobs.length;
          const s = await submitOne(specFor(kind, n), kind, fault.name, expectedLog(kind, n));
          if (!s?.accepted) throw new Error(`the load could not be submitted before the fault (${s ? 503 : 'refused'})`);
          jobs.push(s);
        }
        await eventually(
          async () => {
            const res = await admin.request('/v1/jobs?status=running&limit=100');
            return ((await res.json()) as { total: number }).total >= 2;
          },
          30_000,
          'jobs of the batch to run',
        );
        // The process check below can see this run's job processes (else it could not fail).
        await eventually(() => jobProcesses(runMarker).size > 0, 10_000, 'a job process carrying the run marker');
        // Two jobs with a git source right before the fault: their packaging is under way or waiting.
        for (let i = 0; i < 2; i++) {
          const s = await submitOne(specFor('git', jobs.length), 'git', fault.name, expectedLog('git', jobs.length));
          if (!s?.accepted) throw new Error('a git job could not be submitted before the fault');
          jobs.push(s);
        }
        const stats = (await (await admin.request('/v1/stats')).json()) as { byStatus: Record<string, number> };
        atFault.set(fault.name, ['pending', 'queued', 'running'].map((k) => `${stats.byStatus[k] ?? 0} ${k}`).join(', '));
        const target = fault.target();
        const t0 = Date.now();
        const probing = { done: false };
        if (fault.mode === 'kill') await target.kill9();
        else target.signal('SIGSTOP');
        const accepted = probe(fault.name, t0, probing);
        await new Promise((r) => setTimeout(r, fault.outageMs));
        if (fault.mode === 'kill') await target.start();
        else target.signal('SIGCONT');
        // Submits must be accepted again within the settle time.
        const stopProbing = setTimeout(() => (probing.done = true), SETTLE_MS);
        const acceptedAfter = await accepted;
        clearTimeout(stopProbing);
        probing.done = true;
        // The fault is over: stop the minute-long jobs (202, or 409 if they already ended).
        for (const j of jobs.slice(before).filter((x) => x.kind === 'cancel-me' || x.kind === 'cancel-me-ssh')) {
          const res = await admin.request(`/v1/jobs/${j.id}/cancel`, { method: 'POST', body: JSON.stringify({ reason: 'fault over' }) });
          await res.arrayBuffer();
          if (res.status !== 202 && res.status !== 409) throw new Error(`cancel ${j.id}: ${res.status}`);
        }
        const report = await settleAndCheck(fault, t0, jobs.slice(before), acceptedAfter);
        reports.push(report);
        if (report.submitAcceptedAfterMs === null) report.problems.push('REST submits were not accepted again');
        expect(report.problems).toEqual([]);
        expect(report).toMatchObject({ lost: 0, doubled: 0, terminal: report.submitted });
      },
      SETTLE_MS * 2 + LONG_OUTAGE_MS + 60_000,
    );
  }

  // ---- a clean stop ----------------------------------------------------------------------

  it('every service stops cleanly on SIGTERM (exit 0), and `jobline replay` finds the history whole and the read model equal', async () => {
    const codes = await t.stop();
    expect(codes).toEqual({ api: 0, 'executor-ssh': 0, executor: 0, packager: 0, orchestrator: 0, 'nats-server': 0 });
    expect([...jobProcesses(runMarker).keys()].filter((p) => !reportedPids.has(p))).toEqual([]);
    if (t.store.kind === 'sqlite') {
      const replay = spawnSync(process.execPath, [CLI, 'replay', '--data-dir', t.layout.dataDirs.api, '--json'], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
      expect(replay.stderr).toBe('');
      const result = JSON.parse(replay.stdout) as { problems: string[]; liveMatches: boolean };
      expect(result).toMatchObject({ problems: [], liveMatches: true });
      expect(replay.status).toBe(0);
    }
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);
});
