import type { NatsConnection } from '@nats-io/nats-core';
import { connectNats } from '../../messaging/src/connection';
import { NATS_DEFAULT_URL, type JoblineConfig } from '../../config/src';
import type { ServiceLogger } from './logger';

/** A service's view of its bus connection, for readiness and for answering at once while it is down. */
export interface BusState {
  readonly connected: boolean;
  /** Why it is not connected, while it is not. */
  readonly reason: string | null;
}

export interface Bus {
  nc: NatsConnection;
  state: BusState;
  /** Drains and closes the connection (the expected end; any other close is fatal to the service). */
  close(): Promise<void>;
}

let onLostForGood: ((why: string) => void) | null = null;

/**
 * What a service process does when its connection closes for good (reconnects are unlimited,
 * so that means refused: credentials, permissions): runService sets it to stop and exit 1, so
 * a supervisor restarts the process — never a live process with a dead connection.
 */
export function onBusClosedForGood(handler: ((why: string) => void) | null): void {
  onLostForGood = handler;
}

/** Reports a connection closed for good that this thread cannot see (a worker thread's: the dev executor's). */
export function busClosedForGood(why: string): void {
  onLostForGood?.(why);
}

/**
 * Connects a service to NATS with the reconnect-forever defaults (a service never lives on
 * with a dead connection: it keeps trying, and says so in its log and its readiness).
 */
export async function connectBus(config: JoblineConfig, name: string, logger: ServiceLogger): Promise<Bus> {
  const servers = config.nats.servers ?? [NATS_DEFAULT_URL];
  const nc = await connectNats({ servers, name, user: config.nats.user, pass: config.nats.password });
  let closing = false;
  void nc.closed().then((err) => {
    if (closing) return;
    const why = `NATS connection ${name} closed for good${err ? `: ${err.message}` : ''}`;
    logger.error({ err }, why);
    onLostForGood?.(why);
  });
  return {
    nc,
    state: watchBus(nc, logger),
    close: async () => {
      closing = true;
      await nc.drain();
    },
  };
}

/** Follows a connection's status events; logs each change once (when given a logger). */
export function watchBus(nc: NatsConnection, logger?: Pick<ServiceLogger, 'warn' | 'info'>): BusState {
  const state = { connected: true, reason: null as string | null };
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          if (state.connected) logger?.warn({ server: 'server' in s ? s.server : undefined }, 'bus: disconnected, reconnecting');
          state.connected = false;
          state.reason = 'NATS connection lost; reconnecting';
          break;
        case 'reconnect':
          logger?.info({ server: 'server' in s ? s.server : undefined }, 'bus: reconnected');
          state.connected = true;
          state.reason = null;
          break;
        case 'close':
          state.connected = false;
          state.reason = 'NATS connection closed';
          break;
        default:
          break;
      }
    }
  })().catch(() => undefined);
  return state;
}
