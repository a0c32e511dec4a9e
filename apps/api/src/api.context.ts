import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import type { ChainCheckpointStore, SigningKey } from '../../../libs/event-store/src/chain-checkpoint';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';
import type { LogReader } from '../../../libs/messaging/src/log-reader';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import type { BusState } from '../../../libs/service/src/bus';
import type { ExecutorsRegistry } from './executors.registry';
import type { PastStates } from './history/past-states';
import type { JobsProjection } from './projections/jobs.projection';

export const API_CONTEXT = Symbol('ApiContext');

/** What the api's services share; built once by createApiApp. */
export interface ApiContext {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  eventStore: EventStore;
  projection: JobsProjection;
  /** The read model as the store stood at a past instant (`?at=` of lists and executors). */
  past: PastStates;
  publisher: JetStreamPublisher;
  executors: ExecutorsRegistry;
  submitTimeoutMs: number;
  /** Whether the NATS connection is up: writes are refused at once (503) while it is not. */
  bus: BusState;
  /** The one log reader every edge follows logs through (one shared live tail per job). */
  logs: LogReader;
  /** The key that signs attestations; its public half checks the stored chain checkpoints. */
  signingKey: SigningKey | null;
  /** Signed chain checkpoints beside the events (none on EventStoreDB). */
  chainCheckpoints: ChainCheckpointStore | null;
}
