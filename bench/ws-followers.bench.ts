/**
 * WebSocket followers of one job (DESIGN.md: "10,000 followers of one job: every chunk
 * reaches every follower within 100 ms, the api's resident memory under 512 MB"). NATS, the
 * orchestrator and the executor run in this process, the api in a child of its own (its RSS
 * is measured apart), the followers in another child (the `ws` client), so their JSON parsing
 * does not share the api's event loop. The job waits for a go (a TCP connection from the
 * bench) until every follower is connected and following, then prints one line every
 * 100 ms, each carrying its emission time (wall clock, µs precision); every follower
 * records, for every line, receipt time − emission time. Nothing may be lost: each follower
 * must see every line exactly once, in order, then `end`. Each follower count runs on a job
 * of its own; the JetStream consumers the api opened on the logs stream are counted from
 * the server's advisories.
 *
 *   npm run -s bench -- ws [--followers=1000,10000] [--seconds=10]
 */
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { z } from 'zod';
import { percentiles, progress, withDefaults, within } from './bench-kit';
import { mb, startLogBenchStack, type LogBenchStack } from './log-bench-stack';

export interface WsFollowersBenchOptions {
  /** One run per count: WebSocket connections, each following the job (default 1000 and 10000). */
  followers: number[];
  /** Lines the job prints (default 100: ~10 s at one line per 100 ms). */
  lines: number;
  /** Between two lines (default 100 ms). */
  intervalMs: number;
  plainMemory?: boolean;
  nodeArgs?: string[];
}

export const WS_FOLLOWERS_DEFAULTS: WsFollowersBenchOptions = { followers: [1000, 10000], lines: 100, intervalMs: 100 };

export interface WsFollowersRun {
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
  /** Peak resident memory of the api process during the run (connect, follow, end). */
  apiPeakRssMb: number;
  /** JetStream consumers the api opened on the logs stream, per follower. */
  consumersPerFollower: number;
  /** Time to open every connection (upgrade + auth) and send its follow. */
  connectMs: number;
  lossless: boolean;
}

export interface WsFollowersBenchResult {
  bench: 'ws';
  runs: WsFollowersRun[];
  apiBaselineRssMb: number;
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

/**
 * The job: connects to the bench's go port (network on, so loopback is reachable from a
 * sandbox), and once it reads a byte prints "<seq> <emission time in ms since the epoch, µs
 * precision>" on a fixed schedule.
 */
const jobSource = (o: WsFollowersBenchOptions, goPort: number) =>
  `const s = require('net').connect(${goPort}, '127.0.0.1'); s.once('data', () => { s.destroy();
   const t0 = performance.now(); let i = 0;
   const tick = () => { if (i >= ${o.lines}) return; const due = t0 + i * ${o.intervalMs}; const wait = due - performance.now();
     if (wait > 0) return setTimeout(tick, wait);
     process.stdout.write(i + ' ' + (performance.timeOrigin + performance.now()).toFixed(3) + '\\n'); i++; setImmediate(tick); };
   tick(); });`;

async function followersRun(s: LogBenchStack, o: WsFollowersBenchOptions, followers: number): Promise<WsFollowersRun> {
  // The job asks for its go here; it gets it once every follower is in place.
  const goServer = createServer();
  await new Promise<void>((resolve) => goServer.listen(0, '127.0.0.1', resolve));
  const jobSocket = new Promise<Socket>((resolve) => goServer.once('connection', resolve)).finally(() => goServer.close());
  const jobId = await s.submit({ command: [process.execPath, '-e', jobSource(o, (goServer.address() as AddressInfo).port)], resources: { network: true } });
  const go = await within(jobSocket, 60_000, 'the job to start');
  progress('ws', `job ${jobId}: ${o.lines} lines every ${o.intervalMs} ms once ${followers} followers follow`);
  const consumersBefore = s.consumersOpened();
  const peak = s.sampleApiRss();
  const child = spawn(process.execPath, ['-e', FOLLOWERS_SRC, require.resolve('ws'), s.wsUrl, s.token, jobId, String(followers), String(o.lines)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  const report = new Promise<z.output<typeof FollowersReportSchema>>((resolve, reject) => {
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.startsWith('ready\n')) {
        progress('ws', `${followers} followers connected and following`);
        out = out.slice('ready\n'.length);
        // A moment for the last follows to reach the api (the first lines are not lost if it is too short, only late).
        setTimeout(() => go.write('g'), 500 + followers / 4);
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
  const r = await within(report, o.lines * o.intervalMs + 300_000, 'the followers').finally(() => child.kill('SIGKILL'));
  const apiPeakRss = peak();
  for (const p of r.problems) progress('ws', `problem: ${p}`);
  const p = percentiles(r.latenciesMs);
  const expected = followers * o.lines;
  const run: WsFollowersRun = {
    followers,
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
    apiPeakRssMb: mb(apiPeakRss),
    consumersPerFollower: Math.round(((s.consumersOpened() - consumersBefore) / followers) * 1000) / 1000,
    connectMs: Math.round(r.connectMs),
    lossless: r.delivered === expected && r.followersWithLoss === 0 && r.followersWithoutEnd === 0,
  };
  progress('ws', `${followers} followers: p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, max ${run.maxMs} ms; api peak ${run.apiPeakRssMb} MB; ${run.consumersPerFollower} consumers per follower`);
  return run;
}

export async function runWsFollowersBench(options: Partial<WsFollowersBenchOptions> = {}): Promise<WsFollowersBenchResult> {
  const o = withDefaults(WS_FOLLOWERS_DEFAULTS, options);
  const s = await startLogBenchStack('ws', { capacity: 1, plainMemory: o.plainMemory, nodeArgs: o.nodeArgs });
  try {
    const apiBaselineRssMb = mb(s.api.memory().rssBytes);
    const runs: WsFollowersRun[] = [];
    for (const n of o.followers) runs.push(await followersRun(s, o, n));
    return { bench: 'ws', runs, apiBaselineRssMb, warnings: s.logger.warnings, errors: s.logger.errors };
  } finally {
    await s.stop();
  }
}
