import type { NatsConnection } from '@nats-io/nats-core';
import type { INestMicroservice } from '@nestjs/common';
import { join } from 'node:path';
import request from 'supertest';
import { subjects, type ExecutorHeartbeat, type JobView } from '../../../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../../libs/event-store/src';
import { connectNats } from '../../../../libs/messaging/src/connection';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../../libs/testing/src';
import type { Orchestrator } from '../../../orchestrator/src/orchestrator';
import { createOrchestratorApp } from '../../../orchestrator/src/orchestrator.module';
import { hashToken } from '../api-tokens';
import { createApiApp, type ApiApp } from '../api.module';
import { JobsProjection } from '../projections/jobs.projection';

const quiet = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };
const ALICE = 'alice-token-0123456789';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a text exposition (comments skipped); label values here carry no escaped quotes. */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with this name and (at least) these labels; undefined when there is none. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples match ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

describe('GET /metrics against real NATS, SQLite store, orchestrator and projection', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let store: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let orchestratorApp: INestMicroservice;
  let orchestrator: Orchestrator;
  let projection: JobsProjection;
  let api: ApiApp;
  let second: ApiApp;

  beforeAll(async () => {
    dir = tempDir('jobline-metrics-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'metrics-test' });
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
    ({ app: orchestratorApp, orchestrator } = await createOrchestratorApp({ eventStore: store, checkpoints, nc, logger: quiet }));
    projection = new JobsProjection({ path: join(dir.path, 'read-models.db') });
    const options = {
      nc,
      eventStore: store,
      projection,
      port: 0,
      logger: false as const,
      // Long enough that the test's one heartbeat stays alive however slow the machine.
      executorAliveMs: 600_000,
      tokens: [{ sha256: hashToken(ALICE), owner: 'alice' }],
    };
    api = await createApiApp(options);
    // A second app in the same process, on the same projection: its registry must not clash with the first's.
    second = await createApiApp({ ...options, ensureStreams: false });
  });

  afterAll(async () => {
    await second?.close();
    await api?.close();
    await orchestratorApp?.close();
    await orchestrator?.stop();
    await projection?.close();
    await nc?.drain();
    await store?.close();
    await checkpoints?.close();
    await server?.stop();
    dir?.remove();
  });

  const scrape = async (app: ApiApp) => {
    const res = await request(app.url).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    return { text: res.text, samples: parseSamples(res.text) };
  };
  const submit = async (): Promise<JobView> => {
    const res = await request(api.url)
      .post('/v1/jobs')
      .set('Authorization', `Bearer ${ALICE}`)
      .set('Content-Type', 'application/json')
      .send(JSON.stringify({ command: ['true'] }));
    expect(res.status).toBe(201);
    return res.body as JobView;
  };

  it('serves process and app metrics without a token, with every job status present', async () => {
    const { text, samples } = await scrape(api);
    expect(text).toMatch(/^# HELP jobline_process_cpu_user_seconds_total /m);
    expect(valueOf(samples, 'jobline_process_resident_memory_bytes') ?? valueOf(samples, 'jobline_nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    for (const status of ['pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out']) {
      expect(valueOf(samples, 'jobline_jobs', { status })).toBeGreaterThanOrEqual(0);
    }
    expect(valueOf(samples, 'jobline_projection_position')).toBeGreaterThanOrEqual(-1);
    expect([0, 1]).toContain(valueOf(samples, 'jobline_projection_live'));
    // Counts only: no job, owner or executor id is ever a label.
    expect(text).not.toMatch(/owner=|job_?id=|executor=/);
  });

  it('counts queued jobs, follows the projection, and times requests by route pattern', async () => {
    const jobs = [await submit(), await submit(), await submit()];
    await request(api.url).get(`/v1/jobs/${jobs[0].id}`).set('Authorization', `Bearer ${ALICE}`).expect(200);
    await request(api.url).get(`/v1/jobs/${jobs[1].id}`).expect(401);
    await request(api.url).get('/no/such/path').expect(404);

    // No executor: the orchestrator queues them and they stay queued.
    const { samples } = await eventually(async () => {
      const s = await scrape(api);
      return valueOf(s.samples, 'jobline_jobs', { status: 'queued' }) === 3 ? s : undefined;
    }, 15_000, 'jobline_jobs{status="queued"} 3');
    expect(valueOf(samples, 'jobline_jobs', { status: 'pending' })).toBe(0);
    expect(valueOf(samples, 'jobline_projection_live')).toBe(1);
    expect(valueOf(samples, 'jobline_projection_position')).toBe(projection.position);
    expect(projection.position).toBeGreaterThanOrEqual(5); // JobSubmitted + JobQueued per job, from position 0

    const count = (labels: Record<string, string>) => valueOf(samples, 'jobline_http_request_duration_seconds_count', labels);
    expect(count({ method: 'POST', route: '/v1/jobs', status: '201' })).toBe(3);
    expect(valueOf(samples, 'jobline_http_request_duration_seconds_bucket', { method: 'POST', route: '/v1/jobs', status: '201', le: '+Inf' })).toBe(3);
    expect(valueOf(samples, 'jobline_http_request_duration_seconds_sum', { method: 'POST', route: '/v1/jobs', status: '201' })).toBeGreaterThan(0);
    // The pattern, not the raw path: one series for every job id.
    expect(count({ method: 'GET', route: '/v1/jobs/:id', status: '200' })).toBe(1);
    expect(count({ method: 'GET', route: '/v1/jobs/:id', status: '401' })).toBe(1);
    expect(count({ method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    for (const s of samples) expect(s.labels.route ?? '').not.toContain(jobs[0].id);
  });

  it('sums the alive executors from their heartbeats', async () => {
    const jobs = [await submit(), await submit()];
    const hb: ExecutorHeartbeat = {
      executorId: 'metrics-exec-1',
      instanceId: 'i-1',
      kind: 'local',
      capacity: 4,
      running: jobs.map((j) => ({ jobId: j.id, attempt: 1 })),
      labels: {},
      sandbox: 'none',
      runtime: 'node',
      startedAt: new Date().toISOString(),
      sentAt: new Date().toISOString(),
    };
    const { samples } = await eventually(async () => {
      nc.publish(subjects.heartbeat(hb.executorId), JSON.stringify(hb));
      const s = await scrape(api);
      return valueOf(s.samples, 'jobline_executors', { state: 'alive' }) === 1 ? s : undefined;
    }, 15_000, 'jobline_executors{state="alive"} 1');
    expect(valueOf(samples, 'jobline_executors', { state: 'silent' })).toBe(0);
    expect(valueOf(samples, 'jobline_executor_capacity')).toBe(4);
    expect(valueOf(samples, 'jobline_executor_running')).toBe(2);
  });

  it('serves its own registry from a second app in the same process', async () => {
    const first = await scrape(api);
    await scrape(second); // counted once its response is finished, so seen by the next scrape
    const other = await scrape(second);
    // Same projection, so the same job counts; its own request histogram (POSTs went to the first app only).
    expect(valueOf(other.samples, 'jobline_jobs', { status: 'queued' })).toBe(valueOf(first.samples, 'jobline_jobs', { status: 'queued' }));
    expect(valueOf(other.samples, 'jobline_http_request_duration_seconds_count', { method: 'POST', route: '/v1/jobs', status: '201' })).toBeUndefined();
    expect(valueOf(first.samples, 'jobline_http_request_duration_seconds_count', { method: 'POST', route: '/v1/jobs', status: '201' })).toBe(5);
    expect(valueOf(other.samples, 'jobline_http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(other.text).toMatch(/^jobline_process_cpu_user_seconds_total /m);
  });
});
