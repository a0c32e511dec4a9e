/**
 * Runs the benchmarks and prints one JSON object per benchmark on stdout, then a summary
 * that sets the figures against DESIGN.md's targets. Progress goes to stderr.
 *
 *   npm run bench                                    every benchmark
 *   npm run bench -- jobs rebuild                    only those
 *   npm run bench -- jobs --capacity=4 --jobs=500    with other parameters
 *
 * Each benchmark runs in a child process of its own (a fresh heap, nothing left over from
 * the previous one, and a check that it exits by itself once it is done).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { machineInfo, type MachineInfo } from './bench-kit';
import { runEventStoreBench } from './event-store.bench';
import { runJobsBench } from './jobs.bench';
import { runRebuildBench } from './projection-rebuild.bench';
import { runStartupBench } from './startup.bench';
import { runBundleBench } from './bundle.bench';
import { runSshBench } from './ssh.bench';
import { runSandboxBench } from './sandbox.bench';
import { runSpawnBench } from './spawn.bench';
import { runWsFollowersBench } from './ws-followers.bench';
import { runLogConcurrentBench, runLogRateBench } from './logs.bench';
import { runGrpcSendBench } from './grpc-send.bench';

const Count = (max: number) => z.coerce.number().int().min(1).max(max);

const OptionsSchema = z.strictObject({
  jobs: Count(1_000_000).optional(),
  capacity: Count(256).optional(),
  rate: Count(10_000).optional(),
  seconds: Count(3600).optional(),
  events: Count(100_000_000).optional(),
  'store-jobs': Count(10_000_000).optional(),
  'startup-events': Count(100_000_000).optional(),
  sandbox: z.enum(['none', 'auto', 'both']).optional(),
  topology: z.enum(['dev', 'processes', 'both'], { error: 'must be dev, processes or both' }).optional(),
  history: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'a comma-separated list of event counts (0 is an empty store)')
    .transform((v) => [...new Set(v.split(',').map(Number))])
    .pipe(z.array(z.number().int().min(0).max(10_000_000, 'at most 10000000 events')))
    .optional(),
  'event-ids': z.enum(['time-ordered', 'random'], { error: 'must be time-ordered or random' }).optional(),
  'no-reference': z.boolean().optional(),
  followers: z
    .string()
    .regex(/^\d+(,\d+)*$/, 'a comma-separated list of counts')
    .transform((v) => v.split(',').map(Number))
    .pipe(z.array(z.number().int().min(1).max(20_000)))
    .optional(),
  bytes: Count(64 * 2 ** 30).optional(),
  rounds: Count(100).optional(),
  edges: z
    .string()
    .regex(/^(ws|grpc)(,(ws|grpc))*$/, 'a comma-separated list of ws, grpc')
    .transform((v) => [...new Set(v.split(','))] as ('ws' | 'grpc')[])
    .optional(),
  'cpu-prof-dir': z.string().min(1).optional(),
  'plain-memory': z.boolean().optional(),
  child: z.string().optional(),
  help: z.boolean().optional(),
});
type Options = z.output<typeof OptionsSchema>;

interface Benchmark {
  about: string;
  run(o: Options, env: { redisServer?: string }): Promise<object>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  jobs: {
    about: 'tiny jobs end to end over NATS (jobs/s, submit → started latency) beside a BullMQ reference',
    run: (o, env) =>
      runJobsBench({
        jobs: o.jobs,
        capacity: o.capacity,
        ratePerSec: o.rate,
        seconds: o.seconds,
        sandboxModes: o.sandbox === undefined || o.sandbox === 'both' ? undefined : [o.sandbox],
        topologies: o.topology === undefined ? undefined : o.topology === 'both' ? ['dev', 'processes'] : [o.topology],
        historyEvents: o.history,
        rounds: o.rounds,
        noReference: o['no-reference'],
        redisServer: env.redisServer,
        cpuProfDir: o['cpu-prof-dir'],
      }),
  },
  rebuild: {
    about: 'rebuilding the jobs projection from the event store (events/s)',
    run: (o) => runRebuildBench({ events: o.events }),
  },
  startup: {
    about: 'orchestrator start → ready with 1,000 and with 1,000,000 stored events (SQLite), cold (no lifecycle snapshot) and warm (from it)',
    run: (o) => runStartupBench(o['startup-events'] ? { sizes: [1_000, o['startup-events']] } : {}),
  },
  'event-store': {
    about: 'SQLite and PostgreSQL event stores: appends (1 and 8 appenders), readAll and subscribe catch-up',
    run: (o) => runEventStoreBench({ jobs: o['store-jobs'], postgresUrl: process.env.JOBLINE_BENCH_POSTGRES_URL || undefined, historyEvents: o.history, eventIds: o['event-ids'] }),
  },
  spawn: {
    about: 'the executor alone against bare child_process.spawn',
    run: (o) => runSpawnBench({ jobs: o.jobs, capacity: o.capacity }),
  },
  sandbox: {
    about: 'the local sandbox (cgroups + namespaces) against bare spawn: jobs/s and per-attempt overhead',
    run: (o) => runSandboxBench({ jobs: o.jobs, capacity: o.capacity }),
  },
  bundle: {
    about: 'a bundle of 10,000 files / 100 MB from git (fetch + deterministic pack) against git archive --format=tar.gz',
    run: () => runBundleBench(),
  },
  ssh: {
    about: 'SSH attempt start latency on a warm connection against a bare exec (a private sshd on loopback)',
    run: () => runSshBench(),
  },
  ws: {
    about: '1,000 and 10,000 WebSocket followers of one job printing a line every 100 ms: emission → receipt latency, nothing lost, api RSS, consumers per follower',
    run: (o) => runWsFollowersBench({ lines: o.seconds === undefined ? undefined : o.seconds * 10, followers: o.followers, plainMemory: o['plain-memory'], nodeArgs: profileArgs(o) }),
  },
  'logs-rate': {
    about: '1 GiB of stdout to one WebSocket follower, then to one gRPC Logs stream: MB/s, the api process peak RSS',
    run: (o) => runLogRateBench({ bytes: o.bytes, edges: o.edges, nodeArgs: profileArgs(o), plainMemory: o['plain-memory'] }),
  },
  'grpc-send': {
    about: 'the api\'s gRPC Logs send path alone: CPU per MiB of protobufjs\'s serializer and the hand-written one, alternated',
    run: (o) => runGrpcSendBench({ bytes: o.bytes, rounds: o.rounds }),
  },
  'logs-concurrent': {
    about: '20 jobs printing 50 MB each at once, one WebSocket follower each, twice: every byte (sha256), api RSS before and after',
    run: (o) => runLogConcurrentBench({ rounds: o.rounds, bytesPerJob: o.bytes, nodeArgs: profileArgs(o), plainMemory: o['plain-memory'] }),
  },
};

const profileArgs = (o: Options) => (o['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${o['cpu-prof-dir']}`] : undefined);

const USAGE = `usage: npm run bench -- [${Object.keys(BENCHMARKS).join('|')} ...] [options]
  --jobs=N          jobs of the throughput runs (jobs, spawn; default 2000)
  --capacity=N      executor slots / BullMQ worker concurrency (jobs: 8, spawn: 4)
  --rate=N          submissions per second of the latency run (default 50)
  --seconds=N       length of the latency run (default 10)
  --events=N        events stored before the projection rebuild (default 200000)
  --store-jobs=N    jobs appended by the event-store benchmark (default 20000)
  --startup-events=N  startup: the larger store's events (default 1000000; the smaller has 1000)
  --sandbox=MODE    jobs: executor sandbox none, auto or both (default both)
  --topology=T      jobs: dev (one process), processes (api, orchestrator, executor apart) or both (default dev)
  --history=N,M     jobs: events stored before the stack starts, one run per count (default 0; e.g. 0,1000000);
                    event-store: the SQLite file's events before the appends, one run per count
  --event-ids=K     event-store: time-ordered (UUIDv7, the orchestrator's; default) or random (UUIDv4) event ids
  --no-reference    skip the BullMQ reference
  --followers=N,M   ws: follower counts, one run each (default 1000,10000)
  --bytes=N         logs-rate: bytes per job (default 1 GiB); logs-concurrent: per job (default 50 MB); grpc-send: per run (default 256 MiB)
  --rounds=N        logs-concurrent: rounds (default 2); grpc-send: pairs of runs (default 3); jobs: runs of each topology, the --history order alternating, BullMQ once per round of the first topology, before our runs in even rounds (default 1)
  --edges=ws,grpc   logs-rate: the edges measured (default both)
  --plain-memory    logs-rate, logs-concurrent, ws: run the api without --expose-gc and MALLOC_MMAP_THRESHOLD_ (see README, Memory)
  --cpu-prof-dir=D  logs-rate, logs-concurrent, ws: write V8 CPU profiles of the benchmark process (orchestrator, executor) and of the api process into D;
                    jobs: of the benchmark process, and with --topology=processes of the orchestrator, executor and api into D/<service>
environment: REDIS_SERVER_BIN  redis-server for the reference (default: found on PATH)
             JOBLINE_BENCH_POSTGRES_URL  PostgreSQL of the event-store benchmark (default postgres://root@127.0.0.1:5432/test)
${Object.entries(BENCHMARKS)
  .map(([name, b]) => `  ${name.padEnd(12)} ${b.about}`)
  .join('\n')}`;

/** Once a benchmark has printed its result it must exit by itself within this time. */
const EXIT_GRACE_MS = 30_000;
/** No benchmark may run longer than this. */
const BENCH_TIMEOUT_MS = 20 * 60_000;

