import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JOB_STREAM_PREFIX, decodeJobEvent, type JobView } from '../../../libs/contracts/src';
import { TERMINAL_PHASES, fold, type Job } from '../../../libs/domain/src';
import { SqliteEventStore, openEventStore, type EventStore, type RecordedEvent } from '../../../libs/event-store/src';
import { JobsProjection } from '../../../apps/api/src/projections/jobs.projection';
import type { RestClient } from '../support';
import type { Topology } from './topology';

/** What the fault test asserts after each fault, as plain functions over the running topology. */

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/** The store the services write, opened for reading beside them. */
export function openStoreForReading(t: Topology, scratchDir: string): { store: EventStore; close(): Promise<void> } {
  if (t.store.kind === 'sqlite') {
    const store = new SqliteEventStore({ path: join(t.layout.dataDirs.orchestrator, 'events.db') });
    return { store, close: () => store.close() };
  }
  const opened = openEventStore(t.layout.eventStore, scratchDir);
  return { store: opened.eventStore, close: () => opened.close() };
}

/** Every stored event of every job stream, in position order. */
export async function readJobStreams(store: EventStore): Promise<Map<string, RecordedEvent[]>> {
  const streams = new Map<string, RecordedEvent[]>();
  let after = -1;
  for (;;) {
    const page = await store.readAll({ after, maxCount: 5000 });
    if (page.length === 0) break;
    for (const r of page) {
      after = r.position;
      if (!r.streamId.startsWith(JOB_STREAM_PREFIX)) continue;
      const jobId = r.streamId.slice(JOB_STREAM_PREFIX.length);
      let s = streams.get(jobId);
      if (!s) streams.set(jobId, (s = []));
      s.push(r);
    }
  }
  return streams;
}

export interface HistoryVerdict {
  /** The history breaks a rule (gap, order, does not fold, starts wrong, events after the end). */
  problems: string[];
  /** How often the job ended: reached a terminal phase not followed by a retry. More than 1: it completed twice. */
  ends: number;
  /** JobCompleted with exit code 0. */
  successes: number;
  types: string[];
}

/**
 * One job's history is whole and in order: revisions 0..n without a gap, positions rising,
 * it starts with JobSubmitted, every event decodes and folds through the domain's fold, and
 * it ends once: after a terminal phase only a retry (after a failure) or JobPurged follows.
 */
export function verifyHistory(jobId: string, events: readonly RecordedEvent[]): HistoryVerdict {
  const problems: string[] = [];
  const types = events.map((e) => e.type);
  const said = () => types.join(',');
  events.forEach((e, i) => {
    if (e.revision !== i) problems.push(`job ${jobId}: revision ${e.revision} at index ${i} (${said()})`);
    if (i > 0 && e.position <= events[i - 1].position) problems.push(`job ${jobId}: position ${e.position} after ${events[i - 1].position}`);
  });
  if (types[0] !== 'JobSubmitted') problems.push(`job ${jobId}: history starts with ${types[0]}`);
  let ends = 0;
  let successes = 0;
  try {
    let job: Job | undefined;
    let wasTerminal = false;
    events.forEach((r, i) => {
      const e = decodeJobEvent(r);
      const before = job?.phase;
      // After a failure (an exit code, a lost attempt) the job may be retried, or closed as
      // failed; after a timeout or a forced cancel, the executor's late report of the stopped
      // attempt (JobAttemptStopped, once: the decider's stoppedLate); after anything else
      // terminal, only a purge may follow.
      const allowedAfter =
        before === 'failed'
          ? ['JobRetryScheduled', 'JobFailed', 'JobPurged']
          : (before === 'cancelled' || before === 'timed_out') && !types.slice(0, i).includes('JobAttemptStopped')
            ? ['JobAttemptStopped', 'JobPurged']
            : ['JobPurged'];
      if (before && TERMINAL_PHASES.has(before) && !allowedAfter.includes(e.type)) {
        problems.push(`job ${jobId}: ${e.type} at revision ${i} after it was ${before} (${said()})`);
      }
      job = fold([e], job);
      if (e.type === 'JobCompleted' && e.data.exitCode === 0) successes++;
      // One end per run of terminal states that no retry reopens.
      const terminal = TERMINAL_PHASES.has(job.phase);
      if (terminal && !wasTerminal && types.slice(i + 1).find((t) => t !== 'JobFailed' && t !== 'JobPurged') !== 'JobRetryScheduled') ends++;
      wasTerminal = terminal;
    });
  } catch (err) {
    problems.push(`job ${jobId}: does not fold: ${(err as Error).message} (${said()})`);
  }
  return { problems, ends, successes, types };
}

/**
 * The api's live read model against one rebuilt from position 0 of the store: every job the
 * rebuild knows, as GET /v1/jobs/{id} answers it, and the totals of GET /v1/stats.
 */
export async function compareWithRebuild(store: EventStore, api: RestClient): Promise<string[]> {
  const rebuilt = await JobsProjection.rebuild(store, ':memory:');
  try {
    const differences: string[] = [];
    const dump = rebuilt.dump();
    for (const row of dump.jobs) {
      const expected = rebuilt.get(row.id) as JobView;
      const res = await api.request(`/v1/jobs/${row.id}`);
      if (res.status !== 200) {
        differences.push(`job ${row.id}: live GET answers ${res.status}, the rebuild has it ${expected.status}`);
        await res.arrayBuffer();
        continue;
      }
      const live = (await res.json()) as JobView;
      if (JSON.stringify(live) !== JSON.stringify(expected)) differences.push(`job ${row.id}: live ${JSON.stringify(live)} != rebuilt ${JSON.stringify(expected)}`);
    }
    const stats = (await (await api.request('/v1/stats')).json()) as { total: number; byStatus: Record<string, number> };
    const byStatus = rebuilt.countByStatus();
    if (stats.total !== dump.jobs.length) differences.push(`GET /v1/stats total ${stats.total}, the rebuild has ${dump.jobs.length} jobs`);
    for (const [status, n] of Object.entries(byStatus)) if ((stats.byStatus[status] ?? 0) !== n) differences.push(`GET /v1/stats ${status}: ${stats.byStatus[status] ?? 0}, the rebuild has ${n}`);
    return differences;
  } finally {
    await rebuilt.close();
  }
}

/** Processes whose environment carries the run's marker (every job of the test gets it in `env`): pid → command line. */
export function jobProcesses(marker: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const environ = readFileSync(`/proc/${d}/environ`);
      if (!environ.includes(marker)) continue;
      found.set(Number(d), readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}
