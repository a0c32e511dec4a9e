import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { JobSpecSchema } from '../../../libs/contracts/src';
import { SqliteEventStore } from '../../../libs/event-store/src';
import type { CheckpointStore } from '../../../libs/event-store/src/event-store.port';
import type { JetStreamPublisher, PublishItem } from '../../../libs/messaging/src/publisher';
import { tempDir, type TempDir } from '../../../libs/testing/src/temp-dir';
import { JobCommandHandler, type CommandMeta } from './job-command.handler';
import { Relay } from './relay';

/**
 * Where the relay's batches end (README "Benchmarks", 3 Dec, latency): the events of one append
 * leave together; after JobQueued the relay gives this process's scheduler the rest of the turn
 * of the event loop and the next (where SQLite's group commit stores what the turn appended), so a
 * dispatch made in it leaves in the same batch with its run order; after
 * any other event it publishes as soon as the store has nothing more at hand, within the turn.
 * Only microtasks and setImmediate are used to tell these apart: no timers.
 */

const quiet = { log: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined };
const meta = (jobId: string): CommandMeta => ({ actor: 'test', causationId: 'test-command', correlationId: jobId });
const spec = JobSpecSchema.parse({ command: ['true'] });

/** Lets queued microtasks run (many rounds), never a macrotask. */
async function microtasks(rounds = 500): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

describe('Relay batches', () => {
  let dir: TempDir;
  let store: SqliteEventStore;
  let handler: JobCommandHandler;
  let relay: Relay;
  /** The subjects of each publishMany call, in order. */
  let batches: string[][];

  beforeEach(async () => {
    dir = tempDir('jobline-relay-batches-');
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    handler = new JobCommandHandler({ eventStore: store });
    batches = [];
    const publisher = {
      publishMany: async (items: readonly PublishItem[]) => {
        batches.push(items.map((i) => i.subject));
        return items.map((_, i) => ({ stream: 'test', seq: i + 1, duplicate: false }));
      },
    } as unknown as JetStreamPublisher;
    let saved = -1;
    const checkpoints: CheckpointStore = { load: async () => saved, save: async (_name, position) => void (saved = position) };
    relay = new Relay({ eventStore: store, checkpoints, publisher, core: { publish: () => undefined }, jobs: handler, logger: quiet });
    await relay.start();
  });

  afterEach(async () => {
    await relay.stop();
    await store.close();
    dir.remove();
  });

  const submit = (jobId: string) => handler.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'o', spec, now: new Date().toISOString() } }, meta(jobId));
  const dispatch = (jobId: string) => handler.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: new Date().toISOString() } }, meta(jobId));
  const start = (jobId: string) =>
    handler.execute(jobId, { type: 'RecordStarted', data: { attempt: 1, executorId: 'e1', startedAt: new Date().toISOString(), sandbox: 'none' } }, meta(jobId));

  it('after JobQueued waits for the end of the turn; a dispatch appended within it leaves in the same batch with its run order, at once', async () => {
    const jobId = randomUUID();
    await submit(jobId);
    await microtasks();
    expect(batches).toEqual([]);
    // As the scheduler does when a slot is free: the dispatch follows the submit's append within the same turn.
    await dispatch(jobId);
    await microtasks();
    expect(batches).toEqual([[`jobline.evt.${jobId}.JobSubmitted`, `jobline.evt.${jobId}.JobQueued`, `jobline.evt.${jobId}.JobDispatched`, 'jobline.work.e1']]);
  });

  it('with no dispatch in the turn or the next (when a group commit would store it), the events of the submit leave together after them', async () => {
    const jobId = randomUUID();
    await submit(jobId);
    await microtasks();
    expect(batches).toEqual([]);
    await nextTurn();
    await microtasks();
    expect(batches).toEqual([]);
    await nextTurn();
    await microtasks();
    expect(batches).toEqual([[`jobline.evt.${jobId}.JobSubmitted`, `jobline.evt.${jobId}.JobQueued`]]);
  });

  it('publishes a JobStarted within the turn it was appended in, not after it', async () => {
    const jobId = randomUUID();
    await submit(jobId);
    await dispatch(jobId);
    await microtasks();
    expect(batches).toHaveLength(1);
    await relay.waitFor(await store.headPosition());

    await start(jobId);
    await microtasks();
    expect(batches).toEqual([expect.any(Array), [`jobline.evt.${jobId}.JobStarted`]]);
  });
});