function parseCommandLine(argv: string[]): { names: string[]; options: Options; optionArgs: string[] } {
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    allowPositionals: true,
    tokens: true,
    options: {
      jobs: { type: 'string' },
      capacity: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      events: { type: 'string' },
      'store-jobs': { type: 'string' },
      'startup-events': { type: 'string' },
      sandbox: { type: 'string' },
      topology: { type: 'string' },
      history: { type: 'string' },
      'event-ids': { type: 'string' },
      'no-reference': { type: 'boolean' },
      followers: { type: 'string' },
      bytes: { type: 'string' },
      rounds: { type: 'string' },
      edges: { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      'plain-memory': { type: 'boolean' },
      child: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const parsed = OptionsSchema.safeParse(values);
  if (!parsed.success) throw new UsageError(parsed.error.issues.map((i) => `--${String(i.path[0])}: ${i.message}`).join('; '));
  const unknown = positionals.filter((n) => !(n in BENCHMARKS));
  if (unknown.length) throw new UsageError(`unknown benchmark ${unknown.join(', ')}`);
  const optionArgs = tokens.filter((t) => t.kind === 'option' && t.name !== 'child').map((t) => (t.kind === 'option' ? t.rawName + (t.value !== undefined ? `=${t.value}` : '') : ''));
  return { names: positionals.length ? [...new Set(positionals)] : Object.keys(BENCHMARKS), options: parsed.data, optionArgs };
}

class UsageError extends Error {}

function redisServerFromEnv(): string | undefined {
  const bin = process.env.REDIS_SERVER_BIN;
  if (bin === undefined || bin === '') return undefined;
  if (!existsSync(bin)) throw new UsageError(`REDIS_SERVER_BIN=${bin} does not exist`);
  return bin;
}

/** In the child: run one benchmark, print its result as one line, and let the process end on its own. */
async function runChild(name: string, options: Options): Promise<void> {
  const bench = BENCHMARKS[name];
  if (!bench) throw new UsageError(`unknown benchmark ${name}`);
  const result = await bench.run(options, { redisServer: redisServerFromEnv() });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

interface ChildOutcome {
  result: object | null;
  error: string | null;
  durationMs: number;
  exitedByItself: boolean;
}

function runInChild(name: string, optionArgs: string[]): Promise<ChildOutcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const prof = optionArgs.find((a) => a.startsWith('--cpu-prof-dir='));
    const nodeArgs = prof ? ['--cpu-prof', prof] : [];
    const child = spawn(process.execPath, [...nodeArgs, __filename, `--child=${name}`, ...optionArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    let result: object | null = null;
    let resultAt = 0;
    let killedBecause: string | null = null;
    const kill = (why: string) => {
      killedBecause = why;
      child.kill('SIGKILL');
    };
    const overall = setTimeout(() => kill(`still running after ${BENCH_TIMEOUT_MS / 60_000} min`), BENCH_TIMEOUT_MS);
    let lingering: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      for (let nl = stdout.indexOf('\n'); nl >= 0; nl = stdout.indexOf('\n')) {
        const line = stdout.slice(0, nl).trim();
        stdout = stdout.slice(nl + 1);
        if (!line) continue;
        try {
          result = JSON.parse(line) as object;
          resultAt = performance.now();
          lingering ??= setTimeout(() => kill(`did not exit within ${EXIT_GRACE_MS / 1000} s of printing its result`), EXIT_GRACE_MS);
        } catch {
          process.stderr.write(`[bench ${name}] stdout: ${line}\n`);
        }
      }
    });
    child.once('error', (err) => {
      clearTimeout(overall);
      clearTimeout(lingering);
      resolve({ result: null, error: `could not start: ${err.message}`, durationMs: 0, exitedByItself: false });
    });
    child.once('close', (code, signal) => {
      clearTimeout(overall);
      clearTimeout(lingering);
      const durationMs = Math.round((resultAt || performance.now()) - t0);
      const failed = code !== 0 || result === null;
      const error = killedBecause ?? (failed ? `exited with ${signal ?? `code ${code}`}${result === null ? ' without a result' : ''} (its stderr is above)` : null);
      resolve({ result, error, durationMs, exitedByItself: killedBecause === null && signal === null });
    });
  });
}

