export * from './job-spec.schema';
export * from './ids';
export * from './events';
export * from './job-view';
export * from './subjects';
export * from './messages';
export * from './errors';
export * from './event-codec';
