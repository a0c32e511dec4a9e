import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { JobView } from '../../libs/contracts/src';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { RestClient, quietLogger } from './support';

/**
 * The journeys of issue 2, as a user makes them: REST in, a real nats-server, the SQLite
 * event store, the orchestrator and a local executor running real processes.
 */
describe('core journeys over REST (jobline dev stack in-process)', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: RestClient;

  beforeAll(async () => {
    dir = tempDir();
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), apiPort: 0, executorCapacity: 4, graceMs: 1000, logger: quietLogger });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('a failing command ends failed with its exit code, both output lines and its history in order', async () => {
    const job = await api.submit({ command: "sh -c 'echo hello; echo oops >&2; exit 3'" });
    expect(job.status).toMatch(/pending|queued|running|failed/);
    const done = await api.finished(job.id);
    expect(done).toMatchObject({ status: 'failed', exitCode: 3, attempt: 1 });
    const log = await api.log(job.id);
    expect(log).toContain('hello\n');
    expect(log).toContain('oops\n');
    expect(await api.log(job.id, '?stream=stdout')).toBe('hello\n');
    expect(await api.log(job.id, '?stream=stderr')).toBe('oops\n');
    const events = await api.events(job.id);
    expect(events.map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    for (let i = 1; i < events.length; i++) expect(events[i].position).toBeGreaterThan(events[i - 1].position);
    expect(events[4].data).toMatchObject({ exitCode: 3 });
  });

  it('a cancelled `sleep 300` ends cancelled within seconds and leaves no process', async () => {
    // `sleep 300.<n>`: the same sleep, with a command line no other test's process has.
    const duration = `300.${Math.floor(Math.random() * 1e6)}`;
    const job = await api.submit({ command: ['sleep', duration] });
    await eventually(async () => (await api.job(job.id)).status === 'running', 10_000, 'running');
    const started = Date.now();
    const res = await api.request(`/v1/jobs/${job.id}/cancel`, { method: 'POST', body: JSON.stringify({ reason: 'superseded by a newer build' }), headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(202);
    const done = await api.finished(job.id, 10_000);
    expect(done.status).toBe('cancelled');
    expect(done.reason).toBe('cancelled: superseded by a newer build');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(spawnSync('pgrep', ['-fx', `sleep ${duration}`]).stdout.toString()).toBe('');
    // Cancelling it again: it is finished.
    expect((await api.request(`/v1/jobs/${job.id}/cancel`, { method: 'POST' })).status).toBe(409);
  });

  it('timeoutSeconds 1 on `sleep 30` ends timed_out; its view then has the log bytes and usage of the stopped attempt', async () => {
    const job = await api.submit({ command: 'echo before the timeout; exec sleep 30', timeoutSeconds: 1 });
    const done = await api.finished(job.id, 15_000);
    expect(done.status).toBe('timed_out');
    expect((await api.events(job.id)).map((e) => e.type)).toContain('JobTimedOut');
    const log = await (await api.request(`/v1/jobs/${job.id}/logs`)).text();
    expect(log).toBe('before the timeout\n');
    const view = await eventually(async () => {
      const v = await api.job(job.id);
      return v.logBytes > 0 ? v : undefined;
    }, 15_000, 'the stopped attempt in the view');
    expect(view).toMatchObject({ status: 'timed_out', logBytes: Buffer.byteLength(log), signal: 'SIGTERM' });
    expect(view.usage).not.toBeNull();
  });

  it('the same Idempotency-Key twice gives one job', async () => {
    const key = `deploy-${randomUUID()}`;
    const first = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'echo once' }), headers: { 'idempotency-key': key } });
    expect(first.status).toBe(201);
    const second = await api.request('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'echo once' }), headers: { 'idempotency-key': key } });
    expect(second.status).toBe(200);
    const [a, b] = [(await first.json()) as JobView, (await second.json()) as JobView];
    expect(b.id).toBe(a.id);
    await api.finished(a.id);
    expect((await api.events(a.id)).filter((e) => e.type === 'JobSubmitted')).toHaveLength(1);
  });

  it.each([
    ['malformed JSON', '{"command": "echo hi"'],
    ['an unknown field', JSON.stringify({ command: 'echo hi', colour: 'blue' })],
    ['a wrong type', JSON.stringify({ command: 'echo hi', timeoutSeconds: 'soon' })],
    ['an empty command', JSON.stringify({ command: '' })],
    ['an empty argv', JSON.stringify({ command: [] })],
    ['a body over the size limit', JSON.stringify({ command: 'echo hi', env: { BIG: 'x'.repeat(2 * 1024 * 1024) } })],
  ])('%s: 400 with a problem detail, and no event written', async (_what, body) => {
    const head = await stack.eventStore.headPosition();
    const res = await api.request('/v1/jobs', { method: 'POST', body });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
    const problem = (await res.json()) as { status: number; title: unknown; detail: unknown };
    expect(problem).toMatchObject({ status: 400 });
    expect(typeof problem.title).toBe('string');
    expect(typeof problem.detail).toBe('string');
    await new Promise((r) => setTimeout(r, 200));
    expect(await stack.eventStore.headPosition()).toBe(head);
  });

  it("the api's /metrics has the executor thread's slots, asked of it at the scrape", async () => {
    const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    expect(metrics).toMatch(/^jobline_executor_slots 4$/m);
    expect(metrics).toMatch(/^jobline_executor_slots_busy \d+$/m);
  });

  it('the live read model equals one rebuilt from position 0', async () => {
    const { JobsProjection } = await import('../../apps/api/src/projections/jobs.projection');
    const head = await stack.eventStore.headPosition();
    await stack.projection.waitForPosition(head, 10_000);
    const rebuilt = await JobsProjection.rebuild(stack.eventStore, join(dir.path, 'rebuilt.db'));
    try {
      const again = rebuilt.dump();
      expect(again.position).toBeGreaterThanOrEqual(head);
      // Every job of this suite has finished, so the live projection reaches the same position.
      await expect(stack.projection.waitForPosition(again.position, 10_000)).resolves.toBe(true);
      expect(again).toEqual(stack.projection.dump());
    } finally {
      await rebuilt.close();
    }
  });
});

