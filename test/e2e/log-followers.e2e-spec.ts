import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startApiProcess, type ApiProcess } from '../../apps/api/src/testing/api-process';
import { startDevStack, sha256Hex, type DevStack } from '../../apps/cli/src/dev-stack';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger } from './support';

const ROOT = join(__dirname, '../..');
const JOBS = 20;
const BYTES = 50 * 1000 * 1000;
/**
 * "Back to baseline" allows this much above the api's idle RSS before the first round:
 * what the allocator keeps of a heap that once grew, and code compiled on the way, not a
 * share of the gigabyte that went through.
 */
const BASELINE_MARGIN = 64 << 20;

/** What `yes LINE | head -c BYTES` prints, hashed. */
function printedSha256(line: string, bytes: number): string {
  const unit = Buffer.from(`${line}\n`);
  const block = Buffer.alloc(Math.floor((1 << 20) / unit.length) * unit.length);
  for (let i = 0; i < block.length; i += unit.length) unit.copy(block, i);
  const h = createHash('sha256');
  for (let left = bytes; left > 0; left -= block.length) h.update(left >= block.length ? block : block.subarray(0, left));
  return h.digest('hex');
}

interface Followed {
  bytes: number;
  sha256: string | null;
  end: Record<string, unknown> | null;
  error: string | null;
}

/** One WebSocket follower as a script would write it: every byte hashed, offsets checked, until end or error. */
function follow(url: string, token: string, jobId: string): Promise<Followed> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    const hash = createHash('sha256');
    const r: Followed = { bytes: 0, sha256: null, end: null, error: null };
    const done = () => {
      ws.terminate();
      resolve(r);
    };
    ws.on('open', () => ws.send(JSON.stringify({ op: 'follow', jobId })));
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as Record<string, unknown> & { type: string };
      if (f.type === 'log') {
        if (f.offset !== r.bytes) r.error ??= `offset ${String(f.offset)} where ${r.bytes} was due`;
        const bytes = Buffer.from(f.data as string, f.encoding === 'base64' ? 'base64' : 'utf8');
        hash.update(bytes);
        r.bytes += bytes.length;
      } else if (f.type === 'end') {
        r.end = f;
        r.sha256 = hash.digest('hex');
        done();
      } else if (f.type === 'error') {
        r.error ??= `${String(f.code)}: ${String(f.message)}`;
        done();
      }
    });
    ws.on('error', (e) => {
      r.error ??= e.message;
      done();
    });
    ws.on('close', () => {
      r.error ??= r.end ? null : 'closed without end';
      done();
    });
  });
}

/**
 * Issue 17 item 6: twenty jobs printing 50 MB each at once, one WebSocket follower each,
 * twice in a row. Every follower gets every byte (sha256) and then `end`, none stalls, and
 * the api (a process of its own, run as README "Memory" says) is back at its baseline
 * resident memory after each round.
 */
describe('many large live logs at once (api in its own process)', () => {
  let dir: TempDir;
  let stack: DevStack;
  let api: ApiProcess;
  const token = `e2e-${Math.random().toString(36).slice(2)}`;
  let rest: RestClient;
  let wsUrl: string;
  let baseline: number;

  beforeAll(async () => {
    if (!existsSync(join(ROOT, 'dist/apps/api/src/testing/api-process.js'))) {
      // `npm test` builds first; a direct `npx jest` run may not have.
      const r = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
      if (r.status !== 0) throw new Error('build failed');
    }
    dir = tempDir();
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), apiPort: false, executorCapacity: JOBS, packager: false, logger: quietLogger });
    api = await startApiProcess({
      natsUrl: stack.natsUrl,
      eventsDb: join(stack.dataDir, 'events.db'),
      readModelDb: join(dir.path, 'api-read-models.db'),
      tokens: [{ sha256: sha256Hex(token), owner: 'e2e' }],
    });
    rest = new RestClient(api.url, token);
    wsUrl = `${api.url.replace(/^http/, 'ws')}/v1/ws`;
    // The idle api, once its start-up work is done.
    await new Promise((r) => setTimeout(r, 3000));
    baseline = api.memory().rssBytes;
  }, 120_000);
  afterAll(async () => {
    await api?.stop();
    await stack?.stop();
    dir?.remove();
  });

  it.each([1, 2])(
    'round %i: 20 × 50 MB followed live: every byte then end at every follower, the api back to its baseline memory after',
    async (round) => {
      const lines = Array.from({ length: JOBS }, (_, k) => `round ${round} job ${k} ${'z'.repeat(80)}`);
      const jobs = await Promise.all(lines.map((line) => rest.submit({ command: `yes '${line}' | head -c ${BYTES}` })));
      const followed = await Promise.all(jobs.map((j) => follow(wsUrl, token, j.id)));
      followed.forEach((f, k) => {
        expect({ job: k, error: f.error, bytes: f.bytes }).toEqual({ job: k, error: null, bytes: BYTES });
        expect(f.sha256).toBe(printedSha256(lines[k], BYTES));
        expect(f.end).toMatchObject({ type: 'end', jobId: jobs[k].id, status: 'succeeded', exitCode: 0 });
      });
      await eventually(() => api.memory().rssBytes <= baseline + BASELINE_MARGIN, 60_000, `the api's RSS back within ${BASELINE_MARGIN >> 20} MB of its baseline ${baseline >> 20} MB`);
    },
    600_000,
  );
});
