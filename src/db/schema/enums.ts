// The database enums of the job's vocabulary, which lives in src/domain/job.ts (re-exported here for
// the repositories, which speak the schema's names).
import { pgEnum } from 'drizzle-orm/pg-core';
import { jobEventTypes, jobStatuses, logStreams, queueTypes } from '../../domain/job.js';

export {
  isTerminalStatus,
  jobEventTypes,
  jobStatuses,
  logStreams,
  queueTypes,
  terminalJobStatuses,
  type JobEventType,
  type JobStatus,
  type LogStream,
  type QueueType,
  type TerminalJobStatus,
} from '../../domain/job.js';

export const jobStatusEnum = pgEnum('job_status', jobStatuses);
export const queueTypeEnum = pgEnum('queue_type', queueTypes);
export const jobEventTypeEnum = pgEnum('job_event_type', jobEventTypes);
export const logStreamEnum = pgEnum('log_stream', logStreams);
