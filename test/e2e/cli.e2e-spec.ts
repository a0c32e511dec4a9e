import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { certsInit } from '../../apps/cli/src/certs/dev-pki';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { logsCommand, type Output } from '../../apps/cli/src/remote/job-commands';
import { JobsRemote } from '../../apps/cli/src/remote/jobs-remote';
import { eventually, freePort, tempDir, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger, runCli, type CliRun } from './support';

/*
 * The built `jobline` CLI (dist/, as `bin/jobline` runs it) against a `jobline dev` stack
 * serving gRPC with the certificates of `jobline certs init`; its JSON compared with what the
 * REST API answers for the same jobs.
 */

const ROOT = resolve(__dirname, '../..');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const ESC = '\u001b';

/** The built CLI, as a user runs it (test/e2e/support.ts). */
const cli = (args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> => runCli(args, env);

describe('the jobline CLI (built) against jobline dev over gRPC', () => {
  let dir: TempDir;
  let dataDir: string;
  let stack: DevStack;
  let rest: RestClient;
  let remoteArgs: string[];

  beforeAll(async () => {
    dir = tempDir('jobline-cli-e2e-');
    dataDir = join(dir.path, 'data');
    await certsInit(dataDir);
    stack = await startDevStack({ dataDir, apiPort: 0, executorCapacity: 1, graceMs: 500, packager: false, logger: quietLogger, env: { JOBLINE_GRPC_PORT: '0' } });
    rest = new RestClient(stack.apiUrl!, stack.token);
    remoteArgs = ['--data-dir', dataDir, '--address', `127.0.0.1:${stack.grpcPort}`];
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('--version prints the package version; usage errors exit 2 with the usage', async () => {
    for (const flag of ['--version', '-V']) expect(await cli([flag])).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect((await cli(['list', '--limit', '0', ...remoteArgs])).code).toBe(2);
    expect((await cli(['list', '--order', 'sideways', ...remoteArgs])).code).toBe(2);
    expect((await cli(['completion', 'fish'])).code).toBe(2);
    const nothing = await cli(['start', ...remoteArgs]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to run; usage: jobline start/);
  });

  it('says what to do when the server is down, instead of grpc-js text, and exits 69', async () => {
    const port = await freePort();
    const r = await cli(['status', '00000000-0000-4000-8000-000000000000', '--data-dir', dataDir, '--address', `127.0.0.1:${port}`]);
    expect(r.code).toBe(69);
    expect(r.stderr).toContain(`cannot reach the Jobline gRPC server at 127.0.0.1:${port}: is \`jobline api\` (or \`jobline dev\`) running? set --address or JOBLINE_GRPC_ADDRESS`);
    expect(r.stderr).not.toMatch(/^jobline: (14 )?UNAVAILABLE/m);
    // The same through the variable.
    const viaEnv = await cli(['list', '--data-dir', dataDir], { JOBLINE_GRPC_ADDRESS: `127.0.0.1:${port}` });
    expect(viaEnv.code).toBe(69);
    expect(viaEnv.stderr).toContain(`at 127.0.0.1:${port}`);
  });

  it('names what is missing when there are no certificates', async () => {
    const r = await cli(['list', '--data-dir', join(dir.path, 'nowhere'), '--address', `127.0.0.1:${stack.grpcPort}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/CA file .*ca\.crt not found: run `jobline certs init`.*--ca or set JOBLINE_CA/);
  });

  it('not found: exit 3 and a hint', async () => {
    const r = await cli(['status', '00000000-0000-4000-8000-000000000000', ...remoteArgs]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/not found.*`jobline list` shows the jobs you can see/);
  });

  it('start/status/stop --json print the REST JobView, history --json the REST events body (no proto-loader internals)', async () => {
    const started = await cli(['start', '--json', '--priority', 'high', '--timeout', '60', '--notify', 'https://hooks.example.com/jobline', ...remoteArgs, '--', 'sh', '-c', 'echo hi; exit 3']);
    expect(started.code).toBe(0);
    const view = JSON.parse(started.stdout) as { id: string; status: string };
    await rest.finished(view.id);
    const status = await cli(['status', '--json', view.id, ...remoteArgs]);
    expect(status.code).toBe(0);
    const fromCli = JSON.parse(status.stdout) as Record<string, unknown>;
    expect(fromCli).toEqual(await rest.job(view.id));
    expect(fromCli).toMatchObject({ status: 'failed', exitCode: 3, priority: 'high', spec: { timeoutSeconds: 60, priority: 'high', command: ['sh', '-c', 'echo hi; exit 3'], notify: [{ url: 'https://hooks.example.com/jobline' }] } });
    for (const internal of ['_timeoutSeconds', 'JOB_STATUS_', 'PRIORITY_', '"seconds"', '"nanos"', 'dataJson']) expect(status.stdout).not.toContain(internal);

    const history = await cli(['history', '--json', view.id, ...remoteArgs]);
    expect(history.code).toBe(0);
    const body = (await (await rest.request(`/v1/jobs/${view.id}/events`)).json()) as unknown;
    expect(JSON.parse(history.stdout)).toEqual(body);

    const stop = await cli(['stop', '--json', view.id, ...remoteArgs]);
    expect(stop.code).toBe(4);
    expect(stop.stderr).toMatch(/not possible now: .*already finished/);
  });

  it('list pages: --json is the REST page; the text says the total and prints the next page\'s command', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await rest.submit({ command: ['true'], priority: 'low' })).id);
    await Promise.all(ids.map((id) => rest.finished(id)));
    const asJson = await cli(['list', '--json', '--priority', 'low', '--limit', '2', ...remoteArgs]);
    expect(asJson.code).toBe(0);
    const page = JSON.parse(asJson.stdout) as { items: { id: string }[]; total: number; nextCursor: string | null };
    expect(page).toEqual(await (await rest.request('/v1/jobs?priority=low&limit=2')).json());
    expect(page.total).toBe(3);

    const text = await cli(['list', '--priority', 'low', '--limit', '2', ...remoteArgs]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ID +STATUS +PRIORITY +OWNER +SUBMITTED$/m);
    expect(text.stdout).toContain('2 of 3 jobs');
    expect(text.stdout).not.toContain(ESC); // not a terminal: no colours
    const next = /^next page: jobline list (.*)$/m.exec(text.stdout);
    expect(next).not.toBeNull();
    const rest2 = await cli(['list', ...next![1].split(' '), ...remoteArgs]);
    expect(rest2.code).toBe(0);
    const shown = [...`${text.stdout}${rest2.stdout}`.matchAll(/^([0-9a-f-]{36}) /gm)].map((m) => m[1]);
    expect(shown.sort()).toEqual([...ids].sort());
    expect(rest2.stdout).not.toMatch(/^next page/m);
  });

  it('colours only when asked by the environment on a pipe (FORCE_COLOR), never with NO_COLOR or --json', async () => {
    const { id } = await rest.submit({ command: ['true'] });
    await rest.finished(id);
    expect((await cli(['status', id, ...remoteArgs], { FORCE_COLOR: '1' })).stdout).toContain(`${ESC}[32msucceeded${ESC}[39m`);
    expect((await cli(['status', id, ...remoteArgs], { FORCE_COLOR: '1', NO_COLOR: '1' })).stdout).not.toContain(ESC);
    expect((await cli(['status', '--json', id, ...remoteArgs], { FORCE_COLOR: '1' })).stdout).not.toContain(ESC);
  });

  it('logs -f on a queued job says it is queued, then running, then follows to its exit code', async () => {
    // The only slot is taken, so the second job waits in the queue.
    const blocker = await rest.submit({ command: ['sleep', '5'] });
    await eventually(async () => (await rest.job(blocker.id)).status === 'running', 20_000, 'the blocker running');
    const waiting = await rest.submit({ command: ['sh', '-c', 'echo from the queue; exit 5'] });
    await eventually(async () => (await rest.job(waiting.id)).status === 'queued', 10_000, 'the second job queued');
    const out: Buffer[] = [];
    const err: string[] = [];
    // In-process with progress on, as main turns it on when stderr is a terminal.
    const io: Output = { out: (d) => void out.push(Buffer.from(d)), err: (d) => void err.push(Buffer.from(d).toString()), progress: true };
    const remote = new JobsRemote({ address: `127.0.0.1:${stack.grpcPort}`, ca: join(dataDir, 'certs/ca.crt'), cert: join(dataDir, 'certs/admin.crt'), key: join(dataDir, 'certs/admin.key') });
    try {
      const code = await logsCommand(remote, waiting.id, true, false, io);
      expect(code).toBe(5);
    } finally {
      remote.close();
    }
    expect(Buffer.concat(out).toString()).toBe('from the queue\n');
    const notes = err.join('');
    expect(notes).toMatch(new RegExp(`^jobline: job ${waiting.id} is queued, waiting for a free executor slot; following it`, 'm'));
    expect(notes).toMatch(new RegExp(`^jobline: job ${waiting.id} is running \\(attempt 1\\)$`, 'm'));
    expect(notes.indexOf('is queued')).toBeLessThan(notes.indexOf('is running'));
  });

  it('logs --json prints WebSocket-style log frames and the end frame', async () => {
    const { id } = await rest.submit({ command: ['sh', '-c', 'printf ok; printf "\\377" >&2'] });
    await rest.finished(id);
    const r = await cli(['logs', '-f', '--json', id, ...remoteArgs]);
    expect(r.code).toBe(0);
    const frames = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(frames).toEqual(
      expect.arrayContaining([
        { type: 'log', jobId: id, attempt: 1, stream: 'stdout', offset: 0, data: 'ok' },
        { type: 'log', jobId: id, attempt: 1, stream: 'stderr', offset: 2, data: '/w==', encoding: 'base64' },
      ]),
    );
    expect(frames[frames.length - 1]).toEqual({ type: 'end', jobId: id, status: 'succeeded', exitCode: 0 });
  });
});
