export * from './enums.js';
export * from './repositories.js';
export * from './jobs.js';
export * from './logs.js';
export * from './agents.js';
export * from './workflow-starts.js';
export * from './idempotency-keys.js';
export * from './changes.js';
