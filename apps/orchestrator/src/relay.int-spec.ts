import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { JobSpecSchema } from '../../../libs/contracts/src';
import { SqliteCheckpointStore, SqliteEventStore } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { JetStreamPublisher, type PublishItem } from '../../../libs/messaging/src/publisher';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { JobCommandHandler } from './job-command.handler';
import { Relay } from './relay';

/**
 * The relay's batches on a store that commits by the turn of the event loop (SQLite's group
 * commit): what is appended in reaction to a batch's events, in the turn they arrive (the
 * scheduler's dispatch of a job just queued), leaves with them, not one publish later.
 */

const quiet = { log: () => undefined, warn: () => undefined, debug: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };

/** A real publisher that remembers the subjects of each publishMany call. */
class RecordingPublisher extends JetStreamPublisher {
  readonly batches: string[][] = [];
  override publishMany(items: PublishItem[]): ReturnType<JetStreamPublisher['publishMany']> {
    this.batches.push(items.map((i) => i.subject.split('.').at(-1)!));
    return super.publishMany(items);
  }
}

describe('Relay on SQLite with group commit', () => {
  let dir: TempDir;
  let events: SqliteEventStore;
  let checkpoints: SqliteCheckpointStore;
  let server: RunningNatsServer;
  let nc: NatsConnection;

  beforeEach(async () => {
    dir = tempDir('jobline-relay-');
    events = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ db: events.database });
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'relay-test' });
    await ensureStreams(await jetstreamManager(nc));
  });

  afterEach(async () => {
    await nc.drain();
    await server.stop();
    await events.close();
    dir.remove();
  });

  it('publishes a dispatch appended in the turn its job\'s queueing arrived in the same batch', async () => {
    const handler = new JobCommandHandler({ eventStore: events });
    const publisher = new RecordingPublisher(jetstream(nc));
    const relay = new Relay({ eventStore: events, checkpoints, publisher, core: nc, jobs: handler, logger: quiet });
    await relay.start();
    const jobId = randomUUID();
    // As the scheduler does: it follows the store and dispatches a queued job as soon as it sees it.
    const follower = events.subscribeToAll();
    const dispatched = (async () => {
      for await (const e of follower) {
        if (e.type !== 'JobQueued') continue;
        return handler.execute(jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'e1', now: new Date().toISOString() } }, { actor: 'scheduler', causationId: 'last-event' });
      }
    })();
    try {
      await handler.execute(jobId, { type: 'SubmitJob', data: { jobId, owner: 'alice', spec: JobSpecSchema.parse({ command: ['true'] }), now: new Date().toISOString() } }, { actor: 'alice', causationId: 'submit-1' });
      await dispatched;
      await relay.waitFor(await events.headPosition());
      expect(publisher.batches).toEqual([['JobSubmitted', 'JobQueued', 'JobDispatched', 'e1']]);
    } finally {
      await follower.close();
      await relay.stop();
    }
  });
});
