import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { headers as natsHeaders, type Msg, type NatsConnection } from '@nats-io/nats-core';
import { jobStreamName, subjects } from '../../libs/contracts/src';
import { openEventStore } from '../../libs/event-store/src';
import { connectNats } from '../../libs/messaging/src/connection';
import { tracingStarted } from '../../libs/service/src';
import { tracingActive } from '../../libs/messaging/src/trace-context';
import { eventually, freePort, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { certsInit } from '../../apps/cli/src/certs/dev-pki';
import { threeCommitRepo } from '../../apps/packager/src/testing/git-repo';
import { DEV_OWNER, startDevStack } from '../../apps/cli/src/dev-stack';
import { RestClient, quietLogger } from './support';

/**
 * OpenTelemetry across every hop, for real: an OTLP/HTTP receiver in the test, `jobline dev`
 * (built, in its own process) exporting to it through the standard OTEL_* variables (OTLP
 * JSON, then the default protobuf), jobs submitted over REST and over NATS with an
 * integration's own traceparent; and with tracing off (in-process), no SDK, nothing sent.
 * (The exporter loads node:http with a dynamic import(), which Jest's VM refuses: that is why
 * the exporting stack runs as a real process, as deployed.)
 */

const ROOT = resolve(__dirname, '../..');
const CLI = join(ROOT, 'dist/apps/cli/src/main.js');

interface DevProcess {
  url: string;
  grpcAddress: string;
  token: string;
  dataDir: string;
  nats: RunningNatsServer;
  nc: NatsConnection;
  output: () => string;
  /** SIGTERM and wait for the exit (its last spans are flushed on the way). */
  stop(): Promise<number | null>;
}

/** `jobline dev` as a user starts it: the built CLI, configuration in the environment only. */
async function startDevProcess(dir: string, env: Record<string, string>): Promise<DevProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p tsconfig.build.json\` first`);
  const nats = await startNatsServer({ storeDir: join(dir, 'nats') });
  const [port, grpcPort] = await Promise.all([freePort(), freePort()]);
  const dataDir = join(dir, 'data');
  await certsInit(dataDir);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('JOBLINE_') && !k.startsWith('OTEL_')));
  const child: ChildProcess = spawn(process.execPath, [CLI, 'dev'], {
    cwd: ROOT,
    env: { ...clean, JOBLINE_DATA_DIR: dataDir, JOBLINE_NATS_URL: nats.url, JOBLINE_API_PORT: String(port), JOBLINE_GRPC_PORT: String(grpcPort), JOBLINE_EXECUTOR_CAPACITY: '2', JOBLINE_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await eventually(async () => {
      if (child.exitCode !== null) throw new Error(`jobline dev exited ${child.exitCode}:\n${out}`);
      if (!existsSync(join(dataDir, 'dev-token'))) return false;
      return (await fetch(`${url}/readyz`).catch(() => null))?.status === 200;
    }, 30_000, 'jobline dev to be ready');
  } catch (err) {
    child.kill('SIGKILL');
    await nats.stop();
    throw err;
  }
  const nc = await connectNats({ servers: [nats.url], name: 'tracing-test' });
  return {
    url,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    token: readFileSync(join(dataDir, 'dev-token'), 'utf8').trim(),
    dataDir,
    nats,
    nc,
    output: () => out,
    stop: async () => {
      await nc.close();
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      await nats.stop();
      return code;
    },
  };
}

interface ReceivedSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

interface Receiver {
  url: string;
  spans: ReceivedSpan[];
  requests: { contentType: string; body: Buffer }[];
  close(): Promise<void>;
}

type AnyValue = { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } };
const valueOf = (v: AnyValue): unknown =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue ?? v.arrayValue?.values?.map(valueOf);
const attrs = (list: { key: string; value: AnyValue }[] | undefined) => Object.fromEntries((list ?? []).map((a) => [a.key, valueOf(a.value)]));

