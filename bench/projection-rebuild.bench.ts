/**
 * Rebuilding the jobs read model from position 0 (DESIGN.md target: ≥ 100,000 events/s):
 * a SQLite event store is filled with real histories (each job's commands decided by the
 * real decider, one append per job), then `JobsProjection.rebuild` is timed into a new file.
 * One job in ten exits 1 (no retry), so it ends failed and the views are not all alike.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { parseJobSpec } from '../libs/contracts/src';
import type { JobCommand } from '../libs/domain/src';
import { SqliteEventStore } from '../libs/event-store/src';
import { tempDir } from '../libs/testing/src/temp-dir';
import { JobsProjection } from '../apps/api/src/projections/jobs.projection';
import { perSecond, progress, roundMs, storeHistory, withDefaults } from './bench-kit';

export interface RebuildBenchOptions {
  /** Events to store before the rebuild (default 200,000; the last job may add a few more). */
  events: number;
}

export const REBUILD_DEFAULTS: RebuildBenchOptions = { events: 200_000 };

const BENCH = 'rebuild';

export async function runRebuildBench(options: Partial<RebuildBenchOptions> = {}) {
  const o = withDefaults(REBUILD_DEFAULTS, options);
  const tmp = tempDir('jobline-bench-rebuild-');
  const store = new SqliteEventStore({ path: join(tmp.path, 'events.db') });
  let projection: JobsProjection | null = null;
  try {
    progress(BENCH, `storing ${o.events} events`);
    const fill0 = performance.now();
    let events = 0;
    let jobs = 0;
    let failedJobs = 0;
    while (events < o.events) {
      const exitCode = jobs % 10 === 9 ? 1 : 0;
      events += await storeJob(store, exitCode, new Date(Date.UTC(2026, 0, 1) + jobs * 1000).toISOString());
      jobs++;
      if (exitCode !== 0) failedJobs++;
    }
    const fillMs = performance.now() - fill0;

    progress(BENCH, `rebuilding the jobs projection from ${events} events (${jobs} jobs)`);
    const t0 = performance.now();
    projection = await JobsProjection.rebuild(store, join(tmp.path, 'read-models.db'));
    const rebuildMs = performance.now() - t0;

    const counts = projection.countByStatus();
    const head = await store.headPosition();
    const correct = projection.position === head && counts.succeeded === jobs - failedJobs && counts.failed === failedJobs;
    if (!correct) progress(BENCH, `the rebuilt projection does not match the store: position ${projection.position}/${head}, ${JSON.stringify(counts)}`);
    return {
      events,
      jobs,
      rebuild: { eventsPerSec: perSecond(events, rebuildMs), totalMs: roundMs(rebuildMs) },
      fill: { eventsPerSec: perSecond(events, fillMs), totalMs: roundMs(fillMs), appendsPerSec: perSecond(jobs, fillMs) },
      readModel: { succeeded: counts.succeeded, failed: counts.failed, matchesStore: correct },
    };
  } finally {
    await projection?.close();
    await store.close();
    tmp.remove();
  }
}

const SPEC = (() => {
  const parsed = parseJobSpec({ command: ['true'] });
  if (!parsed.ok) throw new Error(`bad bench spec: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
})();

/** One job's whole life, decided command by command on the folded state, appended at once. */
async function storeJob(store: SqliteEventStore, exitCode: number, now: string): Promise<number> {
  const jobId = randomUUID();
  const commands: JobCommand[] = [
    { type: 'SubmitJob', data: { jobId, owner: 'bench', spec: SPEC, now } },
    { type: 'DispatchJob', data: { attempt: 1, executorId: 'local', now } },
    { type: 'RecordStarted', data: { attempt: 1, executorId: 'local', startedAt: now, sandbox: 'none' } },
    {
      type: 'RecordFinished',
      data: { attempt: 1, exitCode, signal: null, oomKilled: false, durationMs: 2, finishedAt: now, usage: null, logBytes: 0 },
    },
  ];
  return storeHistory(store, jobId, commands, now);
}
