export * from './streams';
export * from './nats-server';
export * from './free-port';
export * from './connection';
export * from './publisher';
export * from './logs';
export * from './message-settlement';
export * from './jetstream.transport';
