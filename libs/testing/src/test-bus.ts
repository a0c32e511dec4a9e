import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { join } from 'node:path';
import { SqliteCheckpointStore, SqliteEventStore } from '../../event-store/src';
import { connectNats, type ConnectNatsOptions } from '../../messaging/src/connection';
import { startNatsServer, type RunningNatsServer } from '../../messaging/src/nats-server';
import { JetStreamPublisher } from '../../messaging/src/publisher';
import { tempDir, type TempDir } from './temp-dir';

/**
 * What a service's integration test stands on: a private nats-server (JetStream, its store in
 * `<dir>/nats`), one connection to it, and SQLite event and checkpoint stores
 * (`<dir>/events.db`, `<dir>/checkpoints.db`), all in one temporary folder.
 */
export interface TestBus {
  dir: TempDir;
  server: RunningNatsServer;
  nc: NatsConnection;
  jsm: JetStreamManager;
  publisher: JetStreamPublisher;
  store: SqliteEventStore;
  checkpoints: SqliteCheckpointStore;
  /** Stops the nats-server (an outage: the connection keeps trying to reconnect). */
  stopServer(): Promise<void>;
  /** Starts it again on the same port and store folder after `stopServer`; `server` is then the new one. */
  startServer(): Promise<void>;
  /** Drains the connection (closes it if the server is stopped), closes the stores, stops the server and removes the folder. */
  stop(): Promise<void>;
}

/** Starts a TestBus; `name` is the connection's name. If a part fails to start, what started is stopped. */
export async function startTestBus(name: string, options: { dirPrefix?: string; connection?: ConnectNatsOptions['overrides'] } = {}): Promise<TestBus> {
  const dir = tempDir(options.dirPrefix);
  const storeDir = join(dir.path, 'nats');
  let server: RunningNatsServer | undefined;
  let nc: NatsConnection | undefined;
  let store: SqliteEventStore | undefined;
  let checkpoints: SqliteCheckpointStore | undefined;
  const stop = async () => {
    // With the server stopped (a test that failed mid-outage) a drain would wait for a reconnect: close at once.
    if (nc) await (server ? nc.drain() : nc.close());
    await store?.close();
    await checkpoints?.close();
    await server?.stop();
    dir.remove();
  };
  try {
    server = await startNatsServer({ storeDir });
    nc = await connectNats({ servers: server.url, name, overrides: options.connection });
    const jsm = await jetstreamManager(nc);
    store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    checkpoints = new SqliteCheckpointStore({ path: join(dir.path, 'checkpoints.db') });
    const bus: TestBus = {
      dir,
      server,
      nc,
      jsm,
      publisher: new JetStreamPublisher(jetstream(nc)),
      store,
      checkpoints,
      stopServer: async () => {
        const down = bus.server;
        server = undefined;
        await down.stop();
      },
      startServer: async () => {
        server = bus.server = await startNatsServer({ storeDir, port: bus.server.port });
      },
      stop,
    };
    return bus;
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
