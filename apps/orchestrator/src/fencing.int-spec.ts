import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import {
  ClaimReplySchema,
  LeaseReplySchema,
  STREAMS,
  decodeJobEvent,
  jobStreamName,
  subjects,
  type AttemptReport,
  type ClaimReply,
  type ClaimRequest,
  type ExecutorHeartbeat,
  type JobEvent,
  type LeaseReply,
  type RunAttemptMessage,
  type StopAttemptMessage,
} from '../../../libs/contracts/src';
import type { SqliteEventStore } from '../../../libs/event-store/src';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { eventually, startTestBus, type TestBus } from '../../../libs/testing/src';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';

/**
 * The orchestrator's side of fencing, against a real nats-server and SQLite store, with the
 * executor's side played by hand over NATS: claims, lease replies, stop orders for lost
 * attempts, start deadlines, late and stale reports, suspect executors, and a scheduler that
 * does not count executors' silence while its own bus connection is down.
 */

const LEASE_MS = 2000;

describe('orchestrator fencing: claims, leases, stop orders and reports', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: SqliteEventStore;
  let publisher: JetStreamPublisher;
  const beating: ReturnType<typeof setInterval>[] = [];

  beforeAll(async () => {
    ({ nc, jsm, publisher, store } = bus = await startTestBus('fencing-test', { dirPrefix: 'jobline-fencing-', connection: { reconnectTimeWait: 100, reconnectJitter: 50 } }));
    orch = await startTestOrchestrator(bus, { leaseMs: LEASE_MS, heartbeatMs: 100 });
  });

  afterEach(() => {
    for (const t of beating.splice(0)) clearInterval(t);
  });

  afterAll(async () => {
    await orch?.stop();
    await bus?.stop();
  });

  // ---- the executor's side, by hand ----------------------------------------------------

  interface FakeExecutor {
    id: string;
    instanceId: string;
    /** When this instance started (a restart makes a new instanceId and startedAt). */
    startedAt: Date;
    running: { jobId: string; attempt: number }[];
    runs: RunAttemptMessage[];
    stops: StopAttemptMessage[];
    leases: LeaseReply[];
    /** One heartbeat as a request; resolves with the lease reply (or null when none came). */
    beat(): Promise<LeaseReply | null>;
    /** Heartbeats every 100 ms until the test ends (or stop()). */
    keepBeating(): () => void;
  }

  let seq = 0;
  function fakeExecutor(capacity = 2): FakeExecutor {
    const id = `fake-${process.pid}-${++seq}`;
    const ex: FakeExecutor = {
      id,
      instanceId: randomUUID(),
      startedAt: new Date(),
      running: [],
      runs: [],
      stops: [],
      leases: [],
      async beat() {
        const hb: ExecutorHeartbeat = {
          executorId: id,
          instanceId: ex.instanceId,
          kind: 'local',
          capacity,
          running: ex.running,
          // Jobs name their fake executor by this label, so no other test's executor takes them.
          labels: { fake: id },
          sandbox: 'none',
          runtime: 'test',
          startedAt: ex.startedAt.toISOString(),
          sentAt: new Date().toISOString(),
          heartbeatMs: 100,
        };
        try {
          const m = await nc.request(subjects.heartbeat(id), JSON.stringify(hb), { timeout: 1000 });
          const lease = LeaseReplySchema.parse(m.json());
          ex.leases.push(lease);
          return lease;
        } catch {
          return null;
        }
      },
      keepBeating() {
        const t = setInterval(() => void ex.beat(), 100);
        beating.push(t);
        return () => clearInterval(t);
      },
    };
    nc.subscribe(subjects.work(id), { callback: (_e, m) => void ex.runs.push(m.json<RunAttemptMessage>()) });
    nc.subscribe(subjects.control(id), { callback: (_e, m) => void ex.stops.push(m.json<StopAttemptMessage>()) });
    return ex;
  }

  function claimOf(run: RunAttemptMessage, executorId: string): ClaimRequest {
    return { kind: 'started', jobId: run.jobId, attempt: run.attempt, executorId, startedAt: new Date().toISOString(), sandbox: 'none' };
  }

  async function claim(body: unknown, subject: string): Promise<ClaimReply> {
    const m = await nc.request(subject, JSON.stringify(body), { timeout: 5000 });
    return ClaimReplySchema.parse(m.json());
  }

  async function report(r: AttemptReport): Promise<void> {
    await publisher.publish(subjects.report(r.jobId), r, { msgId: `${r.jobId}.${r.attempt}.${r.kind}` });
  }

  const finishedOf = (run: RunAttemptMessage, executorId: string, exitCode = 0): AttemptReport => ({
    kind: 'finished',
    jobId: run.jobId,
    attempt: run.attempt,
    executorId,
    exitCode,
    signal: null,
    oomKilled: false,
    durationMs: 5,
    finishedAt: new Date().toISOString(),
    usage: null,
    logBytes: 0,
  });

  async function submit(ex: FakeExecutor, spec: Record<string, unknown> = { command: 'true' }): Promise<string> {
    const jobId = randomUUID();
    await publisher.publish(subjects.submit('alice'), { jobId, spec: { ...spec, target: { labels: { fake: ex.id } } } }, { msgId: jobId });
    return jobId;
  }
  const history = async (jobId: string): Promise<JobEvent[]> => (await store.readStream(jobStreamName(jobId))).map((r) => decodeJobEvent(r));
  const types = async (jobId: string) => (await history(jobId)).map((e) => e.type);
  const runFor = (ex: FakeExecutor, jobId: string) => eventually(() => ex.runs.find((r) => r.jobId === jobId), 10_000, `the run order of ${jobId}`);

  // ---- claims ----------------------------------------------------------------------

  it('grants a claim once JobStarted is stored, grants it again when repeated, and records one JobStarted', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toEqual({ granted: true });
    // Stored before the answer: whoever reads the history after the grant sees the start.
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted']);
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toEqual({ granted: true });
    expect((await types(jobId)).filter((t) => t === 'JobStarted')).toHaveLength(1);
    // Listed as current on its executor until it finishes, then no longer.
    const lease = await ex.beat();
    expect(lease?.current).toEqual([{ jobId, attempt: 1 }]);
    expect(lease).toMatchObject({ executorId: ex.id, instanceId: ex.instanceId, leaseMs: LEASE_MS });
    await report(finishedOf(run, ex.id));
    await eventually(async () => (await types(jobId)).includes('JobCompleted'), 10_000, 'completion');
    expect((await ex.beat())?.current).toEqual([]);
    // A claim of the finished attempt must not let it run again.
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale' });
  });

  it('sets the start deadline of a run order: dispatch time plus the lease', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    expect(Date.parse(run.startBy!) - Date.parse(run.dispatchedAt)).toBe(LEASE_MS);
    await claim(claimOf(run, ex.id), subjects.claim(jobId));
    await report(finishedOf(run, ex.id));
  });

  it('refuses a claim of a started attempt from another executor (judged on the same read as the start), and grants its own executor again', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toEqual({ granted: true });
    expect(await claim(claimOf(run, 'someone-else'), subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale', message: expect.stringContaining(`dispatched to ${ex.id}`) });
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toEqual({ granted: true });
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted']);
    await report(finishedOf(run, ex.id));
  });

  it('refuses claims that are not current or not well formed, recording nothing', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    expect(await claim(claimOf(run, 'someone-else'), subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale' });
    expect(await claim({ ...claimOf(run, ex.id), attempt: 2 }, subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale' });
    const unknown = randomUUID();
    expect(await claim({ ...claimOf(run, ex.id), jobId: unknown }, subjects.claim(unknown))).toMatchObject({ granted: false, code: 'not_found' });
    expect(await claim({ kind: 'started', jobId }, subjects.claim(jobId))).toMatchObject({ granted: false, code: 'invalid_argument' });
    const other = randomUUID();
    expect(await claim(claimOf(run, ex.id), subjects.claim(other))).toMatchObject({ granted: false, code: 'invalid_argument' });
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched']);
    await claim(claimOf(run, ex.id), subjects.claim(jobId));
    await report(finishedOf(run, ex.id));
  });

  // ---- leases, lost attempts, stop orders --------------------------------------------

  it('declares the attempts of a silent executor lost at the lease, orders their stop, and refuses their claims', async () => {
    const ex = fakeExecutor();
    const stop = ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    stop();
    await eventually(async () => (await types(jobId)).includes('JobLost'), LEASE_MS + 5000, 'the attempt to be lost');
    // The executor (paused, cut off) is told to stop it, for when it hears again.
    const order = await eventually(() => ex.stops.find((s) => s.jobId === jobId), 5000, 'the stop order');
    expect(order).toEqual({ kind: 'stop', jobId, attempt: 1, reason: 'lost' });
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale' });
    // Back from its pause: its lease no longer lists the attempt.
    expect((await ex.beat())?.current).toEqual([]);
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobLost', 'JobFailed']);
  });

  it('sends no new work to an executor silent for three heartbeats, long before its lease', async () => {
    const ex = fakeExecutor();
    await ex.beat();
    await new Promise((r) => setTimeout(r, 500)); // > 3 × 100 ms, < the 2 s lease
    const jobId = await submit(ex);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued']);
    expect(ex.runs).toEqual([]);
    // Heard again: it gets the job.
    ex.keepBeating();
    const run = await runFor(ex, jobId);
    await claim(claimOf(run, ex.id), subjects.claim(jobId));
    await report(finishedOf(run, ex.id));
  });

  it('answers a new instance only once its predecessor\'s attempts are recorded lost', async () => {
    const ex = fakeExecutor();
    const stop = ex.keepBeating();
    const jobId = await submit(ex);
    const run = await runFor(ex, jobId);
    stop();
    // Restarted: the new instance holds nothing of the old one's attempts.
    ex.instanceId = randomUUID();
    ex.startedAt = new Date();
    const lease = await ex.beat();
    expect(lease?.current).toEqual([]);
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobLost', 'JobFailed']);
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toMatchObject({ granted: false, code: 'stale' });
  });

  // ---- reports -----------------------------------------------------------------------

  it('records a late finished report of the current attempt, and fences a stale one (terminated, not redelivered)', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex, { command: 'true', retry: { maxAttempts: 2, backoffSeconds: 0 } });
    const first = await runFor(ex, jobId);
    await claim(claimOf(first, ex.id), subjects.claim(jobId));
    // Late (longer than the lease) but current: its executor kept heart-beating.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    await report(finishedOf(first, ex.id, 3));
    await eventually(async () => (await types(jobId)).includes('JobRetryScheduled'), 10_000, 'the retry');
    const second = await eventually(() => ex.runs.find((r) => r.jobId === jobId && r.attempt === 2), 10_000, 'the second attempt');
    await claim(claimOf(second, ex.id), subjects.claim(jobId));
    // A stale report (attempt 1 again, past the duplicate window's id) changes nothing.
    const before = await types(jobId);
    await publisher.publish(subjects.report(jobId), finishedOf(first, ex.id, 0), { msgId: randomUUID() });
    await eventually(async () => {
      const ci = await jsm.consumers.info(STREAMS.reports, 'orchestrator-reports');
      return ci.num_ack_pending === 0 && ci.num_pending === 0;
    }, 10_000, 'the stale report to be settled');
    expect(await types(jobId)).toEqual(before);
    const ci = await jsm.consumers.info(STREAMS.reports, 'orchestrator-reports');
    expect(ci.num_redelivered).toBe(0);
    await report(finishedOf(second, ex.id, 0));
    await eventually(async () => (await types(jobId)).at(-1) === 'JobCompleted', 10_000, 'completion');
    const completed = (await history(jobId)).filter((e) => e.type === 'JobCompleted');
    expect(completed.map((e) => (e.data as { attempt: number; exitCode: number }).exitCode)).toEqual([3, 0]);
  });

  // ---- the scheduler's own bus connection ---------------------------------------------

  it('does not count executors\' silence while its own bus connection is down, and gives every executor a fresh lease after', async () => {
    const ex = fakeExecutor();
    ex.keepBeating();
    const jobId = await submit(ex, { command: 'sleep 60' });
    const run = await runFor(ex, jobId);
    expect(await claim(claimOf(run, ex.id), subjects.claim(jobId))).toEqual({ granted: true });
    ex.running.push({ jobId, attempt: 1 });
    await bus.stopServer();
    await new Promise((r) => setTimeout(r, 2 * LEASE_MS + 500)); // silent past the lease, as far as anyone could tell
    await bus.startServer();
    const lease = await eventually(async () => (await ex.beat()) ?? undefined, 15_000, 'a lease reply after the outage');
    expect(lease.current).toEqual([{ jobId, attempt: 1 }]);
    await new Promise((r) => setTimeout(r, LEASE_MS));
    expect(await types(jobId)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted']);
    await report(finishedOf(run, ex.id));
    await eventually(async () => (await types(jobId)).includes('JobCompleted'), 15_000, 'completion');
  });
});