interface Target {
  target: string;
  required: string;
  measured: number | null;
  unit: string;
  met: boolean | null;
  note?: string;
}

type JobsResult = Awaited<ReturnType<typeof runJobsBench>>;
type RebuildResult = Awaited<ReturnType<typeof runRebuildBench>>;
type StartupResult = Awaited<ReturnType<typeof runStartupBench>>;
type WsResult = Awaited<ReturnType<typeof runWsFollowersBench>>;
type LogRateResult = Awaited<ReturnType<typeof runLogRateBench>>;
type LogConcurrentResult = Awaited<ReturnType<typeof runLogConcurrentBench>>;

/** DESIGN.md "Targets", against what this run measured. */
function targets(results: Record<string, object | null>): Target[] {
  const out: Target[] = [];
  const atMost = (target: string, max: number, measured: number | null | undefined, unit: string): Target => ({
    target,
    required: `≤ ${max} ${unit}`,
    measured: measured ?? null,
    unit,
    met: measured == null ? null : measured <= max,
  });
  const atLeast = (target: string, min: number, measured: number | null | undefined, unit: string): Target => ({
    target,
    required: `≥ ${min} ${unit}`,
    measured: measured ?? null,
    unit,
    met: measured == null ? null : measured >= min,
  });
  const jobs = results.jobs as JobsResult | null | undefined;
  if (jobs !== undefined) {
    const ref = jobs?.reference;
    // One set per run (topology × stored history); named by the run when there are several.
    const runs: (NonNullable<JobsResult>['runs'][number] | null)[] = jobs ? jobs.runs : [null];
    for (const run of runs) {
      const of = runs.length > 1 && run ? ` [${run.topology}, ${run.history ? `${run.history.events.toLocaleString('en-US')} events stored` : 'empty store'}${jobs && jobs.runs.some((r) => r.round > 1) ? `, round ${run.round}` : ''}]` : '';
      const plain = run?.unsandboxed;
      const boxed = run?.sandboxed;
      const vs = atLeast(`tiny jobs submit → completed, unsandboxed, relative to BullMQ${of}`, 1.1, run?.jobsPerSecVsReference, '×');
      const roundRef = jobs?.references.find((r) => r.round === (run?.round ?? 1));
      if (ref?.skipped) vs.note = `reference skipped: ${ref.reason}`;
      else if (plain && roundRef) vs.note = `${plain.throughput.jobsPerSec} jobs/s against BullMQ's ${roundRef.jobsPerSec} jobs/s; CPU per job ${plain.throughput.cpuMsPerJob} ms against ${roundRef.cpuMsPerJob} ms`;
      else if (plain) vs.note = 'no reference in this round (it runs in the first topology\'s rounds)';
      out.push(vs);
      const sandboxed = atLeast(`tiny jobs submit → completed, sandboxed${of}`, 300, null, 'jobs/s');
      if (boxed && boxed.sandbox !== 'none') {
        sandboxed.measured = boxed.throughput.jobsPerSec;
        sandboxed.met = sandboxed.measured >= 300;
        sandboxed.note = `sandbox ${boxed.sandbox}`;
      } else sandboxed.note = `not measured: ${boxed ? 'the host allowed no sandbox (sandbox none)' : 'the sandboxed run was not made'}`;
      out.push(sandboxed);
      for (const [name, m] of [
        ['unsandboxed', plain],
        ['sandboxed', boxed],
      ] as const) {
        if (run && !m) continue;
        const at = `at ${m?.latency.ratePerSec ?? 50} jobs/s`;
        out.push(atMost(`submit → started ${at}, ${name}, p50${of}`, 3, m?.latency.submitToStarted.p50Ms, 'ms'));
        out.push(atMost(`submit → started ${at}, ${name}, p99${of}`, 10, m?.latency.submitToStarted.p99Ms, 'ms'));
      }
    }
    // With several rounds, the target itself is judged on the medians (each round's own ratio beside them).
    if (jobs && jobs.references.length > 1) {
      const vs = atLeast(`tiny jobs submit → completed, unsandboxed, relative to BullMQ [median of ${jobs.references.length} rounds]`, 1.1, jobs.jobsPerSecVsReference, '×');
      vs.note = `by round ${jobs.jobsPerSecVsReferenceByRound.join(' / ')}; BullMQ ${jobs.references.map((r) => r.jobsPerSec).join(' / ')} jobs/s; CPU per job ${jobs.cpuMsPerJobVsReference}× BullMQ's`;
      out.push(vs);
    }
    // DESIGN.md: with 1,000,000 stored events, throughput and p99 within 10% of an empty store.
    for (const h of jobs?.history ?? []) {
      const which = `${h.topology}, ${h.sandboxMode === 'none' ? 'unsandboxed' : 'sandboxed'}, ${h.events.toLocaleString('en-US')} events stored over an empty store`;
      const t = atLeast(`tiny jobs/s, ${which}`, 0.9, h.jobsPerSecRatio, '×');
      t.note = `${h.rounds > 1 ? `median of ${h.rounds} rounds; by round ${h.jobsPerSecRatioByRound.join(' / ')}; ` : ''}CPU per job ${h.cpuMsPerJobRatio}×`;
      out.push(t);
      const p = atMost(`submit → started p99, ${which}`, 1.1, h.submitToStartedP99Ratio, '×');
      p.note = `${h.rounds > 1 ? `median of ${h.rounds} rounds; by round ${h.submitToStartedP99RatioByRound.join(' / ')}; ` : ''}p50 ${h.submitToStartedP50Ratio}×`;
      out.push(p);
    }
  }
  const rebuild = results.rebuild as RebuildResult | null | undefined;
  if (rebuild !== undefined) out.push(atLeast('rebuilding projections from the store', 100_000, rebuild?.rebuild.eventsPerSec, 'events/s'));
  const startup = results.startup as StartupResult | null | undefined;
  if (startup !== undefined) {
    const small = startup?.runs[0];
    const large = startup?.runs[startup.runs.length - 1];
    const t = atMost('orchestrator start-up with the most history, over the least (warm starts)', 1.1, startup?.warmRatio, '×');
    if (small && large) t.note = `${large.events} events: ${large.warmStartMs} ms (cold ${large.coldStartMs} ms); ${small.events} events: ${small.warmStartMs} ms (cold ${small.coldStartMs} ms)`;
    out.push(t);
  }
  const ws = results.ws as WsResult | null | undefined;
  if (ws !== undefined) {
    for (const run of ws?.runs ?? [null]) {
      const n = run ? run.followers.toLocaleString('en-US') : 'N';
      const t = atMost(`${n} WebSocket followers: every line reaches every follower, slowest delivery`, 100, run?.maxMs, 'ms');
      if (run) {
        t.met = t.met === true && run.lossless;
        t.note = `p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms; ${run.delivered} of ${run.expected} deliveries${run.lossless ? '' : ' — LOSS'}; ${run.consumersPerFollower} consumers per follower`;
      }
      out.push(t);
      if (run && run.followers >= 10_000) out.push(atMost(`${n} WebSocket followers: api resident memory`, 512, run.apiPeakRssMb, 'MB'));
    }
  }
  const rate = results['logs-rate'] as LogRateResult | null | undefined;
  if (rate !== undefined) {
    for (const run of rate?.runs ?? []) {
      const edge = run.edge === 'ws' ? 'one WebSocket follower' : 'one gRPC Logs stream';
      const t = atLeast(`${(run.bytes / 2 ** 30).toFixed(2)} GiB of stdout to ${edge}`, 200, run.followerMBps, 'MB/s');
      t.met = t.met === true && run.complete;
      t.note = `job ${run.jobMBps} MB/s, stored ${run.storedMBps} MB/s, follower ${run.followerLagMs} ms behind the last chunk${run.complete ? '' : ` — INCOMPLETE: ${run.problem}`}`;
      out.push(t);
      out.push(atMost(`api resident memory, ${(run.bytes / 2 ** 30).toFixed(2)} GiB to ${edge}`, 256, run.apiPeakRssMb, 'MB'));
    }
  }
  const conc = results['logs-concurrent'] as LogConcurrentResult | null | undefined;
  if (conc !== undefined && conc) {
    const last = conc.rounds[conc.rounds.length - 1];
    out.push({
      target: `${conc.jobs} × ${Math.round(conc.bytesPerJob / 1e6)} MB followed at once, ${conc.rounds.length} rounds: every byte, then end`,
      required: 'lossless',
      measured: conc.rounds.reduce((n, r) => n + r.complete, 0),
      unit: 'followers complete',
      met: conc.lossless,
    });
    if (last) {
      const t = atMost('api resident memory after the rounds, over its baseline', 32, Math.round((last.apiRssAfterMb - conc.apiBaselineRssMb) * 10) / 10, 'MB');
      t.note = `baseline ${conc.apiBaselineRssMb} MB, after ${conc.rounds.map((r) => r.apiRssAfterMb).join(' / ')} MB`;
      out.push(t);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { names, options, optionArgs } = parseCommandLine(process.argv.slice(2));
  if (options.help) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  if (options.child !== undefined) return runChild(options.child, options);
  redisServerFromEnv();

  const machine: MachineInfo = machineInfo();
  const results: Record<string, object | null> = {};
  const benches: Record<string, { ok: boolean; durationMs: number; exitedByItself: boolean; error?: string }> = {};
  for (const name of names) {
    process.stderr.write(`[bench] ${name}: ${BENCHMARKS[name].about}\n`);
    const outcome = await runInChild(name, optionArgs);
    const ok = outcome.error === null;
    results[name] = ok ? outcome.result : null;
    benches[name] = { ok, durationMs: outcome.durationMs, exitedByItself: outcome.exitedByItself, ...(ok ? {} : { error: outcome.error ?? '' }) };
    const line = { bench: name, ok, ...(ok ? outcome.result : { error: outcome.error }), durationMs: outcome.durationMs, exitedByItself: outcome.exitedByItself, machine };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  const ok = Object.values(benches).every((b) => b.ok);
  process.stdout.write(`${JSON.stringify({ summary: true, ok, benches, targets: targets(results), machine })}\n`);
  if (!ok) process.exitCode = 1;
}

main().catch((error: unknown) => {
  if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  console.error(error);
  // A child that failed must not linger with whatever it left open.
  process.exit(1);
});
