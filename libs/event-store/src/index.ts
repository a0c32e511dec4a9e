export * from './event-store.port';
export * from './event-chain';
export * from './chain-verifier';
export * from './esdb.chain';
export * from './chain-checkpoint';
export * from './chain-checkpoint.stores';
export { SqliteEventStore, type SqliteEventStoreOptions } from './sqlite.event-store';
export { SqliteCheckpointStore, type SqliteCheckpointStoreOptions } from './sqlite.checkpoint-store';
export { SqliteSnapshotStore, type SqliteSnapshotStoreOptions } from './sqlite.snapshot-store';
export { openSqlite, type SqliteConnectionOptions, type SqliteDatabase } from './sqlite.connection';
export { PostgresEventStore, type PostgresEventStoreOptions, type PostgresEventStoreTuning } from './postgres.event-store';
export { PostgresCheckpointStore, type PostgresCheckpointStoreOptions } from './postgres.checkpoint-store';
export { PostgresSnapshotStore, type PostgresSnapshotStoreOptions } from './postgres.snapshot-store';
export { PostgresDatabase, DEFAULT_POSTGRES_SCHEMA, maskPostgresUrl, type PostgresConnectionOptions } from './postgres.connection';
export {
  EventStoreDbEventStore,
  eventStoreDbConnectionString,
  isEventStoreDbConnectionString,
  type EventStoreDbEventStoreOptions,
} from './esdb.event-store';
export {
  openEventStore,
  isPostgresUrl,
  parsePostgresUrl,
  type EventStoreKind,
  type OpenEventStoreOptions,
  type OpenedEventStore,
} from './open-event-store';
export * from './attestation';
