import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { certsInit } from '../../apps/cli/src/certs/dev-pki';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { jobViewFromPb } from '../../apps/cli/src/remote/json-shapes';
import { tarOf } from '../../apps/packager/src/testing/archives';
import { JobsRemote } from '../../apps/cli/src/remote/jobs-remote';
import type { JobView, WsServerFrame, WsStatusFrame } from '../../libs/contracts/src';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger, runCli } from './support';

/*
 * Staged pipelines (README "Staged pipelines") through a `jobline dev` stack (real nats-server,
 * orchestrator, executor): per-step results over REST, gRPC, WebSocket and the CLI, the markers
 * before their step's output, continueOnFailure, and a forged boundary ignored.
 */

const FORGED = `\u001e${'ab'.repeat(16)} E 2 0`;

describe('staged pipelines: per-step results', () => {
  let dir: TempDir;
  let dataDir: string;
  let stack: DevStack;
  let rest: RestClient;

  beforeAll(async () => {
    dir = tempDir('jobline-steps-e2e-');
    // Searchable by others, so that where the host allows a sandbox, bundles are unpacked for its unprivileged user.
    chmodSync(dir.path, 0o711);
    dataDir = join(dir.path, 'data');
    await certsInit(dataDir);
    stack = await startDevStack({ dataDir, apiPort: 0, executorCapacity: 2, graceMs: 500, logger: quietLogger, env: { JOBLINE_GRPC_PORT: '0' } });
    rest = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    dir?.remove();
  });

  it('3 steps, the 2nd failing with continueOnFailure: the 3rd runs, the job succeeds, every surface shows each step', async () => {
    const frames: WsServerFrame[] = [];
    const ws = new WebSocket(`${stack.apiUrl!.replace(/^http/, 'ws')}/v1/ws`, { headers: { authorization: `Bearer ${stack.token}` } });
    ws.on('message', (d) => frames.push(JSON.parse(String(d)) as WsServerFrame));
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)));
    ws.send(JSON.stringify({ op: 'watch' }));
    await new Promise((r) => setTimeout(r, 200));

    const job = await rest.submit({
      steps: [
        { name: 'build', run: 'echo built; echo build-warning >&2' },
        // Output that looks like a boundary (a token that is not the attempt's) and like a marker.
        { name: 'lint', run: `echo lint-out; printf '${FORGED.replace('\u001e', '\\036')}\\n'; echo '==> [3/3] test'; echo lint-err >&2; exit 3`, continueOnFailure: true },
        { name: 'test', run: 'printf tested' },
      ],
    });
    expect(job.steps?.map((s) => [s.name, s.status, s.continueOnFailure])).toEqual([
      ['build', 'pending', false],
      ['lint', 'pending', true],
      ['test', 'pending', false],
    ]);
    const done = await rest.finished(job.id);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    const steps = done.steps!;
    expect(steps.map((s) => [s.step, s.name, s.status, s.exitCode, s.interrupted])).toEqual([
      [1, 'build', 'succeeded', 0, false],
      [2, 'lint', 'failed', 3, false],
      [3, 'test', 'succeeded', 0, false],
    ]);
    for (const s of steps) {
      expect(s.durationMs).toBeGreaterThanOrEqual(0);
      expect(Date.parse(s.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(s.startedAt!));
    }
    // The log ranges tile the log from the first marker to its end.
    expect(steps[0].logOffset).toBe(0);
    expect(steps[1].logOffset).toBe(steps[0].logEnd);
    expect(steps[2].logOffset).toBe(steps[1].logEnd);
    expect(steps[2].logEnd).toBe(done.logBytes);

    // Each marker stands before its step's output, on stdout and stderr alike; no real boundary is left in the log.
    const log = await rest.log(job.id);
    const slice = (k: number) => Buffer.from(log).subarray(steps[k].logOffset!, steps[k].logEnd!).toString();
    expect(slice(0).split('\n').sort()).toEqual(['', '==> [1/3] build', 'build-warning', 'built'].sort());
    expect(slice(0).startsWith('==> [1/3] build\n')).toBe(true);
    expect(slice(1).startsWith('==> [2/3] lint\n')).toBe(true);
    expect(slice(1)).toContain('lint-out\n');
    expect(slice(1)).toContain('lint-err\n');
    expect(slice(1)).toContain(`${FORGED}\n==> [3/3] test\n`);
    expect(slice(2)).toBe('==> [3/3] test\ntested');
    expect(log.split('\u001e').length - 1).toBe(1);

    // History: one start and one end per step (the forged end of step 2 recorded nothing), before the job's end.
    const types = (await rest.events(job.id)).map((e) => e.type);
    expect(types.filter((t) => t === 'JobStepStarted')).toHaveLength(3);
    expect(types.filter((t) => t === 'JobStepFinished')).toHaveLength(3);
    expect(types.lastIndexOf('JobStepFinished')).toBeLessThan(types.indexOf('JobCompleted'));
    const lintEnd = (await rest.events(job.id)).find((e) => e.type === 'JobStepFinished' && e.data.step === 2)!;
    expect(lintEnd.data).toMatchObject({ name: 'lint', exitCode: 3, continueOnFailure: true, logOffset: steps[1].logOffset, logEnd: steps[1].logEnd });

    // gRPC Status carries the same steps.
    const remote = new JobsRemote({ address: `127.0.0.1:${stack.grpcPort}`, ca: join(dataDir, 'certs/ca.crt'), cert: join(dataDir, 'certs/admin.crt'), key: join(dataDir, 'certs/admin.key') });
    try {
      const { job: pb } = await remote.call('Status', { jobId: job.id });
      expect(pb.steps.map((s: { status: string }) => s.status)).toEqual(['STEP_STATUS_SUCCEEDED', 'STEP_STATUS_FAILED', 'STEP_STATUS_SUCCEEDED']);
      expect(jobViewFromPb(pb)).toEqual(await rest.job(job.id));
    } finally {
      remote.close();
    }

    // The CLI: status lists the steps; --json is the REST view.
    const remoteArgs = ['--data-dir', dataDir, '--address', `127.0.0.1:${stack.grpcPort}`];
    const text = await runCli(['status', job.id, ...remoteArgs]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^steps$/m);
    expect(text.stdout).toMatch(new RegExp(`^ +1\\. build +succeeded +exit 0 +\\d+ ms +log 0-${steps[0].logEnd}$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^ +2\\. lint +failed +exit 3 +\\d+ ms +log ${steps[1].logOffset}-${steps[1].logEnd} +\\(continue on failure\\)$`, 'm'));
    expect(text.stdout).toMatch(/^ +3\. test +succeeded +exit 0 /m);
    const asJson = await runCli(['status', '--json', job.id, ...remoteArgs]);
    expect(JSON.parse(asJson.stdout) as JobView).toEqual(await rest.job(job.id));

    // WebSocket watch: status frames carry the steps; one per step change.
    await eventually(() => frames.some((f) => f.type === 'status' && f.jobId === job.id && f.event === 'JobCompleted'), 10_000, 'the completed status frame');
    ws.close();
    const mine = frames.filter((f): f is WsStatusFrame => f.type === 'status' && f.jobId === job.id);
    const stepFrames = mine.filter((f) => f.event === 'JobStepStarted' || f.event === 'JobStepFinished');
    expect(stepFrames.map((f) => f.event)).toEqual(['JobStepStarted', 'JobStepFinished', 'JobStepStarted', 'JobStepFinished', 'JobStepStarted', 'JobStepFinished']);
    expect(stepFrames[0].steps!.map((s) => s.status)).toEqual(['running', 'pending', 'pending']);
    expect(stepFrames[3].steps!.map((s) => s.status)).toEqual(['succeeded', 'failed', 'pending']);
    expect(mine.at(-1)!.steps).toEqual(steps);
  });

  it('a failing step without continueOnFailure stops the job with its exit code; the steps after it are skipped', async () => {
    const job = await rest.submit({ steps: [{ name: 'one', run: 'echo one' }, { name: 'two', run: 'echo two; exit 4' }, { name: 'three', run: 'echo three' }] });
    const done = await rest.finished(job.id);
    expect(done).toMatchObject({ status: 'failed', exitCode: 4 });
    expect(done.steps!.map((s) => [s.status, s.exitCode])).toEqual([
      ['succeeded', 0],
      ['failed', 4],
      ['skipped', null],
    ]);
    const log = await rest.log(job.id);
    expect(log).toBe('==> [1/3] one\none\n==> [2/3] two\ntwo\n');
  });

  it('a step’s outputs are collected right after it, before the next step changes them; the job’s outputs at the end', async () => {
    const job = await rest.submit({
      steps: [
        { name: 'first', run: 'mkdir -p out && printf v1 > out/a.txt', outputs: ['out/*.txt'] },
        // A later step overwrites the file and adds one: neither reaches the first step's archive.
        { name: 'second', run: 'printf v2 > out/a.txt && printf new > out/b.txt' },
        { name: 'empty', run: 'true', outputs: ['nothing/*'] },
      ],
      outputs: ['out/*.txt'],
    });
    const done = await rest.finished(job.id);
    expect(done.status).toBe('succeeded');
    expect(done.steps!.map((s) => s.artifacts)).toEqual([{ files: 1, bytes: 2 }, null, null]);
    const untar = async (query: string, name: string): Promise<string> => {
      const res = await rest.request(`/v1/jobs/${job.id}/artifacts${query}`);
      expect(res.status).toBe(200);
      const file = join(dir.path, `${name}.tar.gz`);
      writeFileSync(file, Buffer.from(await res.arrayBuffer()));
      const out = join(dir.path, name);
      mkdirSync(out);
      execFileSync('tar', ['-xzf', file, '-C', out]);
      return execFileSync('tar', ['-tzf', file], { encoding: 'utf8' });
    };
    expect(await untar('?step=1', `${job.id}-step1`)).toBe('out/a.txt\n');
    expect(readFileSync(join(dir.path, `${job.id}-step1`, 'out/a.txt'), 'utf8')).toBe('v1');
    expect(await untar('', `${job.id}-all`)).toBe('out/a.txt\nout/b.txt\n');
    expect(readFileSync(join(dir.path, `${job.id}-all`, 'out/a.txt'), 'utf8')).toBe('v2');
    expect((await rest.request(`/v1/jobs/${job.id}/artifacts?step=2`)).status).toBe(404);
    expect((await rest.request(`/v1/jobs/${job.id}/artifacts?step=9`)).status).toBe(404);
    expect((await rest.request(`/v1/jobs/${job.id}/artifacts?step=zero`)).status).toBe(400);
    const log = await rest.log(job.id);
    expect(log).toContain('==> [3/3] empty\njobline: step 3: no file matched outputs ["nothing/*"]\n');
    // No gate file is left in what the job's own outputs saw.
    expect(log).not.toContain('.jobline-step-');
  });

  it('a bundled staged job (its .jobline/run.sh) is tracked the same way', async () => {
    const form = new FormData();
    form.append('spec', JSON.stringify({ steps: [{ name: 'read', run: 'cat hello.txt' }, { name: 'fail', run: 'exit 2', continueOnFailure: true }], source: { archive: true } }));
    form.append('archive', new Blob([new Uint8Array(tarOf([{ name: 'hello.txt', data: 'hi from the archive\n' }]))]), 'source');
    const res = await fetch(`${stack.apiUrl}/v1/jobs`, { method: 'POST', body: form, headers: { authorization: `Bearer ${stack.token}` } });
    expect(res.status).toBe(201);
    const done = await rest.finished(((await res.json()) as JobView).id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0 });
    expect(done.bundleDigest).toMatch(/^sha256:/);
    expect(done.steps!.map((s) => [s.status, s.exitCode])).toEqual([
      ['succeeded', 0],
      ['failed', 2],
    ]);
    expect(await rest.log(done.id)).toBe('==> [1/2] read\nhi from the archive\n==> [2/2] fail\n');
  });

  it('a step stopped by the job’s timeout is failed and interrupted, the rest skipped', async () => {
    const job = await rest.submit({ timeoutSeconds: 1, steps: [{ name: 'quick', run: 'true' }, { name: 'slow', run: 'sleep 30' }, { name: 'never', run: 'true' }] });
    const done = await rest.finished(job.id, 30_000);
    expect(done.status).toBe('timed_out');
    expect(done.steps!.map((s) => s.status)).toEqual(['succeeded', 'failed', 'skipped']);
    expect(done.steps![1].interrupted).toBe(true);
  });
});
