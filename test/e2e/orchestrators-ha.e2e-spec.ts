import { randomBytes, createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SqliteEventStore, openEventStore, type EventStore } from '../../libs/event-store/src';
import { dropSchema, eventually, freePort, randomSchemaName, tempDir, testPostgres, type TempDir } from '../../libs/testing/src';
import { RestClient } from './support';
import { readJobStreams, verifyHistory } from './topology/checks';
import { CLI, ManagedProcess, ROOT, TEST_TIMINGS, natsServerProcess, serviceEnvironment, topologyUnavailable, type ServiceName, type TopologyLayout } from './topology/topology';

/**
 * Issue 11, item 2: two orchestrators at once (JOBLINE_LEADERSHIP=lease), as separate
 * processes started from the CLI and variables like the production topology, on one SQLite
 * file and on PostgreSQL. Under load: kill -9 of the leader (the standby takes over within a
 * lease), then SIGSTOP of the new leader past its lease (the other takes over; the woken one
 * stands by and decides nothing). After it all: every job succeeded exactly once, each
 * dispatched and started once, every history whole.
 */
const LEADER_LEASE_MS = 2000;
const BATCH = 40;

const unavailable = topologyUnavailable();
const pg = testPostgres(process.env);
const stores: [string, 'sqlite' | 'postgres'][] = [['SQLite (one file)', 'sqlite']];
if (pg.available) stores.push(['PostgreSQL', 'postgres']);
else console.warn(`orchestrators-ha: PostgreSQL case skipped: ${pg.reason}`);
if (unavailable) console.warn(`orchestrators-ha: skipped: ${unavailable}`);

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

