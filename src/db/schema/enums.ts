import { pgEnum } from 'drizzle-orm/pg-core';

export const jobStatuses = ['queued', 'assigned', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const terminalJobStatuses = ['succeeded', 'failed', 'cancelled', 'timed_out'] as const satisfies readonly JobStatus[];
export type TerminalJobStatus = (typeof terminalJobStatuses)[number];
export const isTerminalStatus = (status: JobStatus): status is TerminalJobStatus => (terminalJobStatuses as readonly JobStatus[]).includes(status);

export const queueTypes = ['backlog', 'rework'] as const;
export type QueueType = (typeof queueTypes)[number];

export const jobEventTypes = [
  'created',
  'assigned',
  'started',
  'requeued',
  'cancel_requested',
  'succeeded',
  'failed',
  'cancelled',
  'timed_out',
] as const;
export type JobEventType = (typeof jobEventTypes)[number];

export const logStreams = ['stdout', 'stderr', 'system'] as const;
export type LogStream = (typeof logStreams)[number];

export const jobStatusEnum = pgEnum('job_status', jobStatuses);
export const queueTypeEnum = pgEnum('queue_type', queueTypes);
export const jobEventTypeEnum = pgEnum('job_event_type', jobEventTypes);
export const logStreamEnum = pgEnum('log_stream', logStreams);
