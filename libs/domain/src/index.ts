export * from './job.decider';
export * from './job-view.projection';
export * from './scheduling.policy';
export * from './lifecycle';
export * from './fair-share.policy';
