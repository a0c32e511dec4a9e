/**
 * 1,000 WebSocket followers of one job (DESIGN.md: "every chunk reaches every follower
 * within 100 ms"). The whole `jobline dev` stack runs in this process (REST + /v1/ws on a
 * free port, a temp data dir); the followers run in a child process of their own (the `ws`
 * client), so their JSON parsing does not share the api's event loop. The job prints one
 * line every 100 ms, each carrying its emission time (wall clock, µs precision); every
 * follower records, for every line, receipt time − emission time. Nothing may be lost:
 * each follower must see every line exactly once, in order, then `end`.
 *
 *   npm run -s bench -- ws [--seconds=10]
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { z } from 'zod';
import { tempDir } from '../libs/testing/src/temp-dir';
import { startDevStack, type DevStack } from '../apps/cli/src/dev-stack';
import { percentiles, progress, quietLogger, withDefaults, within } from './bench-kit';

export interface WsFollowersBenchOptions {
  /** WebSocket connections, each following the job (default 1000). */
  followers: number;
  /** Lines the job prints (default 100: ~10 s at one line per 100 ms). */
  lines: number;
  /** Between two lines (default 100 ms). */
  intervalMs: number;
  /** The job waits this long before its first line, so that every follow is in place (default 3000 ms). */
  leadInMs: number;
}

export const WS_FOLLOWERS_DEFAULTS: WsFollowersBenchOptions = { followers: 1000, lines: 100, intervalMs: 100, leadInMs: 3000 };

export interface WsFollowersBenchResult {
  bench: 'ws';
  followers: number;
  lines: number;
  intervalMs: number;
  /** Emission → receipt, over every line at every follower. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Share of (line, follower) deliveries within 100 ms. */
  within100MsPct: number;
  /** Lines received, over all followers; expected = followers × lines. */
  delivered: number;
  expected: number;
  /** Followers that saw a gap, a duplicate or a line out of order, or no `end`. */
  followersWithLoss: number;
  followersWithoutEnd: number;
  /** Peak resident memory of the dev-stack process (api + orchestrator + executor; nats-server is a child of its own). */
  apiRssMb: number;
  /** Time to open every connection (upgrade + auth). */
  connectMs: number;
  lossless: boolean;
  warnings: number;
  errors: number;
}

const FollowersReportSchema = z.strictObject({
  connectMs: z.number(),
  latenciesMs: z.array(z.number()),
  delivered: z.number().int(),
  followersWithLoss: z.number().int(),
  followersWithoutEnd: z.number().int(),
  problems: z.array(z.string()),
});

/**
 * The follower side, run with `node -e` in a child: argv = wsModulePath, url, token, jobId,
 * followers, lines. Prints "ready" once every connection is open and following, then one
 * JSON report when every follower has its `end` (or the connection closed).
 */
const FOLLOWERS_SRC = String.raw`
const [wsPath, url, token, jobId, followersArg, linesArg] = process.argv.slice(1);
const WebSocket = require(wsPath);
const followers = Number(followersArg), lines = Number(linesArg);
const now = () => performance.timeOrigin + performance.now();
const latencies = [];
let delivered = 0, withLoss = 0, withoutEnd = 0, open = 0, done = 0;
const problems = [];
const t0 = performance.now();
let connectMs = 0;
function finish() {
  if (++done < followers) return;
  process.stdout.write(JSON.stringify({ connectMs, latenciesMs: latencies, delivered, followersWithLoss: withLoss, followersWithoutEnd: withoutEnd, problems: problems.slice(0, 10) }) + '\n', () => process.exit(0));
}
for (let f = 0; f < followers; f++) {
  const ws = new WebSocket(url, { headers: { authorization: 'Bearer ' + token }, perMessageDeflate: false });
  let partial = '', next = 0, lost = false, ended = false, finished = false;
  const end = () => { if (finished) return; finished = true; if (!ended) withoutEnd++; if (lost || next !== lines) { withLoss++; if (!lost) problems.push('follower ' + f + ': ' + next + ' of ' + lines + ' lines'); } ws.terminate(); finish(); };
  ws.on('open', () => {
    ws.send(JSON.stringify({ op: 'follow', jobId }));
    if (++open === followers) { connectMs = performance.now() - t0; process.stdout.write('ready\n'); }
  });
  ws.on('message', (data) => {
    const at = now();
    const frame = JSON.parse(String(data));
    if (frame.type === 'log') {
      const text = partial + (frame.encoding === 'base64' ? Buffer.from(frame.data, 'base64').toString('utf8') : frame.data);
      const parts = text.split('\n');
      partial = parts.pop();
      for (const line of parts) {
        const [seq, emitted] = line.split(' ').map(Number);
        if (seq !== next) { if (!lost) problems.push('follower ' + f + ': line ' + seq + ' where ' + next + ' was due'); lost = true; }
        next = seq + 1;
        delivered++;
        latencies.push(Math.round((at - emitted) * 1000) / 1000);
      }
    } else if (frame.type === 'end') { ended = true; end(); }
    else if (frame.type === 'error') { problems.push('follower ' + f + ': ' + frame.code + ' ' + frame.message); lost = true; end(); }
  });
  ws.on('error', (e) => { problems.push('follower ' + f + ': ' + e.message); lost = true; });
  ws.on('close', end);
}
`;

