export * from './event-data.schemas';
export * from './bus-messages.schemas';
export * from './json-schemas';
export { buildAsyncApiDocument, asyncApiJson, type AsyncApiOptions } from './asyncapi';
