import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JOB_STREAM_PREFIX, decodeJobEvent } from '../../../libs/contracts/src';
import { fold } from '../../../libs/domain/src';
import { SqliteEventStore } from '../../../libs/event-store/src';
import { JobsProjection } from '../../api/src/projections/jobs.projection';

export interface ReplayResult {
  /** Events read from the store from position 0 (every stream), counted one by one. */
  events: number;
  jobs: number;
  rebuildMs: number;
  eventsPerSecond: number;
  /** Streams that do not decode or fold, or whose revisions have gaps. */
  problems: string[];
  /** null: no live read model in the data folder. */
  liveMatches: boolean | null;
  differences: string[];
}

/**
 * Rebuilds the jobs read model from position 0 into a scratch file, checks every job
 * history (decodes, revisions contiguous, folds), and compares with the live read model
 * after letting it catch up to the same position.
 */
export async function replay(o: { dataDir: string }): Promise<ReplayResult> {
  const dataDir = resolve(o.dataDir);
  const eventsFile = join(dataDir, 'events.db');
  if (!existsSync(eventsFile)) throw new Error(`no event store at ${eventsFile} (run \`jobline dev\` first, or pass --data-dir)`);
  const store = new SqliteEventStore({ path: eventsFile });
  const scratch = mkdtempSync(join(tmpdir(), 'jobline-replay-'));
  try {
    const started = performance.now();
    const rebuilt = await JobsProjection.rebuild(store, join(scratch, 'read-models.db'));
    const rebuildMs = Math.round(performance.now() - started);
    const head = rebuilt.position;
    const { problems, events } = await verifyHistories(store, head);
    const dump = rebuilt.dump();
    let liveMatches: boolean | null = null;
    const differences: string[] = [];
    const liveFile = join(dataDir, 'read-models.db');
    if (existsSync(liveFile)) {
      const live = new JobsProjection({ path: liveFile });
      try {
        await live.catchUp(store);
        const liveDump = live.dump();
        if (liveDump.position !== dump.position) differences.push(`live at position ${liveDump.position}, rebuild at ${dump.position}`);
        const byId = new Map(liveDump.jobs.map((j) => [j.id, j]));
        for (const j of dump.jobs) {
          const l = byId.get(j.id);
          if (!l) differences.push(`job ${j.id} missing from the live read model`);
          else if (JSON.stringify(l) !== JSON.stringify(j)) differences.push(`job ${j.id} differs`);
          byId.delete(j.id);
        }
        for (const id of byId.keys()) differences.push(`job ${id} only in the live read model`);
        if (JSON.stringify(liveDump.idempotency) !== JSON.stringify(dump.idempotency)) differences.push('idempotency keys differ');
        liveMatches = differences.length === 0;
      } finally {
        await live.close();
      }
    }
    await rebuilt.close();
    return {
      events,
      jobs: dump.jobs.length,
      rebuildMs,
      eventsPerSecond: rebuildMs > 0 ? Math.round((events * 1000) / rebuildMs) : events,
      problems,
      liveMatches,
      differences: differences.slice(0, 20),
    };
  } finally {
    await store.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Checks every job history and counts the events read. Positions are not a count: SQLite's
 * start at 1 and other stores' leave gaps, so `head + 1` overstated it (by one, or more).
 */
async function verifyHistories(store: SqliteEventStore, head: number): Promise<{ problems: string[]; events: number }> {
  const problems: string[] = [];
  let events = 0;
  const revisions = new Map<string, number>();
  const states = new Map<string, ReturnType<typeof fold>>();
  let after = -1;
  while (after < head) {
    const page = await store.readAll({ after, maxCount: 5000 });
    if (page.length === 0) break;
    for (const r of page) {
      after = r.position;
      events++;
      if (!r.streamId.startsWith(JOB_STREAM_PREFIX)) continue;
      const expected = (revisions.get(r.streamId) ?? -1) + 1;
      if (r.revision !== expected) problems.push(`${r.streamId}: revision ${r.revision} where ${expected} was expected`);
      revisions.set(r.streamId, r.revision);
      try {
        states.set(r.streamId, fold([decodeJobEvent(r)], states.get(r.streamId)));
      } catch (err) {
        problems.push(`${r.streamId} at position ${r.position}: ${(err as Error).message}`);
      }
    }
  }
  return { problems, events };
}
