export * from './event-store.port';
export { SqliteEventStore, type SqliteEventStoreOptions } from './sqlite.event-store';
export { SqliteCheckpointStore, type SqliteCheckpointStoreOptions } from './sqlite.checkpoint-store';
export { openSqlite, type SqliteConnectionOptions, type SqliteDatabase } from './sqlite.connection';
export { EventStoreDbEventStore, type EventStoreDbEventStoreOptions } from './esdb.event-store';
export { openEventStore, type OpenedEventStore } from './open-event-store';
