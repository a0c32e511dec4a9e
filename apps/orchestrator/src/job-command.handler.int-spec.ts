import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { JobSpecSchema, decodeJobEvent, jobStreamName } from '../../../libs/contracts/src';
import { SqliteEventStore } from '../../../libs/event-store/src';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';
import { tempDir, type TempDir } from '../../../libs/testing/src';
import { JobCommandHandler, type CommandMeta } from './job-command.handler';

/**
 * The handler keeps the head of an open job's stream between commands (README "Benchmarks", 3 Dec,
 * the orchestrator's command path), on a real SQLite store shared with a second handler standing
 * for another orchestrator process: a command appends on the kept head without reading the stream,
 * and whatever another writer appended meanwhile is decided on the stream as it stands.
 */

const now = () => new Date().toISOString();
const spec = JobSpecSchema.parse({ command: ['true'] });
const finished = { signal: null, oomKilled: false, durationMs: 1, finishedAt: now(), usage: null, logBytes: 0 };
const meta = (causationId: CommandMeta['causationId'] = 'test-command'): CommandMeta => ({ actor: 'test', causationId, correlationId: 'flow-1' });

/** The store, counting the stream reads made through it. */
function countingReads(store: SqliteEventStore): { store: EventStore; reads: () => number } {
  let reads = 0;
  const counted: EventStore = Object.create(store) as EventStore;
  counted.readStream = (streamId) => {
    reads++;
    return store.readStream(streamId);
  };
  return { store: counted, reads: () => reads };
}

describe('JobCommandHandler: kept stream heads (SQLite)', () => {
  let dir: TempDir;
  let events: SqliteEventStore;

  beforeEach(() => {
    dir = tempDir('jobline-handler-heads-');
    events = new SqliteEventStore({ path: join(dir.path, 'events.db') });
  });

  afterEach(async () => {
    await events.close();
    dir.remove();
  });

  const stored = async (jobId: string) => (await events.readStream(jobStreamName(jobId))).map(decodeJobEvent);

  it('reads an open job\'s stream once: later commands append on the kept head, with the causes and correlation a read would give', async () => {
    const { store, reads } = countingReads(events);
    const handler = new JobCommandHandler({ eventStore: store });
    const jobId = randomUUID();
    await handler.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: now() } }, meta());
    await handler.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: now() } }, meta('last-event'));
    await handler.execute(jobId, { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: now(), sandbox: 'none' } }, meta('dispatched'));
    const done = await handler.execute(jobId, { type: 'RecordFinished', data: { attempt: 1, exitCode: 0, ...finished } }, meta('report-1'));
    expect(reads()).toBe(1);
    expect(done.job.phase).toBe('succeeded');

    const [submitted, queued, dispatched, started, completed] = await stored(jobId);
    expect([submitted, queued, dispatched, started, completed].map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
    expect(dispatched.metadata.causationId).toBe(queued.id);
    expect(started.metadata.causationId).toBe(dispatched.id);
    expect(completed.metadata.causationId).toBe('report-1');
    // Event ids are UUIDv7: recorded later, sorted later (the store's unique index appends at its end).
    const ids = [submitted, queued, dispatched, started, completed].map((e) => e.id);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(ids.slice(1).every((id, i) => id.slice(0, 13) >= ids[i].slice(0, 13))).toBe(true);
    expect(new Set([submitted, dispatched, started, completed].map((e) => e.metadata.correlationId))).toEqual(new Set(['flow-1']));
  });

  it('reads the stream again after forgetKept, and for a job whose head was forgotten beyond keptStreams', async () => {
    const { store, reads } = countingReads(events);
    const handler = new JobCommandHandler({ eventStore: store, keptStreams: 1 });
    const [a, b] = [randomUUID(), randomUUID()];
    for (const jobId of [a, b]) await handler.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: now() } }, meta());
    await handler.execute(a, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: now() } }, meta('last-event'));
    expect(reads()).toBe(3); // a's head was forgotten when b's was kept
    handler.forgetKept();
    await handler.execute(a, { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: now(), sandbox: 'none' } }, meta('dispatched'));
    expect(reads()).toBe(4);
  });

  it('decides again on the stream when another writer appended meanwhile: the kept head conflicts', async () => {
    const mine = new JobCommandHandler({ eventStore: events });
    const other = new JobCommandHandler({ eventStore: events });
    const jobId = randomUUID();
    await mine.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: now() } }, meta());
    await mine.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: now() } }, meta('last-event'));
    await other.execute(jobId, { type: 'RequestCancel', data: { actor: { id: 'alice', admin: false }, now: now() } }, meta());

    // On the kept head (dispatched, no cancel) this would be JobCompleted; the stream has the cancel request.
    const handled = await mine.execute(jobId, { type: 'RecordFinished', data: { attempt: 1, exitCode: 0, ...finished } }, meta('report-1'));
    expect(handled.events.map((e) => e.type)).toEqual(['JobCancelled']);
    expect((await stored(jobId)).map((e) => e.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobCancelRequested', 'JobCancelled']);
  });

  it('decides again on the stream when the kept head refuses the command', async () => {
    const mine = new JobCommandHandler({ eventStore: events });
    const other = new JobCommandHandler({ eventStore: events });
    const jobId = randomUUID();
    await mine.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: now() } }, meta());
    await other.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: now() } }, meta('last-event'));

    // The kept head says queued, where a start is refused; the stream says dispatched.
    const handled = await mine.execute(jobId, { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: now(), sandbox: 'none' } }, meta('dispatched'), {
      precondition: (job) => {
        if (job.executorId !== 'e1') throw new Error(`attempt dispatched to ${job.executorId}`);
      },
    });
    expect(handled.job.phase).toBe('running');
    const history = await stored(jobId);
    expect(history.at(-1)?.metadata.causationId).toBe(history.find((e) => e.type === 'JobDispatched')?.id);
  });

  it('answers a command that decides nothing on the stream, not on the kept head: a repeated claim of an attempt lost meanwhile is not running', async () => {
    const mine = new JobCommandHandler({ eventStore: events });
    const other = new JobCommandHandler({ eventStore: events });
    const jobId = randomUUID();
    const start = { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: now(), sandbox: 'none' } } as const;
    await mine.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec, now: now() } }, meta());
    await mine.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: now() } }, meta('last-event'));
    await mine.execute(jobId, start, meta('dispatched'));
    await other.execute(jobId, { type: 'MarkLost', data: { attempt: 1, executorId: 'e1', reason: 'silent', now: now() } }, meta('last-event'));

    // The kept head says running (a repeated start changes nothing there): the stream says failed.
    const handled = await mine.execute(jobId, start, meta('dispatched'));
    expect(handled.events).toEqual([]);
    expect(handled.job.phase).toBe('failed');
  });
});
