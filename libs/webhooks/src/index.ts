export * from './signature';
export * from './http-delivery';
