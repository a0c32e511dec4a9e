import { join } from 'node:path';
import { EventStoreDbEventStore, isEventStoreDbConnectionString, maskCredentials } from './esdb.event-store';
import type { CheckpointStore, EventStore, SnapshotStore } from './event-store.port';
import type { ChainCheckpointStore } from './chain-checkpoint';
import { EventStoreDbChainCheckpointStore, PostgresChainCheckpointStore, SqliteChainCheckpointStore } from './chain-checkpoint.stores';
import { PostgresCheckpointStore } from './postgres.checkpoint-store';
import { PostgresDatabase, maskPostgresUrl, type PostgresConnectionOptions } from './postgres.connection';
import { PostgresEventStore, type PostgresEventStoreTuning } from './postgres.event-store';
import { PostgresSnapshotStore } from './postgres.snapshot-store';
import { SqliteCheckpointStore } from './sqlite.checkpoint-store';
import { SqliteEventStore } from './sqlite.event-store';
import { SqliteSnapshotStore } from './sqlite.snapshot-store';

export type EventStoreKind = 'sqlite' | 'postgres' | 'esdb';

export interface OpenedEventStore {
  eventStore: EventStore;
  kind: EventStoreKind;
  /** Checkpoints of relays and projections that live next to the service, in SQLite, whatever the store. */
  checkpoints: CheckpointStore;
  /**
   * Checkpoints kept in the event store's own database, so instances on several machines
   * share them: the PostgreSQL schema, or the SQLite events file (one machine). Undefined
   * on EventStoreDB.
   */
  sharedCheckpoints?: CheckpointStore;
  /** Snapshots in the event store's own database (as `sharedCheckpoints`). Undefined on EventStoreDB. */
  snapshots?: SnapshotStore;
  /** Signed chain checkpoints, in the store's own database (as `sharedCheckpoints`; on EventStoreDB, stream `$jobline-chain-checkpoints`). */
  chainCheckpoints?: ChainCheckpointStore;
  /** For logs: the adapter and where it is, with any password masked. */
  describe: string;
  close(): Promise<void>;
}

export interface OpenEventStoreOptions {
  /** For a `postgres://` store; the URL's `?schema=` wins over `schema` here. */
  postgres?: Omit<PostgresConnectionOptions, 'connectionString'> & PostgresEventStoreTuning;
}

/**
 * `sqlite` (the embedded default: `<dataDir>/events.db`), a PostgreSQL URL (`postgres://`
 * or `postgresql://`; `?schema=NAME` picks the schema, default `jobline`), or a
 * KurrentDB/EventStoreDB connection string (`kurrentdb://`, `kurrentdb+discover://`,
 * `esdb://`, `esdb+discover://`). Anything else throws; nothing connects until first use.
 */
export function openEventStore(spec: string, dataDir: string, options: OpenEventStoreOptions = {}): OpenedEventStore {
  let opened: Omit<OpenedEventStore, 'checkpoints' | 'close'> & { closeStore(): Promise<void> };
  if (spec === 'sqlite') {
    const path = join(dataDir, 'events.db');
    const store = new SqliteEventStore({ path });
    opened = {
      eventStore: store,
      kind: 'sqlite',
      sharedCheckpoints: new SqliteCheckpointStore({ db: store.database }),
      snapshots: new SqliteSnapshotStore({ db: store.database }),
      chainCheckpoints: new SqliteChainCheckpointStore({ db: store.database }),
      describe: `SQLite ${path}`,
      closeStore: () => store.close(),
    };
  } else if (isPostgresUrl(spec)) {
    const { connectionString, schema } = parsePostgresUrl(spec);
    const database = new PostgresDatabase({ ...options.postgres, connectionString, schema: schema ?? options.postgres?.schema });
    const store = new PostgresEventStore({ ...options.postgres, database });
    opened = {
      eventStore: store,
      kind: 'postgres',
      sharedCheckpoints: new PostgresCheckpointStore({ database }),
      snapshots: new PostgresSnapshotStore({ database }),
      chainCheckpoints: new PostgresChainCheckpointStore({ database }),
      describe: `PostgreSQL ${maskPostgresUrl(connectionString)} schema ${database.schema}`,
      closeStore: async () => {
        await store.close();
        await database.close();
      },
    };
  } else if (isEventStoreDbConnectionString(spec)) {
    const store = new EventStoreDbEventStore({ connectionString: spec });
    opened = {
      eventStore: store,
      kind: 'esdb',
      chainCheckpoints: new EventStoreDbChainCheckpointStore({ client: store.client }),
      describe: `EventStoreDB ${maskCredentials(spec)}`,
      closeStore: () => store.close(),
    };
  } else {
    throw new Error(
      `JOBLINE_EVENT_STORE must be "sqlite", a postgres:// URL or a kurrentdb:// (esdb://) connection string, not ${JSON.stringify(maskPostgresUrl(maskCredentials(spec)))}`,
    );
  }
  const checkpoints = new SqliteCheckpointStore({ path: join(dataDir, 'checkpoints.db') });
  const { closeStore, ...rest } = opened;
  return {
    ...rest,
    checkpoints,
    close: async () => {
      await closeStore();
      await checkpoints.close();
    },
  };
}

export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//.test(spec);
}

/**
 * Takes Jobline's own `schema` parameter out of a PostgreSQL URL (node-postgres would pass
 * it to the server as a setting). Throws on a URL that does not parse.
 */
export function parsePostgresUrl(spec: string): { connectionString: string; schema?: string } {
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new Error(`not a valid PostgreSQL URL: ${JSON.stringify(maskPostgresUrl(spec))}`);
  }
  if (!isPostgresUrl(spec) || (!url.hostname && !url.searchParams.get('host'))) {
    throw new Error(`a PostgreSQL URL needs postgres:// and a host (or ?host=/socket/dir): ${JSON.stringify(maskPostgresUrl(spec))}`);
  }
  const schemas = url.searchParams.getAll('schema');
  if (schemas.length > 1) throw new Error(`more than one schema= in ${JSON.stringify(maskPostgresUrl(spec))}`);
  if (schemas.length === 0) return { connectionString: spec };
  url.searchParams.delete('schema');
  return { connectionString: url.toString(), schema: schemas[0] };
}