/** A tiny OTLP/HTTP collector: POST /v1/traces, JSON bodies decoded, every body kept. */
async function startReceiver(): Promise<Receiver> {
  const spans: ReceivedSpan[] = [];
  const requests: Receiver['requests'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const body = Buffer.concat(chunks);
      const contentType = String(req.headers['content-type'] ?? '');
      requests.push({ contentType, body });
      if (contentType.startsWith('application/json')) {
        const doc = JSON.parse(body.toString('utf8')) as {
          resourceSpans: { resource: { attributes: { key: string; value: AnyValue }[] }; scopeSpans: { scope: { name: string }; spans: Omit<ReceivedSpan, 'service' | 'scope' | 'attributes'> & { attributes?: { key: string; value: AnyValue }[] }[] }[] }[];
        };
        for (const rs of doc.resourceSpans) {
          const service = String(attrs(rs.resource.attributes)['service.name']);
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans as unknown as (ReceivedSpan & { attributes?: { key: string; value: AnyValue }[] })[]) {
              spans.push({ service, scope: ss.scope.name, traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId ?? '', name: s.name, kind: s.kind, attributes: attrs(s.attributes as never) });
            }
          }
        }
      }
      res.writeHead(200, { 'content-type': contentType || 'application/json' }).end(contentType.startsWith('application/json') ? '{}' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** The spans of one trace, once it holds every hop of a finished job (the last relay publish is exported last). */
function traceOf(receiver: Receiver, traceId: string): ReceivedSpan[] {
  return receiver.spans.filter((s) => s.traceId === traceId);
}

function byName(trace: ReceivedSpan[], service: string, name: string): ReceivedSpan[] {
  return trace.filter((s) => s.service === service && s.name === name);
}

/**
 * Every hop's span has arrived: the last relay publish and the executor's attempt (exported apart,
 * in either order) and, for a job submitted to the api, the api's server span. That span ends when
 * the api's read model has the job, which for a tiny job can be after the job ended, so its batch
 * can reach the receiver after the job's last hop.
 */
function complete(trace: ReceivedSpan[], entry: 'api' | 'outside' = 'api'): boolean {
  const hops = byName(trace, 'jobline-orchestrator', 'publish JobCompleted').length > 0 && byName(trace, 'jobline-executor', 'attempt').length > 0;
  return hops && (entry === 'outside' || trace.some((s) => s.service === 'jobline-api' && s.kind === SPAN_KIND.SERVER));
}

/** A job submitted on NATS is visible over REST once the api's read model has it. */
function finishedSoon(api: RestClient, jobId: string) {
  return eventually(async () => {
    const res = await api.request(`/v1/jobs/${jobId}`);
    if (res.status === 404) return undefined;
    const j = (await res.json()) as { status: string };
    return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.status) ? j : undefined;
  }, 30_000, `job ${jobId} to finish`);
}

/** Every span's parent is in the trace, except the roots named. */
function orphans(trace: ReceivedSpan[], allowedParents: string[] = []): ReceivedSpan[] {
  const ids = new Set(trace.map((s) => s.spanId));
  return trace.filter((s) => s.parentSpanId !== '' && !ids.has(s.parentSpanId) && !allowedParents.includes(s.parentSpanId));
}

const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 };

/** The hops a finished job's trace must hold, each a child of the hop before it. */
function expectHops(trace: ReceivedSpan[], jobId: string, entry: ReceivedSpan | string, owner: string = DEV_OWNER): void {
  const parentOf = (s: ReceivedSpan) => trace.find((p) => p.spanId === s.parentSpanId);
  const entryId = typeof entry === 'string' ? entry : entry.spanId;
  const consume = byName(trace, 'jobline-orchestrator', 'process jobline.cmd.>');
  expect(consume).toHaveLength(1);
  expect(consume[0]).toMatchObject({ kind: SPAN_KIND.CONSUMER, parentSpanId: entryId });
  const submit = byName(trace, 'jobline-orchestrator', 'job SubmitJob')[0];
  expect(submit).toMatchObject({ parentSpanId: consume[0].spanId, attributes: expect.objectContaining({ 'jobline.job.id': jobId, 'jobline.owner': owner }) });
  const published = byName(trace, 'jobline-orchestrator', 'publish JobSubmitted')[0];
  expect(published).toMatchObject({ kind: SPAN_KIND.PRODUCER, parentSpanId: submit.spanId, attributes: expect.objectContaining({ 'jobline.job.id': jobId }) });
  // The scheduler's dispatch continues the job's trace from its newest stored event.
  const dispatch = byName(trace, 'jobline-orchestrator', 'job DispatchJob')[0];
  expect(dispatch).toBeDefined();
  const relayed = byName(trace, 'jobline-orchestrator', 'publish JobDispatched')[0];
  expect(relayed.parentSpanId).toBe(dispatch.spanId);
  const attempt = byName(trace, 'jobline-executor', 'attempt')[0];
  expect(attempt).toMatchObject({
    kind: SPAN_KIND.CONSUMER,
    scope: 'jobline-executor',
    parentSpanId: relayed.spanId,
    attributes: expect.objectContaining({ 'jobline.job.id': jobId, 'jobline.attempt': 1, 'jobline.owner': owner, 'jobline.executor.id': 'local', 'jobline.exit_code': 0 }),
  });
  // The claim and the finished report are children of the attempt; each records its event in the same trace.
  const claim = byName(trace, 'jobline-orchestrator', 'process jobline.claim.*')[0];
  expect(claim).toMatchObject({ parentSpanId: attempt.spanId, attributes: expect.objectContaining({ 'jobline.claim.granted': true }) });
  expect(parentOf(byName(trace, 'jobline-orchestrator', 'job RecordStarted')[0])).toBe(claim);
  const report = byName(trace, 'jobline-orchestrator', 'process jobline.report.*')[0];
  expect(report.parentSpanId).toBe(attempt.spanId);
  const finished = byName(trace, 'jobline-orchestrator', 'job RecordFinished')[0];
  expect(finished.parentSpanId).toBe(report.spanId);
  expect(byName(trace, 'jobline-orchestrator', 'publish JobCompleted')[0].parentSpanId).toBe(finished.spanId);
  // Nothing secret: no span carries the job's environment.
  for (const s of trace) expect(JSON.stringify(s.attributes)).not.toContain('TOP_SECRET_VALUE');
}