(unavailable ? describe.skip : describe).each(stores)('two orchestrators on %s', (_name, kind) => {
  let dir: TempDir;
  let schema: string | null = null;
  let layout: TopologyLayout;
  let nats: ManagedProcess;
  let orch: [ManagedProcess, ManagedProcess];
  let orchPorts: [number, number];
  let others: ManagedProcess[];
  let rest: RestClient;
  const jobs: string[] = [];
  /** Submits answered 503 (on the bus, not recorded yet). */
  const unrecorded: string[] = [];
  const tags = new Map<string, string>();
  /** The SIGSTOP case's marks (wall clock), and the jobs submitted during the pause, for its timeline. */
  const pause: { stoppedAt: number; ledAt: number; submittedAt: number; quarterAt: number; wokenAt: number; ids: string[] } = { stoppedAt: 0, ledAt: 0, submittedAt: 0, quarterAt: 0, wokenAt: 0, ids: [] };

  const leading = async (i: 0 | 1): Promise<boolean | null> => {
    try {
      const res = await fetch(`http://127.0.0.1:${orchPorts[i]}/metrics`, { signal: AbortSignal.timeout(1000) });
      const m = /^jobline_orchestrator_leader (\d)/m.exec(await res.text());
      return m ? m[1] === '1' : null;
    } catch {
      return null;
    }
  };
  const leaderIndex = async (): Promise<0 | 1> =>
    eventually(async () => {
      const [a, b] = await Promise.all([leading(0), leading(1)]);
      if (a && b) throw new Error('both orchestrators say they lead');
      return a ? 0 : b ? 1 : undefined;
    }, 15_000, 'a leader') as Promise<0 | 1>;

  /**
   * Submits a batch over REST. A 503 naming the job is accepted too: the command is on the bus
   * but not recorded yet (a frozen orchestrator had pulled it); it must be recorded later.
   */
  const submitBatch = async (tag: string): Promise<string[]> => {
    const ids = await Promise.all(
      Array.from({ length: BATCH }, async (_, i) => {
        const res = await rest.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: `sleep 0.2; echo ${tag}-${i}` }) });
        const body = (await res.json()) as { id?: string; jobId?: string };
        if (res.status === 201 && body.id) return body.id;
        if (res.status === 503 && body.jobId) {
          unrecorded.push(body.jobId);
          return body.jobId;
        }
        throw new Error(`submit: ${res.status} ${JSON.stringify(body)}`);
      }),
    );
    jobs.push(...ids);
    for (const id of ids) tags.set(id, tag);
    return ids;
  };
  const status = async (id: string): Promise<string | null> => {
    const res = await rest.request(`/v1/jobs/${id}`);
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`get ${id}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { status: string }).status;
  };
  const succeeded = async (ids: string[]) => (await Promise.all(ids.map(status))).filter((s) => s === 'succeeded').length;
  const allSucceeded = (ids: string[], timeoutMs: number, what: string) =>
    eventually(async () => (await succeeded(ids)) === ids.length, timeoutMs, what, 250);

  beforeAll(async () => {
    dir = tempDir();
    chmodSync(dir.path, 0o755);
    const d = (...p: string[]) => {
      const x = join(dir.path, ...p);
      mkdirSync(x, { recursive: true, mode: 0o755 });
      return x;
    };
    let eventStore = 'sqlite';
    if (kind === 'postgres') {
      schema = randomSchemaName('jl_ha_');
      eventStore = `${pg.url}${pg.url.includes('?') ? '&' : '?'}schema=${schema}`;
    }
    const shared = d('state');
    const [natsPort, natsHttpPort, api, grpc, o1, o2, executor] = await Promise.all(Array.from({ length: 7 }, () => freePort()));
    orchPorts = [o1, o2];
    layout = {
      root: dir.path,
      natsPort,
      natsHttpPort,
      natsPassword: `p${randomBytes(12).toString('hex')}`,
      acmeNatsPassword: `p${randomBytes(12).toString('hex')}`,
      eventStore,
      dataDirs: { api: kind === 'sqlite' ? shared : d('api'), orchestrator: kind === 'sqlite' ? shared : d('orchestrator'), packager: d('packager'), executor: d('executor'), 'executor-ssh': d('executor-ssh') },
      natsStoreDir: d('nats'),
      ports: { api, grpc, orchestrator: o1, packager: 0, executor, executorSsh: 0 },
      tokensFile: join(dir.path, 'tokens.json'),
      inventoryFile: join(dir.path, 'inventory.json'),
      timings: TEST_TIMINGS,
    };
    const token = randomBytes(24).toString('hex');
    writeFileSync(layout.tokensFile, JSON.stringify([{ sha256: sha256(token), owner: 'admin', admin: true }]));
    const logs = d('logs');
    const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir.path };
    nats = natsServerProcess(layout, base, join(logs, 'nats-server.log'));
    const service = (name: ServiceName, label: string, extra: Record<string, string>, readyPort: number) =>
      new ManagedProcess(label, process.execPath, [CLI, name], { ...base, ...serviceEnvironment(name, layout), ...extra }, join(logs, `${label}.log`), `http://127.0.0.1:${readyPort}/readyz`);
    const orchestrator = (i: 0 | 1) =>
      service('orchestrator', `orchestrator-${i + 1}`, { JOBLINE_LEADERSHIP: 'lease', JOBLINE_LEADER_LEASE_MS: String(LEADER_LEASE_MS), JOBLINE_ORCHESTRATOR_ID: `orch-${i + 1}`, JOBLINE_ORCHESTRATOR_HTTP_PORT: String(orchPorts[i]), JOBLINE_PACKAGER: 'false' }, orchPorts[i]);
    orch = [orchestrator(0), orchestrator(1)];
    others = [service('executor', 'executor', { JOBLINE_EXECUTOR_CAPACITY: '6' }, executor), service('api', 'api', {}, api)];
    const certs = (await import('node:child_process')).spawnSync(process.execPath, [CLI, 'certs', 'init', '--data-dir', layout.dataDirs.api], { env: base, encoding: 'utf8' });
    if (certs.status !== 0) throw new Error(`jobline certs init failed: ${certs.stderr}`);
    await nats.start();
    await orch[0].start();
    await orch[1].start();
    await Promise.all(others.map((p) => p.start()));
    rest = new RestClient(`http://127.0.0.1:${api}`, token);
  }, 120_000);

  afterAll(async () => {
    for (const p of [...(others ?? []).reverse(), ...(orch ?? []), nats]) await p?.stop().catch(() => undefined);
    if (schema) await dropSchema(pg.url, schema).catch(() => undefined);
    // The services' logs stay in .tmp for a look after a failure.
    if (dir) cpSync(join(dir.path, 'logs'), join(ROOT, '.tmp', `orchestrators-ha-${kind}`), { recursive: true });
    dir?.remove();
  }, 120_000);

  it('the first started leads, the second stands by', async () => {
    expect(await leaderIndex()).toBe(0);
    expect(await leading(1)).toBe(false);
    const ids = await submitBatch('warm');
    await allSucceeded(ids, 60_000, 'the first batch');
  }, 90_000);

  it('kill -9 of the leader under load: the standby leads within a lease; every job succeeds once', async () => {
    const from = await leaderIndex();
    const to = (1 - from) as 0 | 1;
    const ids = await submitBatch('kill');
    await eventually(async () => (await succeeded(ids)) >= BATCH / 4, 60_000, 'a quarter of the batch', 100);
    const t0 = performance.now();
    await orch[from].kill9();
    await eventually(() => leading(to), LEADER_LEASE_MS + 3000, `orchestrator-${to + 1} to lead`, 50);
    const takeoverMs = performance.now() - t0;
    console.log(`orchestrators-ha (${kind}): kill -9 of the leader → the standby led after ${Math.round(takeoverMs)} ms (lease ${LEADER_LEASE_MS} ms)`);
    expect(takeoverMs).toBeLessThan(LEADER_LEASE_MS + 1500);
    await allSucceeded(ids, 90_000, 'the batch after the kill');
    // Started again, it stands by.
    await orch[from].start();
    await new Promise((r) => setTimeout(r, 500));
    expect(await leading(from)).toBe(false);
    expect(await leaderIndex()).toBe(to);
  }, 180_000);

  it('SIGSTOP of the leader past its lease: the other takes over; the woken one is fenced and stands by', async () => {
    const from = await leaderIndex();
    const to = (1 - from) as 0 | 1;
    const ids = await submitBatch('pause');
    await eventually(async () => (await succeeded(ids)) >= BATCH / 4, 60_000, 'a quarter of the batch', 100);
    orch[from].signal('SIGSTOP');
    pause.stoppedAt = Date.now();
    try {
      await eventually(() => leading(to), LEADER_LEASE_MS + 3000, `orchestrator-${to + 1} to lead`, 50);
      pause.ledAt = Date.now();
      // The new leader schedules while the old one is frozen.
      const more = await submitBatch('while-paused');
      pause.submittedAt = Date.now();
      pause.ids = more;
      await eventually(async () => (await succeeded(more)) >= BATCH / 4, 60_000, 'a quarter of the jobs submitted during the pause', 100);
      pause.quarterAt = Date.now();
      console.log(`orchestrators-ha (${kind}): SIGSTOP → the other led after ${pause.ledAt - pause.stoppedAt} ms; ${BATCH} submitted after ${pause.submittedAt - pause.stoppedAt} ms; a quarter succeeded after ${pause.quarterAt - pause.stoppedAt} ms`);
    } finally {
      orch[from].signal('SIGCONT');
    }
    // Woken, it stands by at once (its clock says its lease ran out), and says so.
    await eventually(async () => (await leading(from)) === false, 3000, 'the woken one to stand by', 50);
    // Its clock fences it at once; the log line follows its first failed renewal (a round trip after it woke, behind what it held).
    await eventually(() => /no longer the leader/.test(readFileSync(orch[from].logFile, 'utf8')), 3000, 'the woken one to say it stands by', 50);
    expect(await leaderIndex()).toBe(to);
    const woken = Date.now();
    pause.wokenAt = woken;
    await allSucceeded(jobs, 120_000, 'every job');
    console.log(`orchestrators-ha (${kind}): after the SIGCONT (${woken - pause.stoppedAt} ms after the SIGSTOP) every job succeeded within ${Date.now() - woken} ms; ${unrecorded.length} submits so far answered 503`);
  }, 240_000);

  it('every history is whole: each job dispatched, started and completed once', async () => {
    let store: EventStore;
    let close: () => Promise<void>;
    if (kind === 'sqlite') {
      const s = new SqliteEventStore({ path: join(layout.dataDirs.orchestrator, 'events.db') });
      store = s;
      close = () => s.close();
    } else {
      const opened = openEventStore(layout.eventStore, join(dir.path, 'scratch'));
      store = opened.eventStore;
      close = () => opened.close();
    }
    try {
      const streams = await readJobStreams(store);
      // The SIGSTOP case's jobs, each event's time after the SIGSTOP (what held them up).
      const at = (e: { recordedAt: string } | undefined) => (e ? `${Date.parse(e.recordedAt) - pause.stoppedAt}` : '-');
      const timeline = pause.ids.map((id) => {
        const events = streams.get(id) ?? [];
        const first = (t: string) => events.find((e) => e.type === t);
        return { id, submitted: at(first('JobSubmitted')), dispatched: at(first('JobDispatched')), started: at(first('JobStarted')), completed: at(first('JobCompleted')) };
      });
      timeline.sort((a, b) => Number(a.completed) - Number(b.completed));
      if (process.env.JOBLINE_HA_TRACE) {
        const all = [...streams.values()].flat().filter((e) => Date.parse(e.recordedAt) >= pause.stoppedAt - 1500 && Date.parse(e.recordedAt) <= pause.wokenAt + 500);
        all.sort((a, b) => a.position - b.position);
        const m = (e: (typeof all)[number]) => e.metadata as { jobId: string; occurredAt: string; actor: string };
        console.log(`orchestrators-ha (${kind}): events around the pause (recorded, occurred, ms after the SIGSTOP):\n${all.map((e) => `  ${at(e)} ${Date.parse(m(e).occurredAt) - pause.stoppedAt} ${e.type} ${tags.get(m(e).jobId)} ${m(e).jobId.slice(0, 8)} ${m(e).actor}`).join('\n')}`);
      }
      console.log(`orchestrators-ha (${kind}): jobs submitted during the pause, ms after the SIGSTOP (submitted/dispatched/started/completed):\n${timeline.map((t) => `  ${t.id} ${t.submitted} ${t.dispatched} ${t.started} ${t.completed}`).join('\n')}`);
      const problems: string[] = [];
      for (const id of jobs) {
        const events = streams.get(id) ?? [];
        const v = verifyHistory(id, events);
        problems.push(...v.problems);
        const count = (t: string) => v.types.filter((x) => x === t).length;
        if (v.ends !== 1 || v.successes !== 1) problems.push(`job ${id}: ended ${v.ends}×, succeeded ${v.successes}× (${v.types.join(',')})`);
        if (count('JobDispatched') !== 1 || count('JobStarted') !== 1) problems.push(`job ${id}: dispatched ${count('JobDispatched')}×, started ${count('JobStarted')}× (${v.types.join(',')})`);
      }
      expect(jobs.length).toBe(4 * BATCH);
      expect(problems).toEqual([]);
    } finally {
      await close();
    }
  }, 60_000);
});
