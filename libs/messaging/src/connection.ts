import type { NatsConnection } from '@nats-io/nats-core';
import { connect, type NodeConnectionOptions } from '@nats-io/transport-node';
import { installQuietRequestCancel } from './request-cancel';

export interface ConnectNatsOptions {
  /** One URL or several (a cluster), e.g. `nats://127.0.0.1:4222`. */
  servers: string | string[];
  /** Connection name shown by the server's monitoring (e.g. `jobline-orchestrator`). */
  name: string;
  user?: string;
  pass?: string;
  token?: string;
  /** Anything else the NATS client accepts (TLS, timeouts...); wins over the defaults below. */
  overrides?: Partial<NodeConnectionOptions>;
}

/**
 * Defaults: reconnect forever (the bus may restart under a long-running service; giving up
 * would leave a process that looks alive but does nothing), every 250 ms with a little jitter.
 * No async stack traces: with them the client builds an Error (a captured stack) for every
 * request and JetStream publish up front, in case it fails; that was 2 % of the dev stack's CPU
 * under the jobs benchmark. A failed request still says what failed, without the caller's frames.
 */
export const NATS_CONNECTION_DEFAULTS = {
  maxReconnectAttempts: -1,
  reconnectTimeWait: 250,
  reconnectJitter: 100,
  pingInterval: 20_000,
  noAsyncTraces: true,
} satisfies Partial<NodeConnectionOptions>;

/**
 * Connects to NATS from Node (runtime-neutral code takes a NatsConnection instead). Also makes
 * the client's answered requests end without building an Error each (request-cancel.ts).
 */
export function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  installQuietRequestCancel();
  const { servers, name, user, pass, token, overrides } = options;
  return connect({
    ...NATS_CONNECTION_DEFAULTS,
    servers,
    name,
    ...(user !== undefined ? { user } : {}),
    ...(pass !== undefined ? { pass } : {}),
    ...(token !== undefined ? { token } : {}),
    ...overrides,
  });
}