describe('OpenTelemetry traces across every hop (jobline dev process, OTLP/HTTP JSON)', () => {
  let dir: TempDir;
  let dev: DevProcess;
  let api: RestClient;
  let receiver: Receiver;
  const logMessages: Msg[] = [];
  const jobs: string[] = [];

  beforeAll(async () => {
    receiver = await startReceiver();
    dir = tempDir();
    dev = await startDevProcess(dir.path, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '50',
      // The packaged job's source is a local repository.
      JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'true',
    });
    api = new RestClient(dev.url, dev.token);
    dev.nc.subscribe('jobline.logs.*', { callback: (_err, m) => void logMessages.push(m) });
  });
  afterAll(async () => {
    await dev?.stop();
    await receiver?.close();
    dir?.remove();
  });

  it('a job submitted over REST is one trace: api request → command → stored events → relay → executor attempt → report → completion', async () => {
    const job = await api.submit({ command: 'echo traced; echo also >&2', env: { TOKEN: 'TOP_SECRET_VALUE' } });
    jobs.push(job.id);
    expect((await api.finished(job.id)).status).toBe('succeeded');
    const trace = await eventually(() => {
      const attempt = receiver.spans.find((s) => s.name === 'attempt' && s.attributes['jobline.job.id'] === job.id);
      const t = attempt ? traceOf(receiver, attempt.traceId) : [];
      return complete(t) ? t : undefined;
    }, 15_000, 'the whole trace of the REST job');
    // One root: the api's server span of the POST; everything else hangs under it.
    const roots = trace.filter((s) => s.parentSpanId === '');
    expect(roots).toHaveLength(1);
    expect(roots[0]).toMatchObject({
      service: 'jobline-api',
      name: 'POST /v1/jobs',
      kind: SPAN_KIND.SERVER,
      attributes: expect.objectContaining({ 'http.request.method': 'POST', 'http.route': '/v1/jobs', 'http.response.status_code': 201 }),
    });
    expect(orphans(trace)).toEqual([]);
    expectHops(trace, job.id, roots[0]);
    expect(new Set(trace.map((s) => s.service))).toEqual(new Set(['jobline-api', 'jobline-orchestrator', 'jobline-executor']));

    // The log chunks carry the attempt's context.
    const attempt = byName(trace, 'jobline-executor', 'attempt')[0];
    const chunks = logMessages.filter((m) => m.subject === subjects.logs(job.id));
    expect(chunks.length).toBeGreaterThan(0);
    for (const c of chunks) expect(c.headers?.get('traceparent')).toBe(`00-${attempt.traceId}-${attempt.spanId}-01`);
    const verify = await api.request('/v1/verify');
    expect(verify.status).toBe(200);
    expect(await verify.json()).toMatchObject({ intact: true });
  });

  it('a job submitted on NATS continues the traceparent the integration put on its command', async () => {
    const traceId = randomBytes(16).toString('hex');
    const parentId = randomBytes(8).toString('hex');
    const jobId = randomUUID();
    jobs.push(jobId);
    const h = natsHeaders();
    h.set('traceparent', `00-${traceId}-${parentId}-01`);
    h.set('tracestate', 'acme=integration-7');
    await jetstream(dev.nc).publish(subjects.submit(DEV_OWNER), JSON.stringify({ jobId, spec: { command: 'true' } }), { msgID: jobId, headers: h });
    expect((await finishedSoon(api, jobId)).status).toBe('succeeded');
    const trace = await eventually(() => {
      const t = traceOf(receiver, traceId);
      return complete(t, 'outside') ? t : undefined;
    }, 15_000, 'the whole trace of the NATS job');
    // Its root is the integration's span: the only parent outside the trace, and no span of ours starts a new trace.
    expect(trace.filter((s) => s.parentSpanId === '')).toEqual([]);
    expect(orphans(trace, [parentId])).toEqual([]);
    expectHops(trace, jobId, parentId);
  });

  it('a job started over gRPC (`jobline start`) is one trace under the JobService/Start server span', async () => {
    const started = spawnSync(process.execPath, [CLI, 'start', '--json', '--data-dir', dev.dataDir, '--address', dev.grpcAddress, '--', 'true'], { cwd: ROOT, encoding: 'utf8' });
    expect(started.status).toBe(0);
    const jobId = (JSON.parse(started.stdout) as { id: string }).id;
    expect((await finishedSoon(api, jobId)).status).toBe('succeeded');
    const trace = await eventually(() => {
      const attempt = receiver.spans.find((s) => s.name === 'attempt' && s.attributes['jobline.job.id'] === jobId);
      const t = attempt ? traceOf(receiver, attempt.traceId) : [];
      return complete(t) ? t : undefined;
    }, 15_000, 'the whole trace of the gRPC job');
    const roots = trace.filter((s) => s.parentSpanId === '');
    expect(roots).toHaveLength(1);
    expect(roots[0]).toMatchObject({
      service: 'jobline-api',
      name: 'jobline.v1.JobService/Start',
      kind: SPAN_KIND.SERVER,
      attributes: expect.objectContaining({ 'rpc.system': 'grpc', 'rpc.method': 'Start', 'rpc.grpc.status_code': 0 }),
    });
    expect(orphans(trace)).toEqual([]);
    // The CLI's client certificate (CN admin) names the owner.
    expectHops(trace, jobId, roots[0], 'admin');
  });

  it('a job with a git source: its trace goes through the packager (package order → package → result) to the attempt', async () => {
    const repo = join(dir.path, 'repo');
    mkdirSync(repo, { recursive: true });
    const commits = threeCommitRepo(repo);
    const job = await api.submit({ command: 'cat a.txt', source: { git: { url: `file://${repo}`, commit: commits[0] } } });
    expect((await api.finished(job.id)).status).toBe('succeeded');
    const trace = await eventually(() => {
      const attempt = receiver.spans.find((s) => s.name === 'attempt' && s.attributes['jobline.job.id'] === job.id);
      const t = attempt ? traceOf(receiver, attempt.traceId) : [];
      return complete(t) ? t : undefined;
    }, 15_000, 'the whole trace of the packaged job');
    expect(trace.filter((s) => s.parentSpanId === '')).toHaveLength(1);
    expect(orphans(trace)).toEqual([]);
    const order = byName(trace, 'jobline-orchestrator', 'publish JobSubmitted')[0];
    const pkg = byName(trace, 'jobline-packager', 'package')[0];
    expect(pkg).toMatchObject({ kind: SPAN_KIND.CONSUMER, parentSpanId: order.spanId, attributes: expect.objectContaining({ 'jobline.job.id': job.id, 'jobline.packaging.result': 'packaged' }) });
    const result = byName(trace, 'jobline-orchestrator', 'process jobline.pkg.done.*')[0];
    expect(result.parentSpanId).toBe(pkg.spanId);
    const recorded = byName(trace, 'jobline-orchestrator', 'job RecordPackaged')[0];
    expect(recorded.parentSpanId).toBe(result.spanId);
    expect(byName(trace, 'jobline-orchestrator', 'publish JobPackaged')[0].parentSpanId).toBe(recorded.spanId);
  });

  it('after stopping: every event stored with its trace context, and `jobline verify` finds the chain intact', async () => {
    expect(await dev.stop()).toBe(0);
    const store = openEventStore('sqlite', dev.dataDir);
    try {
      const [rest, nats] = await Promise.all(jobs.map((id) => store.eventStore.readStream(jobStreamName(id))));
      const restTrace = receiver.spans.find((s) => s.attributes['jobline.job.id'] === jobs[0])!.traceId;
      for (const e of rest) expect(e.metadata.traceparent).toMatch(new RegExp(`^00-${restTrace}-[0-9a-f]{16}-01$`));
      const natsTrace = receiver.spans.find((s) => s.attributes['jobline.job.id'] === jobs[1])!.traceId;
      for (const e of nats) expect(e.metadata.traceparent).toMatch(new RegExp(`^00-${natsTrace}-[0-9a-f]{16}-01$`));
      // tracestate travels with the context, through the store.
      expect(nats[0].metadata).toMatchObject({ tracestate: 'acme=integration-7' });
    } finally {
      await store.close();
    }
    const verify = spawnSync(process.execPath, [CLI, 'verify', '--data-dir', dev.dataDir], { cwd: ROOT, encoding: 'utf8' });
    expect({ status: verify.status, stderr: verify.stderr }).toEqual({ status: 0, stderr: '' });
  });
});

