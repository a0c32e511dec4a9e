export * from './temp-dir';
export { freePort } from '../../messaging/src/free-port';
export { startNatsServer, findNatsServer, type RunningNatsServer } from '../../messaging/src/nats-server';
export * from './decider-spec';
export { eventually } from './eventually';
export { testPostgres, randomSchemaName, dropSchema, DEFAULT_TEST_POSTGRES_URL, type TestPostgres } from './postgres';
export { ComputedChainStore } from './computed-chain';
export { startTestBus, type TestBus } from './test-bus';
