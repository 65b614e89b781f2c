// What the package lends besides its CLI (its one export, `@agent-jobs/agent/log-sending`): the
// outbox and the batch limits by which this agent sends a job's log, so the bench's lean agent sends
// logs exactly as this one does. Everything else in the package is private to it.
export { batchLimits } from './agent.js';
export { DEFAULT_OUTBOX_LIMITS, LogOutbox, type BatchLimits, type OutboxLimits } from './log-outbox.js';