describe('OTLP/HTTP protobuf, the default protocol', () => {
  it('exports protobuf bodies holding the job trace', async () => {
    const receiver = await startReceiver();
    const dir = tempDir();
    const dev = await startDevProcess(dir.path, { OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`, OTEL_BSP_SCHEDULE_DELAY: '50' });
    try {
      const traceId = randomBytes(16).toString('hex');
      const jobId = randomUUID();
      const h = natsHeaders();
      h.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
      await jetstream(dev.nc).publish(subjects.submit(DEV_OWNER), JSON.stringify({ jobId, spec: { command: 'true' } }), { msgID: jobId, headers: h });
      await finishedSoon(new RestClient(dev.url, dev.token), jobId);
      const raw = Buffer.from(traceId, 'hex');
      await eventually(() => receiver.requests.some((r) => r.body.includes(raw) && r.body.includes(Buffer.from('jobline-executor'))), 15_000, 'a protobuf export with the trace');
      expect(receiver.requests.every((r) => r.contentType === 'application/x-protobuf')).toBe(true);
    } finally {
      await dev.stop();
      await receiver.close();
      dir.remove();
    }
  });
});

describe('tracing off (the default)', () => {
  it.each([
    ['no OTEL_* variable', {}],
    ['OTEL_SDK_DISABLED=true beats an endpoint', { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }],
    ['OTEL_TRACES_EXPORTER=none beats an endpoint', { OTEL_TRACES_EXPORTER: 'none' }],
  ])('%s: no SDK starts, nothing is sent, no traceparent is added anywhere', async (_what, extra) => {
    const receiver = await startReceiver();
    const dir = tempDir();
    const env: Record<string, string> = { ...extra, OTEL_BSP_SCHEDULE_DELAY: '10' };
    if (Object.keys(extra).length) env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    const stack = await startDevStack({ dataDir: join(dir.path, 'data'), apiPort: 0, executorCapacity: 1, logger: quietLogger, env });
    const seen: Msg[] = [];
    stack.nc.subscribe('jobline.>', { callback: (_err, m) => void seen.push(m) });
    try {
      expect(tracingStarted()).toBe(false);
      expect(tracingActive()).toBe(false);
      const api = new RestClient(stack.apiUrl!, stack.token);
      const job = await api.submit({ command: 'echo untraced' }, { traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` });
      await api.finished(job.id);
      await new Promise((r) => setTimeout(r, 300));
      const stored = await stack.eventStore.readStream(jobStreamName(job.id));
      for (const e of stored) expect(e.metadata).not.toHaveProperty('traceparent');
      const relevant = seen.filter((m) => m.subject.includes(job.id) || m.subject.startsWith('jobline.cmd.'));
      expect(relevant.length).toBeGreaterThan(3);
      for (const m of relevant) expect(m.headers?.get('traceparent') ?? '').toBe('');
    } finally {
      await stack.stop();
    }
    expect(receiver.requests).toEqual([]);
    await receiver.close();
    dir.remove();
  });
});
