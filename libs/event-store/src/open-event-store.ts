import { join } from 'node:path';
import { EventStoreDbEventStore } from './esdb.event-store';
import type { CheckpointStore, EventStore } from './event-store.port';
import { SqliteCheckpointStore } from './sqlite.checkpoint-store';
import { SqliteEventStore } from './sqlite.event-store';

export interface OpenedEventStore {
  eventStore: EventStore;
  /** Checkpoints of relays and projections live next to the service, in SQLite, whatever the store. */
  checkpoints: CheckpointStore;
  describe: string;
  close(): Promise<void>;
}

/**
 * `sqlite` (the embedded default: `<dataDir>/events.db`) or an EventStoreDB/KurrentDB
 * connection string (`esdb://`, `esdb+discover://`, `kurrentdb://`).
 */
export function openEventStore(spec: string, dataDir: string): OpenedEventStore {
  const checkpoints = new SqliteCheckpointStore({ path: join(dataDir, 'checkpoints.db') });
  let eventStore: EventStore;
  let describe: string;
  if (spec === 'sqlite') {
    eventStore = new SqliteEventStore({ path: join(dataDir, 'events.db') });
    describe = `SQLite ${join(dataDir, 'events.db')}`;
  } else if (/^(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover):\/\//.test(spec)) {
    eventStore = new EventStoreDbEventStore({ connectionString: spec });
    describe = `EventStoreDB ${spec.replace(/\/\/[^@/]*@/, '//***@')}`;
  } else {
    throw new Error(`JOBLINE_EVENT_STORE must be "sqlite" or an esdb:// connection string, not ${JSON.stringify(spec)}`);
  }
  return {
    eventStore,
    checkpoints,
    describe,
    close: async () => {
      await eventStore.close();
      await checkpoints.close();
    },
  };
}
