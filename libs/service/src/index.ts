export * from './logger';
export * from './metrics';
export * from './service-http';
export * from './run-service';
export * from './bus';
export * from './streams';
export * from './tls-dir';
export * from './explicit-gc';