describe('200 jobs at once, mixed priorities, one slot', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: RestClient;

  beforeAll(async () => {
    dir = tempDir();
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), apiPort: 0, executorCapacity: 1, logger: quietLogger });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('starts every high job before any low job queued after it; all 200 finish; nothing is lost', async () => {
    const priorities = ['low', 'normal', 'high'] as const;
    const submitted = await Promise.all(
      Array.from({ length: 200 }, (_, i) => api.submit({ command: ['true'], priority: priorities[(i * 7) % 3] })),
    );
    expect(new Set(submitted.map((j) => j.id)).size).toBe(200);
    // One poll of the counts for all 200 (200 loops polling each job every 20 ms would take the CPU the one slot needs).
    await eventually(
      async () => {
        const stats = (await (await api.request('/v1/stats')).json()) as { byStatus: Record<string, number> };
        return ['succeeded', 'failed', 'cancelled', 'timed_out'].reduce((n, s) => n + (stats.byStatus[s] ?? 0), 0) >= 200;
      },
      150_000,
      'all 200 jobs to finish',
      250,
    );
    const done = await Promise.all(submitted.map((j) => api.finished(j.id, 10_000)));
    expect(done.every((j) => j.status === 'succeeded')).toBe(true);

    // Order facts from the history: when each job was queued and when it started.
    const facts = await Promise.all(
      submitted.map(async (j) => {
        const ev = await api.events(j.id);
        return { id: j.id, priority: j.priority, queued: ev.find((e) => e.type === 'JobQueued')!.position, started: ev.find((e) => e.type === 'JobStarted')!.position };
      }),
    );
    const highs = facts.filter((f) => f.priority === 'high');
    const lows = facts.filter((f) => f.priority === 'low');
    let pairs = 0;
    for (const h of highs) {
      for (const l of lows) {
        if (l.queued < h.queued) continue;
        pairs++;
        expect({ high: h.id, low: l.id, highStartedFirst: h.started < l.started }).toEqual({ high: h.id, low: l.id, highStartedFirst: true });
      }
    }
    expect(pairs).toBeGreaterThan(1000);
    const list = (await (await api.request('/v1/jobs?limit=100')).json()) as { total: number };
    expect(list.total).toBe(200);
  }, 240_000);
});
