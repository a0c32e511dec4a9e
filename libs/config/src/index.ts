export * from './variables';
export * from './load-config';
export * from './describe-config';
export * from './webhooks-file';
export * from './quotas-file';
