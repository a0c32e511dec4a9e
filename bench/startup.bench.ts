/**
 * Orchestrator start-up against history (DESIGN.md: "an orchestrator starts as fast as on an
 * empty store"): a SQLite store is filled with real histories (each job's commands decided by
 * the real decider, one append per job; the last 100 jobs left queued, so the lifecycle is not
 * empty), then `startOrchestrator` is timed from the call to ready (scheduler caught up with the
 * head, relay running, consumers subscribed) on a real nats-server. Per size, twice: `cold`
 * with no lifecycle snapshot (the folds read the whole store from position 0, then snapshot it
 * at stop), and `warm`, a restart from the snapshots, as every start but the first does (the
 * median of five). The relay's checkpoint is set to the head first, as if it had published the
 * history (the benchmark is of start-up, not of publishing a million events).
 */
import { join } from 'node:path';
import { loadConfig } from '../libs/config/src';
import { SqliteEventStore, SqliteSnapshotStore } from '../libs/event-store/src';
import { startNatsServer } from '../libs/testing/src';
import { tempDir } from '../libs/testing/src/temp-dir';
import { startOrchestrator } from '../apps/orchestrator/src/start-orchestrator';
import { fillStore, perSecond, progress, roundMs, withDefaults } from './bench-kit';

export interface StartupBenchOptions {
  /** Stored events of each run (default 1,000 and 1,000,000; the last job may add a few more). */
  sizes: number[];
}

export const STARTUP_DEFAULTS: StartupBenchOptions = { sizes: [1_000, 1_000_000] };

const BENCH = 'startup';
/** Jobs left queued at the end of the history: the open jobs the lifecycle holds. */
const OPEN_JOBS = 100;
/** Warm starts per size; the median is reported. */
const WARM_STARTS = 5;

export async function runStartupBench(options: Partial<StartupBenchOptions> = {}) {
  const o = withDefaults(STARTUP_DEFAULTS, options);
  const tmp = tempDir('jobline-bench-startup-');
  const nats = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
  try {
    const runs = [];
    for (const size of o.sizes) runs.push(await runOne(size, join(tmp.path, `store-${size}`), nats.url));
    const small = runs[0];
    const large = runs[runs.length - 1];
    return {
      runs,
      // Warm start with the most history over warm start with the least: 1 is "as fast as".
      warmRatio: small && large ? Math.round((large.warmStartMs / Math.max(1, small.warmStartMs)) * 100) / 100 : null,
    };
  } finally {
    await nats.stop();
    tmp.remove();
  }
}

async function runOne(size: number, dataDir: string, natsUrl: string) {
  progress(BENCH, `storing ${size} events`);
  const { events, jobs, fillMs } = await fillStore(dataDir, size, BENCH, { openJobs: OPEN_JOBS, owner: 'bench' });
  const config = loadConfig({
    JOBLINE_NATS_URL: natsUrl,
    JOBLINE_DATA_DIR: dataDir,
    JOBLINE_ORCHESTRATOR_HTTP_PORT: 'off',
    JOBLINE_LOG_LEVEL: 'error',
  });
  const timeStart = async () => {
    const t0 = performance.now();
    const handle = await startOrchestrator(config);
    const ms = performance.now() - t0;
    const openJobs = handle.orchestrator.scheduler.lifecycle.size;
    await handle.stop();
    return { ms, openJobs };
  };
  progress(BENCH, `${events} events: cold start (no snapshot)`);
  const cold = await timeStart();
  progress(BENCH, `${events} events: warm starts (from the snapshot), ${WARM_STARTS}`);
  const warms = [];
  for (let i = 0; i < WARM_STARTS; i++) warms.push(await timeStart());
  // The median of a few: one start is tens of milliseconds, within the noise of a shared machine.
  const warm = warms.sort((a, b) => a.ms - b.ms)[Math.floor(WARM_STARTS / 2)];
  const snapshotDb = new SqliteEventStore({ path: join(dataDir, 'events.db') });
  const snapshot = await new SqliteSnapshotStore({ db: snapshotDb.database }).load('lifecycle:scheduler');
  await snapshotDb.close();
  return {
    events,
    jobs,
    openJobs: warm.openJobs,
    openJobsMatch: warms.every((w) => w.openJobs === cold.openJobs),
    coldStartMs: roundMs(cold.ms),
    warmStartMs: roundMs(warm.ms),
    snapshotPosition: snapshot?.position ?? null,
    fill: { eventsPerSec: perSecond(events, fillMs), totalMs: roundMs(fillMs) },
  };
}
