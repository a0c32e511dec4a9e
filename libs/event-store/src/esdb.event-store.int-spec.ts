import { describeEventStoreConformance } from './event-store.conformance';
import { EventStoreDbEventStore } from './esdb.event-store';

// A real server is needed (no Docker here); every test writes under a fresh stream prefix,
// so a shared server is fine.
const connectionString = process.env.JOBLINE_TEST_ESDB_URL;

if (connectionString) {
  describeEventStoreConformance('EventStoreDbEventStore', async () => {
    const store = new EventStoreDbEventStore({ connectionString });
    return {
      store,
      openAnother: async () => new EventStoreDbEventStore({ connectionString }),
      cleanup: () => store.close(),
      chained: false,
    };
  });
} else {
  describe('EventStoreDbEventStore', () => {
    it.skip('EventStoreDB/KurrentDB conformance: set JOBLINE_TEST_ESDB_URL=kurrentdb://host:2113?tls=false to run against a real server', () => {});
  });
}