/** The job: waits leadInMs, then prints "<seq> <emission time in ms since the epoch, µs precision>" on a fixed schedule. */
const jobSource = (o: WsFollowersBenchOptions) =>
  `const t0 = performance.now() + ${o.leadInMs}; let i = 0;
   const tick = () => { if (i >= ${o.lines}) return; const due = t0 + i * ${o.intervalMs}; const wait = due - performance.now();
     if (wait > 0) return setTimeout(tick, wait);
     process.stdout.write(i + ' ' + (performance.timeOrigin + performance.now()).toFixed(3) + '\\n'); i++; setImmediate(tick); };
   tick();`;

export async function runWsFollowersBench(options: Partial<WsFollowersBenchOptions> = {}): Promise<WsFollowersBenchResult> {
  const o = withDefaults(WS_FOLLOWERS_DEFAULTS, options);
  const tmp = tempDir('jobline-bench-ws-');
  const logger = quietLogger('ws');
  let stack: DevStack | null = null;
  let peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 200);
  try {
    // The follows exceed the default per-process file limit only with far more followers; one slot is enough here.
    stack = await startDevStack({ dataDir: join(tmp.path, 'data'), apiPort: 0, executorCapacity: 1, packager: false, logger });
    const res = await fetch(`${stack.apiUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command: [process.execPath, '-e', jobSource(o)] }),
    });
    if (res.status !== 201) throw new Error(`submitting the job: HTTP ${res.status} ${await res.text()}`);
    const job = (await res.json()) as { id: string };
    progress('ws', `job ${job.id}: ${o.lines} lines every ${o.intervalMs} ms after ${o.leadInMs} ms; opening ${o.followers} followers`);

    const wsUrl = `${stack.apiUrl!.replace(/^http/, 'ws')}/v1/ws`;
    const child = spawn(process.execPath, ['-e', FOLLOWERS_SRC, require.resolve('ws'), wsUrl, stack.token, job.id, String(o.followers), String(o.lines)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    const report = new Promise<z.output<typeof FollowersReportSchema>>((resolve, reject) => {
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        if (out.startsWith('ready\n')) {
          progress('ws', `${o.followers} followers connected and following`);
          out = out.slice('ready\n'.length);
        }
      });
      child.once('error', reject);
      child.once('close', (code) => {
        if (code !== 0) return reject(new Error(`the followers' process exited with code ${code}`));
        try {
          resolve(FollowersReportSchema.parse(JSON.parse(out.trim())));
        } catch (err) {
          reject(new Error(`the followers' report is unreadable: ${(err as Error).message}`));
        }
      });
    });
    const r = await within(report, o.leadInMs + o.lines * o.intervalMs + 120_000, 'the followers').finally(() => child.kill('SIGKILL'));
    for (const p of r.problems) progress('ws', `problem: ${p}`);
    const p = percentiles(r.latenciesMs);
    const expected = o.followers * o.lines;
    return {
      bench: 'ws',
      followers: o.followers,
      lines: o.lines,
      intervalMs: o.intervalMs,
      p50Ms: p.p50Ms,
      p90Ms: p.p90Ms,
      p99Ms: p.p99Ms,
      maxMs: p.maxMs,
      within100MsPct: r.latenciesMs.length ? Math.round((r.latenciesMs.filter((v) => v <= 100).length / r.latenciesMs.length) * 100_000) / 1000 : 0,
      delivered: r.delivered,
      expected,
      followersWithLoss: r.followersWithLoss,
      followersWithoutEnd: r.followersWithoutEnd,
      apiRssMb: Math.round(peakRss / (1 << 20)),
      connectMs: Math.round(r.connectMs),
      lossless: r.delivered === expected && r.followersWithLoss === 0 && r.followersWithoutEnd === 0,
      warnings: logger.warnings,
      errors: logger.errors,
    };
  } finally {
    clearInterval(rssTimer);
    await stack?.stop();
    tmp.remove();
  }
}
